"""API keys of the x402 facilitator (``/verify``, ``/settle``): who may have the fleet's relayers
settle a payment, and to whom those payments may go.

A key is ``fk_<id>_<secret>``: the id is public (``fleet facilitator key list`` shows it), the
secret is shown once when the key is made; only the SHA-256 of the whole key is stored. Each key
has a ``payTo`` allow-list: by default the fleet's own wallets (its bots' addresses), or the
addresses given when it was made, or any (``*``).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets

from eth_utils.address import is_address, to_checksum_address
from sqlalchemy import func
from sqlmodel import col, select

from agentfleet import db
from agentfleet.errors import FleetError
from agentfleet.models import BotRecord, FacilitatorKey, utcnow

PREFIX = "fk_"
ANY = "*"
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
KEY = re.compile(r"^fk_([0-9a-f]{10})_([0-9a-f]{64})$")


def _digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def add_key(url: str, name: str, pay_to: list[str] | None = None) -> tuple[str, FacilitatorKey]:
    """A new key named ``name``: (the key, shown only now; its row). ``pay_to`` None: the fleet's
    own wallets; ``["*"]``: any address."""
    if not NAME.match(name):
        raise FleetError(
            f"key name {name!r} must be 1-64 letters, digits, '.', '_' or '-', starting with a "
            "letter or digit"
        )
    allowed = None if pay_to is None else _addresses(pay_to)
    key_id = secrets.token_hex(5)
    key = f"{PREFIX}{key_id}_{secrets.token_hex(32)}"
    row = FacilitatorKey(key_id=key_id, name=name, key_sha256=_digest(key), pay_to=allowed)
    with db.session_scope(url) as session:
        session.add(row)
        session.commit()
        session.refresh(row)
    return key, row


def _addresses(values: list[str]) -> list[str]:
    if ANY in values:
        if len(values) > 1:
            raise FleetError("--pay-to '*' (any address) cannot be combined with addresses")
        return [ANY]
    out: list[str] = []
    for value in values:
        if not is_address(value):
            raise FleetError(f"--pay-to {value!r} is not an EVM address")
        out.append(to_checksum_address(value))
    if not out:
        raise FleetError("--pay-to needs at least one address (or '*' for any)")
    return out


def list_keys(url: str) -> list[FacilitatorKey]:
    with db.session_scope(url) as session:
        return list(session.exec(select(FacilitatorKey).order_by(col(FacilitatorKey.created_at))))


def revoke_key(url: str, which: str) -> FacilitatorKey:
    """Revoke the key whose id (or name, when only one live key has it) is ``which``."""
    with db.session_scope(url) as session:
        row = session.get(FacilitatorKey, which.removeprefix(PREFIX))
        if row is None:
            live = session.exec(
                select(FacilitatorKey).where(
                    FacilitatorKey.name == which, col(FacilitatorKey.revoked_at).is_(None)
                )
            ).all()
            if len(live) > 1:
                raise FleetError(f"{len(live)} live keys are named {which}; revoke one by its id")
            row = live[0] if live else None
        if row is None:
            raise FleetError(
                f"no facilitator key {which!r}; `fleet facilitator key list` shows them"
            )
        if row.revoked_at is None:
            row.revoked_at = utcnow()
            session.add(row)
            session.commit()
            session.refresh(row)
        return row


def authenticate(url: str, presented: str) -> FacilitatorKey | None:
    """The live key ``presented`` is, or None."""
    match = KEY.match(presented.strip())
    if match is None:
        return None
    with db.session_scope(url) as session:
        row = session.get(FacilitatorKey, match.group(1))
    if row is None or row.revoked_at is not None:
        return None
    if not hmac.compare_digest(row.key_sha256, _digest(presented.strip())):
        return None
    return row


def fleet_wallets(url: str) -> set[str]:
    """The fleet's own wallets (its bots' addresses), lower-case."""
    with db.session_scope(url) as session:
        rows = session.exec(
            select(func.lower(BotRecord.address)).where(col(BotRecord.address).is_not(None))
        ).all()
    return {str(address) for address in rows}
