"""Whose key deploys: ``FLEET_DEPLOYER_KEYSTORE`` (+ password), else ``FLEET_DEPLOYER_KEY``, else
anvil's account 0 on a dev chain. Errors never repeat the key."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from eth_account import Account
from eth_account.signers.local import LocalAccount
from web3 import Web3

from agentfleet import keystore
from agentfleet.chain.accounts import dev_account
from agentfleet.chain.networks import ChainProfile
from agentfleet.errors import FleetError
from agentfleet.settings import Settings


def deployer_account(settings: Settings, chain: ChainProfile) -> LocalAccount:
    """``FLEET_DEPLOYER_KEYSTORE`` (+ password), else ``FLEET_DEPLOYER_KEY``, else anvil's
    account 0 on a dev chain. Errors never repeat the key."""
    if settings.deployer_keystore is not None:
        path = settings.deployer_keystore.expanduser()
        keystore = _read_keystore(path)
        if settings.deployer_keystore_password is None:
            raise FleetError(
                "FLEET_DEPLOYER_KEYSTORE_PASSWORD is not set; it decrypts FLEET_DEPLOYER_KEYSTORE"
            )
        try:
            key = Account.decrypt(keystore, settings.deployer_keystore_password.get_secret_value())
        except Exception:
            raise FleetError(
                f"cannot decrypt FLEET_DEPLOYER_KEYSTORE {path}: wrong password or not a keystore"
            ) from None
        account: LocalAccount = Account.from_key(key)
        return account
    if settings.deployer_key is not None:
        try:
            account = Account.from_key(settings.deployer_key.get_secret_value().strip())
        except Exception:
            raise FleetError(
                "FLEET_DEPLOYER_KEY is not a valid private key (expected 32 bytes as hex)"
            ) from None
        return account
    if chain.is_dev:
        return dev_account(0)
    raise FleetError(
        f"no deployer for {chain.name}: set FLEET_DEPLOYER_KEYSTORE and "
        "FLEET_DEPLOYER_KEYSTORE_PASSWORD, or FLEET_DEPLOYER_KEY"
    )


def deployer_address(settings: Settings, chain: ChainProfile) -> str | None:
    """The deployer's address without decrypting a keystore (None when none is configured)."""
    if settings.deployer_keystore is not None:
        address = _read_keystore(settings.deployer_keystore.expanduser()).get("address")
        return Web3.to_checksum_address(address) if isinstance(address, str) else None
    if settings.deployer_key is None and not chain.is_dev:
        return None
    return str(deployer_account(settings, chain).address)


def _read_keystore(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except OSError as exc:
        raise FleetError(f"cannot read FLEET_DEPLOYER_KEYSTORE {path}: {exc.strerror}") from None
    except ValueError:
        raise FleetError(f"FLEET_DEPLOYER_KEYSTORE {path} is not a JSON keystore") from None
    if not isinstance(data, dict):
        raise FleetError(f"FLEET_DEPLOYER_KEYSTORE {path} is not a JSON keystore")
    return data


def keep_deployer_key(settings: Settings, account: LocalAccount) -> None:
    """The deployer's key in the keystore, where the worker's send activity loads it."""
    try:
        keystore.load_account(settings, account.address)
    except FleetError:
        keystore.store_key(settings, f"deployer-{account.address.lower()}", account.key)
