"""Facilitator API keys: the SHA-256 of each key, its name, its payTo allow-list, revocation.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-07 05:10:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0009"
down_revision: str | Sequence[str] | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "facilitator_keys",
        sa.Column("key_id", sa.String(), nullable=False),
        sa.Column("name", sa.String(), nullable=False),
        sa.Column("key_sha256", sa.String(), nullable=False),
        sa.Column(
            "pay_to", sa.JSON().with_variant(postgresql.JSONB(), "postgresql"), nullable=True
        ),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("key_id", name=op.f("pk_facilitator_keys")),
    )
    with op.batch_alter_table("facilitator_keys", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_facilitator_keys_name"), ["name"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("facilitator_keys", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_facilitator_keys_name"))

    op.drop_table("facilitator_keys")
