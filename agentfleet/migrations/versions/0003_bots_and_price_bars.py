"""Bots (SQL view of the bot entities) and price bars (imported OHLCV data).

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-24 21:08:06.230473
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "bots",
        sa.Column("name", sa.String(), nullable=False),
        sa.Column("kind", sa.String(), nullable=False),
        sa.Column("owner", sa.String(), nullable=False),
        sa.Column("status", sa.String(), nullable=False),
        sa.Column("description", sa.String(), nullable=False),
        sa.Column(
            "params", sa.JSON().with_variant(postgresql.JSONB(), "postgresql"), nullable=False
        ),
        sa.Column("address", sa.String(), nullable=True),
        sa.Column("agent_id", sa.BigInteger(), nullable=True),
        sa.Column("reason", sa.String(), nullable=True),
        sa.Column("model_version", sa.String(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("retired_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_bots")),
    )
    with op.batch_alter_table("bots", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_bots_address"), ["address"], unique=False)
        batch_op.create_index(batch_op.f("ix_bots_kind"), ["kind"], unique=False)
        batch_op.create_index(batch_op.f("ix_bots_owner"), ["owner"], unique=False)
        batch_op.create_index(batch_op.f("ix_bots_status"), ["status"], unique=False)

    op.create_table(
        "price_bars",
        sa.Column("symbol", sa.String(), nullable=False),
        sa.Column("ts", sa.DateTime(timezone=True), nullable=False),
        sa.Column("open", sa.Float(), nullable=False),
        sa.Column("high", sa.Float(), nullable=False),
        sa.Column("low", sa.Float(), nullable=False),
        sa.Column("close", sa.Float(), nullable=False),
        sa.Column("volume", sa.Float(), nullable=False),
        sa.Column("source", sa.String(), nullable=False),
        sa.PrimaryKeyConstraint("symbol", "ts", name=op.f("pk_price_bars")),
    )


def downgrade() -> None:
    op.drop_table("price_bars")
    with op.batch_alter_table("bots", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_bots_status"))
        batch_op.drop_index(batch_op.f("ix_bots_owner"))
        batch_op.drop_index(batch_op.f("ix_bots_kind"))
        batch_op.drop_index(batch_op.f("ix_bots_address"))

    op.drop_table("bots")
