"""Content pipeline: channels, content items (the pipeline's state for SQL) and publish attempts
(the marker written before a send, so a retry never publishes twice).

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-25 01:39:14.231526
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | Sequence[str] | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "channels",
        sa.Column("name", sa.String(), nullable=False),
        sa.Column("kind", sa.String(), nullable=False),
        sa.Column("target", sa.String(), nullable=False),
        sa.Column("rate_per_s", sa.Float(), nullable=False),
        sa.Column("burst", sa.Integer(), nullable=False),
        sa.Column("max_length", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_channels")),
    )
    with op.batch_alter_table("channels", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_channels_kind"), ["kind"], unique=False)

    op.create_table(
        "content_items",
        sa.Column("content_id", sa.String(), nullable=False),
        sa.Column("bot", sa.String(), nullable=False),
        sa.Column("channel", sa.String(), nullable=False),
        sa.Column("brief", sa.String(), nullable=False),
        sa.Column("submitted_by", sa.String(), nullable=False),
        sa.Column("state", sa.String(), nullable=False),
        sa.Column("text", sa.String(), nullable=True),
        sa.Column("subject", sa.String(), nullable=True),
        sa.Column("publish_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("policy", sa.String(), nullable=True),
        sa.Column("decided_by", sa.String(), nullable=True),
        sa.Column("message_id", sa.String(), nullable=True),
        sa.Column("reason", sa.String(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("content_id", name=op.f("pk_content_items")),
    )
    with op.batch_alter_table("content_items", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_content_items_bot"), ["bot"], unique=False)
        batch_op.create_index(batch_op.f("ix_content_items_channel"), ["channel"], unique=False)
        batch_op.create_index(batch_op.f("ix_content_items_state"), ["state"], unique=False)

    op.create_table(
        "publish_attempts",
        sa.Column("content_id", sa.String(), nullable=False),
        sa.Column("channel", sa.String(), nullable=False),
        sa.Column("state", sa.String(), nullable=False),
        sa.Column("message_id", sa.String(), nullable=True),
        sa.Column("error", sa.String(), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("content_id", name=op.f("pk_publish_attempts")),
    )
    with op.batch_alter_table("publish_attempts", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_publish_attempts_channel"), ["channel"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("publish_attempts", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_publish_attempts_channel"))

    op.drop_table("publish_attempts")
    with op.batch_alter_table("content_items", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_content_items_state"))
        batch_op.drop_index(batch_op.f("ix_content_items_channel"))
        batch_op.drop_index(batch_op.f("ix_content_items_bot"))

    op.drop_table("content_items")
    with op.batch_alter_table("channels", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_channels_kind"))

    op.drop_table("channels")
