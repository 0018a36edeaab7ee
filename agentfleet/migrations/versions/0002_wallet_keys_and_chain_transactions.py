"""Wallet keys (encrypted keystores) and chain transactions (recorded before broadcast).

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-24 20:39:32.486140
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "chain_transactions",
        sa.Column("request_id", sa.String(), nullable=False),
        sa.Column("chain_id", sa.BigInteger(), nullable=False),
        sa.Column("sender", sa.String(), nullable=False),
        sa.Column("nonce", sa.BigInteger(), nullable=False),
        sa.Column("to", sa.String(), nullable=True),
        sa.Column("value", sa.String(), nullable=False),
        sa.Column("data", sa.String(), nullable=False),
        sa.Column("gas_limit", sa.BigInteger(), nullable=False),
        sa.Column("status", sa.String(), nullable=False),
        sa.Column("tx_hash", sa.String(), nullable=True),
        sa.Column(
            "attempts", sa.JSON().with_variant(postgresql.JSONB(), "postgresql"), nullable=False
        ),
        sa.Column("block_number", sa.BigInteger(), nullable=True),
        sa.Column("block_hash", sa.String(), nullable=True),
        sa.Column("gas_used", sa.BigInteger(), nullable=True),
        sa.Column("reorgs", sa.Integer(), nullable=False),
        sa.Column("error", sa.String(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("request_id", name=op.f("pk_chain_transactions")),
        sa.UniqueConstraint(
            "chain_id", "sender", "nonce", name=op.f("uq_chain_transactions_chain_id_sender_nonce")
        ),
    )
    with op.batch_alter_table("chain_transactions", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_chain_transactions_sender"), ["sender"], unique=False)
        batch_op.create_index(batch_op.f("ix_chain_transactions_status"), ["status"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_chain_transactions_tx_hash"), ["tx_hash"], unique=False
        )

    op.create_table(
        "wallet_keys",
        sa.Column("address", sa.String(), nullable=False),
        sa.Column("label", sa.String(), nullable=False),
        sa.Column(
            "keystore", sa.JSON().with_variant(postgresql.JSONB(), "postgresql"), nullable=False
        ),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("address", name=op.f("pk_wallet_keys")),
        sa.UniqueConstraint("label", name=op.f("uq_wallet_keys_label")),
    )


def downgrade() -> None:
    op.drop_table("wallet_keys")
    with op.batch_alter_table("chain_transactions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_chain_transactions_tx_hash"))
        batch_op.drop_index(batch_op.f("ix_chain_transactions_status"))
        batch_op.drop_index(batch_op.f("ix_chain_transactions_sender"))

    op.drop_table("chain_transactions")
