"""Fleet commands' stored answers: one row per batch of a large command (command id, run id,
batch), a JSON array of its bots' answers.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-07 12:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | Sequence[str] | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "command_answers",
        sa.Column("command_id", sa.String(), nullable=False),
        sa.Column("run_id", sa.String(), nullable=False),
        sa.Column("batch", sa.Integer(), nullable=False),
        sa.Column("bots", sa.Integer(), nullable=False),
        sa.Column("answers", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("command_id", "run_id", "batch", name=op.f("pk_command_answers")),
    )
    with op.batch_alter_table("command_answers", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_command_answers_created_at"), ["created_at"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("command_answers", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_command_answers_created_at"))
    op.drop_table("command_answers")
