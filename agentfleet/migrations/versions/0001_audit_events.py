"""Audit events: one row per thing that happened, written once per idempotency key.

Revision ID: 0001
Revises:
Create Date: 2026-11-24 20:17:21.269610
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "audit_events",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("idempotency_key", sa.String(), nullable=False),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.String(), nullable=False),
        sa.Column("kind", sa.String(), nullable=False),
        sa.Column("subject", sa.String(), nullable=False),
        sa.Column("workflow_id", sa.String(), nullable=True),
        sa.Column(
            "detail", sa.JSON().with_variant(postgresql.JSONB(), "postgresql"), nullable=False
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_events")),
        sa.UniqueConstraint("idempotency_key", name=op.f("uq_audit_events_idempotency_key")),
    )
    op.create_index(op.f("ix_audit_events_kind"), "audit_events", ["kind"])
    op.create_index(op.f("ix_audit_events_subject"), "audit_events", ["subject"])
    op.create_index(op.f("ix_audit_events_workflow_id"), "audit_events", ["workflow_id"])


def downgrade() -> None:
    op.drop_index(op.f("ix_audit_events_workflow_id"), table_name="audit_events")
    op.drop_index(op.f("ix_audit_events_subject"), table_name="audit_events")
    op.drop_index(op.f("ix_audit_events_kind"), table_name="audit_events")
    op.drop_table("audit_events")
