"""agentfleet's contracts on a chain and the manifest that remembers them (``deployment.json``).

``fleet up`` calls :func:`clients.deployment.ensure_deployed` once its worker runs: a manifest for
this chain whose contracts all have code and were built from today's artifacts is reused without
sending anything; otherwise the four contracts are deployed again and every dev account receives
1,000,000 fUSD. On a real network (``fleet chain deploy --network amoy``) the deployer is
``FLEET_DEPLOYER_KEYSTORE`` (+ password) or ``FLEET_DEPLOYER_KEY``; its balance is checked against
the estimated cost before anything is sent, so a failed check deploys nothing. A manifest describing
a real network is never replaced by a deployment on another chain (give each network its own
``FLEET_HOME``).

Deploying is two halves: :func:`prepare` checks everything that can be refused (RPC, chain id,
deployer key, balance) without Temporal; :func:`clients.deployment.execute` sends every creation and
mint as a TransactionWorkflow from the deployer's relayer entity, the same durable path as every
other transaction (signed and recorded before broadcast, fees bumped when stuck, outcomes
reconciled). Request ids carry an attempt id kept in ``deployment.pending.json`` until the manifest
is written, so a deploy interrupted at any point and run again sends only what is missing.

Every failure is a one-line :class:`FleetError`. Private keys are never printed or logged, and RPC
URLs are shown without their path (hosted endpoints keep API keys there).
"""

from __future__ import annotations

import json
import os
import tempfile
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_typing import ChecksumAddress
from pydantic import BaseModel, ValidationError
from web3 import Web3
from web3.types import Nonce
from web3.utils import get_create_address

from agentfleet import keystore
from agentfleet.chain import artifacts
from agentfleet.chain.accounts import dev_account
from agentfleet.chain.networks import (
    ChainProfile,
    active_profile,
    display_url,
    expected_chain_id,
    profile,
    rpc_url,
)
from agentfleet.errors import FleetError, first_line
from agentfleet.settings import Settings

CONTRACTS = ("FleetUSD", "IdentityRegistry", "ReputationRegistry", "ValidationRegistry")
MANIFEST_NAME = "deployment.json"
PENDING_NAME = "deployment.pending.json"
FUSD_DECIMALS = 6
DEV_FUNDED_ACCOUNTS = 10
DEV_FUSD_EACH = 1_000_000 * 10**FUSD_DECIMALS
DEV_FUSD_HUMAN = f"{DEV_FUSD_EACH // 10**FUSD_DECIMALS:,}"
GAS_MARGIN_PERCENT = 20
MINT_GAS_ALLOWANCE = 120_000
RPC_TIMEOUT_S = 10.0
GWEI = 10**9

Progress = Callable[[str], None]


class DeployedContract(BaseModel):
    address: str
    artifact_sha256: str
    tx_hash: str
    block: int


class Deployment(BaseModel):
    """What ``deployment.json`` holds: where each contract lives on which chain, and which build."""

    chain_id: int
    network: str
    deployer: str
    block: int
    contracts: dict[str, DeployedContract]
    deployed_at: datetime

    def address(self, name: str) -> str:
        """Checksum address of contract ``name``; FleetError when this deployment lacks it."""
        try:
            return self.contracts[name].address
        except KeyError:
            raise FleetError(f"the deployment has no {name}; run `fleet chain deploy`") from None


@dataclass(frozen=True)
class DeploymentCheck:
    """How a manifest compares with the chain: contracts without code and rebuilt artifacts."""

    wrong_chain: int | None = None
    without_code: list[str] = field(default_factory=list)
    rebuilt: list[str] = field(default_factory=list)

    @property
    def usable(self) -> bool:
        return self.wrong_chain is None and not self.without_code

    @property
    def current(self) -> bool:
        return self.usable and not self.rebuilt

    def reason(self) -> str:
        if self.wrong_chain is not None:
            return f"it describes chain {self.wrong_chain}"
        if self.without_code:
            return f"no code at {', '.join(self.without_code)} (was the chain reset?)"
        if self.rebuilt:
            return f"{', '.join(self.rebuilt)} rebuilt since"
        return "it is current"


@dataclass(frozen=True)
class DeployResult:
    deployment: Deployment
    reused: bool
    note: str


def manifest_path(settings: Settings) -> Path:
    return settings.home / MANIFEST_NAME


def load_deployment(settings: Settings) -> Deployment | None:
    """The manifest under the home when it describes the chain ``FLEET_NETWORK`` selects; None
    when there is none (or it is for another chain). Reads no chain: use :func:`check_deployment`
    to know whether the code is there."""
    deployment = _read_manifest(manifest_path(settings))
    chain = active_profile(settings)
    if deployment is None or deployment.chain_id != expected_chain_id(settings, chain):
        return None
    return deployment


