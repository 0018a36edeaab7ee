"""The accounts agentfleet sends transactions from (each one a RelayerWorkflow).

Relayer keys are labelled ``relayer-0``, ``relayer-1``... in the keystore. On the embedded dev
chain they are anvil's accounts 1-4 (account 0 deploys); on a real network they are keys stored in
the keystore under those labels (no ``fleet`` command imports them yet).
"""

from __future__ import annotations

from sqlmodel import select

from agentfleet import db, keystore
from agentfleet.chain.accounts import DEV_CHAIN_IDS, dev_account
from agentfleet.models import WalletKey
from agentfleet.settings import Settings

PREFIX = "relayer-"
DEV_RELAYERS = 4


def relayers(settings: Settings) -> list[str]:
    """Addresses of the relayer accounts, in label order."""
    with db.session_scope(settings.effective_database_url) as session:
        rows = session.exec(select(WalletKey).where(WalletKey.label.startswith(PREFIX))).all()
    ordered = sorted(rows, key=lambda row: int(row.label.removeprefix(PREFIX) or 0))
    return [row.address for row in ordered]


def ensure_dev_relayers(settings: Settings) -> list[str]:
    """Store anvil's accounts 1-4 as the relayers of the dev chain (idempotent)."""
    if settings.chain_id not in DEV_CHAIN_IDS:
        return relayers(settings)
    for index in range(DEV_RELAYERS):
        keystore.store_key(settings, f"{PREFIX}{index}", dev_account(index + 1).key)
    return relayers(settings)


def import_relayer(settings: Settings, key: bytes | str) -> str:
    """Add a relayer account from a private key; the next free ``relayer-N`` label is used."""
    existing = relayers(settings)
    return keystore.store_key(settings, f"{PREFIX}{len(existing)}", key)
