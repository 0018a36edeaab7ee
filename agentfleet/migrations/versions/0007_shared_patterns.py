"""Shared patterns (a regime a bot saw) and each bot's validation of them.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-25 03:07:09.114895
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | Sequence[str] | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "pattern_validations",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("pattern_id", sa.String(), nullable=False),
        sa.Column("bot", sa.String(), nullable=False),
        sa.Column("holds", sa.Boolean(), nullable=False),
        sa.Column("confidence", sa.Float(), nullable=True),
        sa.Column("error", sa.String(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_pattern_validations")),
        sa.UniqueConstraint(
            "pattern_id", "bot", name=op.f("uq_pattern_validations_pattern_id_bot")
        ),
    )
    with op.batch_alter_table("pattern_validations", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_pattern_validations_pattern_id"), ["pattern_id"], unique=False
        )

    op.create_table(
        "patterns",
        sa.Column("pattern_id", sa.String(), nullable=False),
        sa.Column("source", sa.String(), nullable=False),
        sa.Column("symbol", sa.String(), nullable=False),
        sa.Column("regime", sa.String(), nullable=False),
        sa.Column("confidence", sa.Float(), nullable=False),
        sa.Column("status", sa.String(), nullable=False),
        sa.Column("asked", sa.Integer(), nullable=False),
        sa.Column("holds", sa.Integer(), nullable=False),
        sa.Column("success_rate", sa.Float(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("pattern_id", name=op.f("pk_patterns")),
    )
    with op.batch_alter_table("patterns", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_patterns_source"), ["source"], unique=False)
        batch_op.create_index(batch_op.f("ix_patterns_status"), ["status"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("patterns", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_patterns_status"))
        batch_op.drop_index(batch_op.f("ix_patterns_source"))

    op.drop_table("patterns")
    with op.batch_alter_table("pattern_validations", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_pattern_validations_pattern_id"))

    op.drop_table("pattern_validations")