def _read_manifest(path: Path, *, strict: bool = True) -> Deployment | None:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise FleetError(f"cannot read {path}: {exc.strerror}") from None
    try:
        return Deployment.model_validate_json(raw)
    except ValidationError:
        if not strict:
            return None
        raise FleetError(
            f"{path} is not a deployment manifest; delete it to deploy again"
        ) from None


def write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".deployment-", suffix=".json", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as out:
            out.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def connect(settings: Settings, chain: ChainProfile | None = None) -> Web3:
    """A web3 client for ``chain`` whose RPC answers with the expected chain id, or FleetError."""
    chain = chain or active_profile(settings)
    url = rpc_url(settings, chain)
    w3 = Web3(
        Web3.HTTPProvider(
            url, request_kwargs={"timeout": RPC_TIMEOUT_S}, exception_retry_configuration=None
        )
    )
    try:
        actual = int(w3.eth.chain_id)
    except Exception as exc:
        hint = "; start it with `fleet up`" if chain.is_dev and not settings.rpc_url else ""
        raise FleetError(
            f"cannot reach the {chain.name} RPC at {display_url(url)} ({type(exc).__name__}){hint}"
        ) from None
    expected = expected_chain_id(settings, chain)
    if actual != expected:
        raise FleetError(
            f"the RPC at {display_url(url)} serves chain {actual}, but network {chain.name} is "
            f"chain {expected}; check --network, --rpc-url and FLEET_RPC_URL"
        )
    return w3


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


def has_code(w3: Web3, address: str) -> bool:
    return len(w3.eth.get_code(Web3.to_checksum_address(address))) > 0


def check_deployment(w3: Web3, deployment: Deployment, chain_id: int) -> DeploymentCheck:
    """Compare a manifest with the chain behind ``w3`` and with today's artifacts."""
    if deployment.chain_id != chain_id:
        return DeploymentCheck(wrong_chain=deployment.chain_id)
    without_code: list[str] = []
    rebuilt: list[str] = []
    for name in CONTRACTS:
        entry = deployment.contracts.get(name)
        if entry is None or not has_code(w3, entry.address):
            without_code.append(name)
        elif entry.artifact_sha256 != artifacts.load(name).sha256:
            rebuilt.append(name)
    return DeploymentCheck(without_code=without_code, rebuilt=rebuilt)


@dataclass
class _Step:
    name: str
    data: str
    gas: int
    address: str


@dataclass(frozen=True)
class DeploymentPlan:
    """What :func:`execute` sends: checked against the chain and the deployer's balance, so a
    plan that exists can be paid for. Holds the deployer's key only in memory (never in a
    payload: the worker loads it from the keystore)."""

    settings: Settings
    chain: ChainProfile
    chain_id: int
    deployer: LocalAccount
    steps: list[_Step]
    why: str
    attempt: str


class PendingAttempt(BaseModel):
    """``deployment.pending.json``: an unfinished deployment whose transactions a rerun reuses
    (their request ids include ``attempt``), so a crash mid-deploy never deploys twice."""

    attempt: str
    chain_id: int
    deployer: str
    genesis: str


def prepare(
    settings: Settings,
    chain: ChainProfile | None = None,
    *,
    force: bool = False,
    allow_deploy: bool = True,
) -> DeployResult | DeploymentPlan:
    """Everything that can be refused before a transaction is sent (no Temporal needed): the
    manifest is reused when its code is on chain (and, on a dev chain, built from today's
    artifacts); else a plan is returned, unless ``allow_deploy`` is False (then FleetError)."""
    chain = chain or active_profile(settings)
    settings = settings.model_copy(update={"network": chain.name})
    w3 = connect(settings, chain)
    chain_id = expected_chain_id(settings, chain)
    path = manifest_path(settings)
    existing = _read_manifest(path, strict=False)
    why = "no manifest yet"
    if existing is not None and not force:
        check = check_deployment(w3, existing, chain_id)
        if check.current or (check.usable and not chain.is_dev):
            note = f"contracts reused from {path} (deployed in block {existing.block})"
            if check.rebuilt:
                rebuilt = ", ".join(check.rebuilt)
                note += f"; {rebuilt} rebuilt since (`fleet chain deploy --force` replaces them)"
            return DeployResult(existing, reused=True, note=note)
        why = check.reason()
    elif force:
        why = "--force"
    if not allow_deploy:
        raise FleetError(
            f"no usable deployment for {chain.name} in {path} ({why}); "
            f"run `fleet chain deploy --network {chain.name}` while the stack runs"
        )
    if (
        existing is not None
        and not _is_dev_network(existing)
        and (existing.network, existing.chain_id) != (chain.name, chain_id)
    ):
        raise FleetError(
            f"{path} records the {existing.network} deployment (chain {existing.chain_id}); "
            "use another FLEET_HOME for this network"
        )
    deployer = deployer_account(settings, chain)
    sender = deployer.address
    nonce = int(w3.eth.get_transaction_count(sender, "pending"))
    steps = _plan(w3, sender, nonce)
    priority, max_fee = _fees(w3, chain)
    total_gas = sum(step.gas for step in steps)
    if chain.is_dev:
        total_gas += DEV_FUNDED_ACCOUNTS * MINT_GAS_ALLOWANCE
    cost = total_gas * max_fee
    balance = int(w3.eth.get_balance(sender))
    if balance < cost:
        raise FleetError(
            f"deployer {sender} has {format_units(balance, 18)} {chain.native_symbol} on "
            f"{chain.name}, but deploying needs up to {format_units(cost, 18)} "
            f"{chain.native_symbol} ({total_gas:,} gas at {format_units(max_fee, 9)} gwei); "
            "fund it and retry"
        )
    genesis = Web3.to_hex(w3.eth.get_block(0)["hash"])
    attempt = _attempt(settings, chain_id, sender, genesis)
    return DeploymentPlan(settings, chain, chain_id, deployer, steps, why, attempt)


