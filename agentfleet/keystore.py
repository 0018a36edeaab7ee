"""Private keys at rest: eth-account keystores (v3 JSON) in the database, under a master secret.

Keys are generated or imported here and decrypted only inside the activities that sign; workflow
payloads, logs, metrics and search attributes carry addresses only. The master secret comes from
``FLEET_KEYSTORE_SECRET``, or for the embedded stack from ``<home>/keystore.secret`` (created 0600).
"""

from __future__ import annotations

import os
import secrets
import threading
from pathlib import Path
from typing import Any

from eth_account import Account
from eth_account.signers.local import LocalAccount
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlmodel import select

from agentfleet import db
from agentfleet.errors import FleetError
from agentfleet.models import WalletKey
from agentfleet.settings import Settings

SCRYPT_N = 2**14
"""The master secret is 32 random bytes, not a human password: a light scrypt cost is enough and
keeps a cold decrypt at tens of milliseconds."""

_cache: dict[tuple[str, str], LocalAccount] = {}
_cache_lock = threading.Lock()


def master_secret(settings: Settings) -> str:
    """The secret that encrypts every stored key (never logged, never in a payload)."""
    if settings.keystore_secret is not None:
        return settings.keystore_secret.get_secret_value()
    path = settings.home / "keystore.secret"
    if not path.exists():
        settings.home.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(secrets.token_hex(32))
    if path.stat().st_mode & 0o077:
        raise FleetError(f"{path} is readable by others; run `chmod 600 {path}`")
    return path.read_text().strip()


def _insert_once(url: str, row: dict[str, Any]) -> None:
    engine = db.make_engine(url)
    insert = pg_insert if engine.dialect.name == "postgresql" else sqlite_insert
    statement = insert(WalletKey).values(**row).on_conflict_do_nothing()
    with engine.begin() as conn:
        conn.execute(statement)


def address_of(settings: Settings, label: str) -> str | None:
    with db.session_scope(settings.effective_database_url) as session:
        row = session.exec(select(WalletKey).where(WalletKey.label == label)).first()
        return row.address if row else None


def store_key(settings: Settings, label: str, private_key: bytes | str) -> str:
    """Keep ``private_key`` under ``label``; a label that already has a key keeps its own."""
    existing = address_of(settings, label)
    if existing is not None:
        return existing
    account: LocalAccount = Account.from_key(private_key)
    keystore = Account.encrypt(
        account.key, master_secret(settings), kdf="scrypt", iterations=SCRYPT_N
    )
    _insert_once(
        settings.effective_database_url,
        {"address": account.address, "label": label, "keystore": dict(keystore)},
    )
    stored = address_of(settings, label)
    if stored is None:
        raise FleetError(f"key {account.address} is already stored under another label")
    return stored


def generate_key(settings: Settings, label: str) -> str:
    """A new key for ``label`` (or the one it already has): exactly one key per label."""
    existing = address_of(settings, label)
    if existing is not None:
        return existing
    return store_key(settings, label, secrets.token_bytes(32))


def import_keystore(settings: Settings, label: str, path: Path, password: str) -> str:
    """Import an existing keystore file (re-encrypted under the master secret)."""
    try:
        key = Account.decrypt(path.read_text(), password)
    except (OSError, ValueError) as exc:
        raise FleetError(
            f"cannot import keystore {path}: wrong password or not a keystore"
        ) from exc
    return store_key(settings, label, key)


def load_account(settings: Settings, address: str) -> LocalAccount:
    """The signing account for ``address``; decrypted once per process and kept in memory."""
    url = settings.effective_database_url
    cache_key = (url, address.lower())
    with _cache_lock:
        cached = _cache.get(cache_key)
    if cached is not None:
        return cached
    with db.session_scope(url) as session:
        row = session.exec(select(WalletKey).where(WalletKey.address == address)).first()
    if row is None:
        raise FleetError(f"no key stored for {address}")
    account: LocalAccount = Account.from_key(Account.decrypt(row.keystore, master_secret(settings)))
    with _cache_lock:
        _cache[cache_key] = account
    return account
