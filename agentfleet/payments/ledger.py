"""The payments ledger (table ``payments``) and the payment-identifier claims.

Rows are written by the payment saga's ``record_payment`` activity only (an upsert keyed by the
payment id: a retried activity rewrites the same row). The CLI and reconciliation read them.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlmodel import Session, col, or_, select

from agentfleet import db
from agentfleet.models import PaymentIdentifier, PaymentRecord, utcnow
from agentfleet.payments.model import PaymentView


def record(url: str, view: PaymentView) -> None:
    """Write ``view`` as the ledger row of its payment (insert or update)."""
    with db.session_scope(url) as session:
        _upsert(session, view)
        session.commit()


def _upsert(session: Session, view: PaymentView) -> None:
    row = session.get(PaymentRecord, view.payment_id)
    if row is None:
        row = PaymentRecord(
            payment_id=view.payment_id,
            chain_id=int(view.network.removeprefix("eip155:")),
            asset=view.asset,
            nonce=view.payment_id.rsplit("-", 1)[-1],
            payer=view.payer,
            pay_to=view.pay_to,
            amount=str(view.amount),
            status=view.status.value,
        )
    row.buyer = view.buyer
    row.seller = view.seller
    row.skill = view.skill.value if view.skill else None
    row.status = view.status.value
    row.relayer = view.relayer
    row.tx_hash = view.tx_hash
    row.block_number = view.block_number
    row.confirmations = view.confirmations
    row.reason = view.detail or view.reason
    row.updated_at = utcnow()
    session.add(row)


def mark_refunded(url: str, payment_id: str, tx_hash: str) -> bool:
    """The payment was paid back (compensation): status ``refunded`` and the refund's hash.
    False when the ledger has no such payment."""
    with db.session_scope(url) as session:
        row = session.get(PaymentRecord, payment_id)
        if row is None:
            return False
        row.status = "refunded"
        row.refund_tx_hash = tx_hash
        row.updated_at = utcnow()
        session.add(row)
        session.commit()
    return True


def claim_identifier(url: str, identifier: str, payment_id: str, sha256: str) -> bool:
    """Claim a payment-identifier for ``payment_id``'s payload; False when it is already held by
    another payload (the caller answers 409)."""
    engine = db.make_engine(url)
    insert = pg_insert if engine.dialect.name == "postgresql" else sqlite_insert
    row: dict[str, Any] = {
        "identifier": identifier,
        "payment_id": payment_id,
        "payload_sha256": sha256,
        "created_at": utcnow(),
    }
    with engine.begin() as conn:
        conn.execute(insert(PaymentIdentifier).values(**row).on_conflict_do_nothing())
    with db.session_scope(url) as session:
        held = session.get(PaymentIdentifier, identifier)
    return held is not None and held.payload_sha256 == sha256


def list_payments(
    url: str, *, limit: int = 50, status: str | None = None, bot: str | None = None
) -> list[PaymentRecord]:
    """The newest rows, optionally of one status, or of one bot (as buyer or seller)."""
    with db.session_scope(url) as session:
        query = select(PaymentRecord).order_by(col(PaymentRecord.created_at).desc()).limit(limit)
        if status:
            query = query.where(PaymentRecord.status == status)
        if bot:
            query = query.where(or_(PaymentRecord.buyer == bot, PaymentRecord.seller == bot))
        return list(session.exec(query).all())


def get_payment(url: str, payment_id: str) -> PaymentRecord | None:
    with db.session_scope(url) as session:
        return session.get(PaymentRecord, payment_id)
