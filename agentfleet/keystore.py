"""Private keys at rest: eth-account keystores (v3 JSON) in the database, under a master secret.

Keys are generated or imported here and decrypted only inside the activities that sign; workflow
payloads, logs, metrics and search attributes carry addresses only. The master secret comes from
``FLEET_KEYSTORE_SECRET`` (required, 32+ bytes, off the local network), or on the local network
from ``<home>/keystore.secret`` (created 0600 once; losing it while keys are stored is an error).
"""

from __future__ import annotations

import secrets
import threading
from pathlib import Path
from typing import Any

from eth_account import Account
from eth_account.signers.local import LocalAccount
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlmodel import col, select

from agentfleet import db, redaction, secretfile
from agentfleet.errors import FleetError
from agentfleet.models import WalletKey
from agentfleet.settings import Settings

SCRYPT_N = 2**14
"""The master secret is 32 random bytes, not a human password: a light scrypt cost is enough and
keeps a cold decrypt at tens of milliseconds."""

_cache: dict[tuple[str, str], LocalAccount] = {}
_cache_lock = threading.Lock()


SECRET_FILE = "keystore.secret"  # noqa: S105 - a file name
MIN_SECRET_BYTES = 32
"""Off the local dev chain the master secret must be at least this long (32 random bytes is
what the generated dev secret holds)."""

_verified: set[tuple[str, str]] = set()


def secret_path(settings: Settings) -> Path:
    """Where the generated dev secret lives (``FLEET_HOME/keystore.secret``)."""
    return settings.home / SECRET_FILE


def require_configured_secret(settings: Settings) -> None:
    """Off the local network the master secret must come from ``FLEET_KEYSTORE_SECRET`` and be
    at least 32 bytes; a one-line :class:`FleetError` otherwise (nothing is generated)."""
    if settings.network == "local":
        return
    if settings.keystore_secret is None:
        raise FleetError(
            f"FLEET_KEYSTORE_SECRET must be set on network {settings.network} (at least "
            f"{MIN_SECRET_BYTES} random bytes, e.g. `openssl rand -hex 32`); it encrypts the "
            "fleet's private keys and is never generated off the local chain"
        )
    if len(settings.keystore_secret.get_secret_value().encode()) < MIN_SECRET_BYTES:
        raise FleetError(
            f"FLEET_KEYSTORE_SECRET is too short for network {settings.network}: use at least "
            f"{MIN_SECRET_BYTES} random bytes (e.g. `openssl rand -hex 32`)"
        )


def master_secret(settings: Settings) -> str:
    """The secret that encrypts every stored key (never logged, never in a payload).

    ``FLEET_KEYSTORE_SECRET``, or on the local network ``FLEET_HOME/keystore.secret``, generated
    once (race-free: concurrent first calls agree on one secret and never read a partial file).
    A missing file while keys are stored is an error, never a fresh secret.
    """
    require_configured_secret(settings)
    if settings.keystore_secret is not None:
        secret = settings.keystore_secret.get_secret_value()
        redaction.register(secret)
        return secret
    path = secret_path(settings)
    try:
        secret = _read_secret_file(path)
    except FileNotFoundError:
        stored = stored_key_count(settings)
        if stored:
            raise FleetError(_lost_secret_message(path, stored)) from None
        secret = secretfile.read_or_create(path, 32)
    redaction.register(secret)
    return secret


def _read_secret_file(path: Path) -> str:
    if path.stat().st_mode & 0o077:
        raise FleetError(f"{path} is readable by others; run `chmod 600 {path}`")
    secret = path.read_text().strip()
    if not secret:
        raise FleetError(
            f"{path} is empty: restore the keystore secret from your backup or set "
            "FLEET_KEYSTORE_SECRET (a new secret cannot open the keys stored under the old one)"
        )
    return secret


def _lost_secret_message(path: Path, stored: int) -> str:
    return (
        f"the keystore secret is missing but {stored} keys are stored encrypted; restore {path} "
        "or set FLEET_KEYSTORE_SECRET (a new secret would not open them)"
    )


def stored_key_count(settings: Settings) -> int:
    """How many keys the database holds (0 before its first migration; an SQLite file that
    does not exist yet is not created)."""
    return _key_census(settings)[0]


def _key_census(settings: Settings) -> tuple[int, WalletKey | None]:
    """(number of stored keys, the oldest one)."""
    from sqlalchemy import func, inspect

    url = settings.effective_database_url
    if url.startswith("sqlite:///") and not Path(url.removeprefix("sqlite:///")).exists():
        return 0, None
    if not inspect(db.make_engine(url)).has_table(WalletKey.__tablename__):
        return 0, None
    with db.session_scope(url) as session:
        count = session.exec(select(func.count()).select_from(WalletKey)).one()
        oldest = session.exec(
            select(WalletKey).order_by(col(WalletKey.created_at)).limit(1)
        ).first()
    return int(count), oldest


def verify_master_secret(settings: Settings) -> int:
    """Check once per process that the master secret opens the stored keys (one decrypt of the
    oldest key, tens of milliseconds); returns how many keys are stored. A one-line
    :class:`FleetError` when the secret is missing, empty, too short for the network, or not
    the one the keys were encrypted under."""
    require_configured_secret(settings)
    count, oldest = _key_census(settings)
    if oldest is None:  # nothing to open yet, and nothing is generated before it is needed
        return 0
    secret = master_secret(settings)
    marker = (settings.effective_database_url, secret)
    if marker in _verified:
        return count
    try:
        Account.decrypt(oldest.keystore, secret)
    except ValueError:
        where = (
            "FLEET_KEYSTORE_SECRET"
            if settings.keystore_secret is not None
            else str(secret_path(settings))
        )
        raise FleetError(
            f"the keystore secret ({where}) does not open the {count} stored keys "
            f"(key {oldest.label} fails to decrypt); restore the secret they were stored under"
        ) from None
    _verified.add(marker)
    return count


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
    redaction.register(account.key.hex())
    with _cache_lock:
        _cache[cache_key] = account
    return account
