"""Model registry (every version a learning task produced) and learning rounds.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-25 02:35:14.787870
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0006"
down_revision: str | Sequence[str] | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "learning_rounds",
        sa.Column("round_id", sa.String(), nullable=False),
        sa.Column("task", sa.String(), nullable=False),
        sa.Column("round", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(), nullable=False),
        sa.Column("strategy", sa.String(), nullable=False),
        sa.Column(
            "participants", sa.JSON().with_variant(postgresql.JSONB(), "postgresql"), nullable=False
        ),
        sa.Column(
            "dropped", sa.JSON().with_variant(postgresql.JSONB(), "postgresql"), nullable=False
        ),
        sa.Column(
            "excluded", sa.JSON().with_variant(postgresql.JSONB(), "postgresql"), nullable=False
        ),
        sa.Column("candidate", sa.String(), nullable=True),
        sa.Column("champion", sa.String(), nullable=True),
        sa.Column(
            "metrics", sa.JSON().with_variant(postgresql.JSONB(), "postgresql"), nullable=False
        ),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("round_id", name=op.f("pk_learning_rounds")),
    )
    with op.batch_alter_table("learning_rounds", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_learning_rounds_status"), ["status"], unique=False)
        batch_op.create_index(batch_op.f("ix_learning_rounds_task"), ["task"], unique=False)

    op.create_table(
        "model_versions",
        sa.Column("version_id", sa.String(), nullable=False),
        sa.Column("task", sa.String(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("parent", sa.String(), nullable=True),
        sa.Column("round_id", sa.String(), nullable=True),
        sa.Column(
            "participants", sa.JSON().with_variant(postgresql.JSONB(), "postgresql"), nullable=False
        ),
        sa.Column(
            "excluded", sa.JSON().with_variant(postgresql.JSONB(), "postgresql"), nullable=False
        ),
        sa.Column(
            "metrics", sa.JSON().with_variant(postgresql.JSONB(), "postgresql"), nullable=False
        ),
        sa.Column("artifact", sa.String(), nullable=False),
        sa.Column("status", sa.String(), nullable=False),
        sa.Column("strategy", sa.String(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("version_id", name=op.f("pk_model_versions")),
        sa.UniqueConstraint("round_id", name=op.f("uq_model_versions_round_id")),
        sa.UniqueConstraint("task", "version", name=op.f("uq_model_versions_task_version")),
    )
    with op.batch_alter_table("model_versions", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_model_versions_status"), ["status"], unique=False)
        batch_op.create_index(batch_op.f("ix_model_versions_task"), ["task"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("model_versions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_model_versions_task"))
        batch_op.drop_index(batch_op.f("ix_model_versions_status"))

    op.drop_table("model_versions")
    with op.batch_alter_table("learning_rounds", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_learning_rounds_task"))
        batch_op.drop_index(batch_op.f("ix_learning_rounds_status"))

    op.drop_table("learning_rounds")
