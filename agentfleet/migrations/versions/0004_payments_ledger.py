"""Payments ledger (one row per x402 payment that passed verification) and the
payment-identifier ids the gateway has seen.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-24 23:08:13.673030
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "payments",
        sa.Column("payment_id", sa.String(), nullable=False),
        sa.Column("chain_id", sa.BigInteger(), nullable=False),
        sa.Column("asset", sa.String(), nullable=False),
        sa.Column("nonce", sa.String(), nullable=False),
        sa.Column("payer", sa.String(), nullable=False),
        sa.Column("pay_to", sa.String(), nullable=False),
        sa.Column("amount", sa.String(), nullable=False),
        sa.Column("buyer", sa.String(), nullable=True),
        sa.Column("seller", sa.String(), nullable=True),
        sa.Column("skill", sa.String(), nullable=True),
        sa.Column("status", sa.String(), nullable=False),
        sa.Column("relayer", sa.String(), nullable=True),
        sa.Column("tx_hash", sa.String(), nullable=True),
        sa.Column("block_number", sa.BigInteger(), nullable=True),
        sa.Column("confirmations", sa.Integer(), nullable=False),
        sa.Column("reason", sa.String(), nullable=True),
        sa.Column("refund_tx_hash", sa.String(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("payment_id", name=op.f("pk_payments")),
    )
    with op.batch_alter_table("payments", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_payments_chain_id"), ["chain_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_payments_pay_to"), ["pay_to"], unique=False)
        batch_op.create_index(batch_op.f("ix_payments_payer"), ["payer"], unique=False)
        batch_op.create_index(batch_op.f("ix_payments_seller"), ["seller"], unique=False)
        batch_op.create_index(batch_op.f("ix_payments_status"), ["status"], unique=False)
        batch_op.create_index(batch_op.f("ix_payments_tx_hash"), ["tx_hash"], unique=False)

    op.create_table(
        "payment_identifiers",
        sa.Column("identifier", sa.String(), nullable=False),
        sa.Column("payment_id", sa.String(), nullable=False),
        sa.Column("payload_sha256", sa.String(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("identifier", name=op.f("pk_payment_identifiers")),
    )


def downgrade() -> None:
    op.drop_table("payment_identifiers")
    with op.batch_alter_table("payments", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_payments_tx_hash"))
        batch_op.drop_index(batch_op.f("ix_payments_status"))
        batch_op.drop_index(batch_op.f("ix_payments_seller"))
        batch_op.drop_index(batch_op.f("ix_payments_payer"))
        batch_op.drop_index(batch_op.f("ix_payments_pay_to"))
        batch_op.drop_index(batch_op.f("ix_payments_chain_id"))

    op.drop_table("payments")