def _attempt(settings: Settings, chain_id: int, deployer: str, genesis: str) -> str:
    """The unfinished attempt of this deployer on this chain, or a new one (written down before
    anything is sent)."""
    path = settings.home / PENDING_NAME
    try:
        pending = PendingAttempt.model_validate_json(path.read_bytes())
    except (OSError, ValidationError):
        pending = None
    if pending is not None and (pending.chain_id, pending.deployer, pending.genesis) == (
        chain_id,
        deployer,
        genesis,
    ):
        return pending.attempt
    fresh = PendingAttempt(
        attempt=uuid.uuid4().hex[:12], chain_id=chain_id, deployer=deployer, genesis=genesis
    )
    write_atomic(path, fresh.model_dump_json(indent=2) + "\n")
    return fresh.attempt


def keep_deployer_key(settings: Settings, account: LocalAccount) -> None:
    """The deployer's key in the keystore, where the worker's send activity loads it."""
    try:
        keystore.load_account(settings, account.address)
    except FleetError:
        keystore.store_key(settings, f"deployer-{account.address.lower()}", account.key)


def _is_dev_network(deployment: Deployment) -> bool:
    try:
        return profile(deployment.network).is_dev
    except FleetError:
        return False


def _plan(w3: Web3, sender: ChecksumAddress, nonce: int) -> list[_Step]:
    """Constructor data and gas of each contract; addresses follow from the deployer's nonces,
    so the registries that need the identity registry's address get it before it exists."""
    identity = get_create_address(sender, Nonce(nonce + 1))
    args: dict[str, tuple[Any, ...]] = {
        "FleetUSD": (sender,),
        "IdentityRegistry": (),
        "ReputationRegistry": (identity,),
        "ValidationRegistry": (identity,),
    }
    steps: list[_Step] = []
    for offset, name in enumerate(CONTRACTS):
        artifact = artifacts.load(name)
        factory = w3.eth.contract(abi=artifact.abi, bytecode=artifact.bytecode)
        data = factory.constructor(*args[name]).data_in_transaction
        try:
            estimate = int(w3.eth.estimate_gas({"from": sender, "data": data}))
        except Exception as exc:
            raise FleetError(
                f"estimating the gas to deploy {name} failed: {first_line(exc)}"
            ) from None
        steps.append(
            _Step(
                name=name,
                data=data,
                gas=_padded(estimate),
                address=get_create_address(sender, Nonce(nonce + offset)),
            )
        )
    return steps


def _fees(w3: Web3, chain: ChainProfile) -> tuple[int, int]:
    """(priority fee, max fee) in wei within the profile's cap; FleetError when the base fee
    alone already exceeds it."""
    block = w3.eth.get_block("latest")
    base = int(block.get("baseFeePerGas", 0) or 0)
    cap = int(chain.gas.max_fee_gwei * GWEI)
    priority = int(chain.gas.priority_fee_gwei * GWEI)
    if base + priority > cap:
        raise FleetError(
            f"the {chain.name} base fee is {format_units(base, 9)} gwei, above the cap of "
            f"{chain.gas.max_fee_gwei:g} gwei (with a {chain.gas.priority_fee_gwei:g} gwei tip); "
            "try again when gas is cheaper"
        )
    return priority, min(2 * base + priority, cap)


def _padded(gas: int) -> int:
    return gas * (100 + GAS_MARGIN_PERCENT) // 100


def format_units(value: int, decimals: int = FUSD_DECIMALS) -> str:
    """An exact decimal string of an integer amount (``"1000000"`` for 10**12 at 6 decimals)."""
    whole, fraction = divmod(abs(value), 10**decimals)
    sign = "-" if value < 0 else ""
    digits = str(fraction).rjust(decimals, "0").rstrip("0") if decimals else ""
    return f"{sign}{whole}.{digits}" if digits else f"{sign}{whole}"
