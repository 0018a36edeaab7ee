"""anvil's well-known development accounts (mnemonic "test test ... junk"). Dev chains only."""

from __future__ import annotations

from functools import cache

from eth_account import Account
from eth_account.signers.local import LocalAccount

DEV_MNEMONIC = "test test test test test test test test test test test junk"
DEV_CHAIN_IDS = frozenset({31337})


@cache
def dev_account(index: int) -> LocalAccount:
    """The ``index``-th anvil account; index 0 is agentfleet's deployer on a dev chain."""
    Account.enable_unaudited_hdwallet_features()
    account: LocalAccount = Account.from_mnemonic(
        DEV_MNEMONIC, account_path=f"m/44'/60'/0'/0/{index}"
    )
    return account
