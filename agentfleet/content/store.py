"""Database side of the content pipeline: channels, content items, audit trails, send markers.

Plain functions over a database URL (activities call them in a thread; the CLI reads with them).
Writes are idempotent: items are upserts keyed by content id, audit rows are written once per key,
and the send marker is what keeps a retried publish from sending twice.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from enum import StrEnum

from sqlmodel import col, select

from agentfleet.content.model import (
    MAX_LENGTH,
    ChannelConfig,
    ContentRecord,
    ContentState,
    RateLimit,
)
from agentfleet.db import record_once, session_scope
from agentfleet.models import AuditEvent, ChannelRecord, ContentItem, PublishAttempt, utcnow


def channel_config(row: ChannelRecord) -> ChannelConfig:
    return ChannelConfig.model_validate(
        {
            "name": row.name,
            "kind": row.kind,
            "target": row.target,
            "limit": RateLimit(rate_per_s=row.rate_per_s, burst=row.burst),
            "max_length": row.max_length,
        }
    )


def save_channel(url: str, channel: ChannelConfig) -> bool:
    """Add or change a channel; True if it is new."""
    with session_scope(url) as session:
        row = session.get(ChannelRecord, channel.name)
        created = row is None
        if row is None:
            row = ChannelRecord(
                name=channel.name,
                kind=channel.kind.value,
                target=channel.target,
                rate_per_s=channel.limit.rate_per_s,
                burst=channel.limit.burst,
                max_length=channel.max_length,
            )
        else:
            row.kind = channel.kind.value
            row.target = channel.target
            row.rate_per_s = channel.limit.rate_per_s
            row.burst = channel.limit.burst
            row.max_length = channel.max_length
        session.add(row)
        session.commit()
        return created


def get_channel(url: str, name: str) -> ChannelConfig | None:
    with session_scope(url) as session:
        row = session.get(ChannelRecord, name)
        return channel_config(row) if row is not None else None


def list_channels(url: str) -> list[ChannelConfig]:
    with session_scope(url) as session:
        rows = session.exec(select(ChannelRecord).order_by(col(ChannelRecord.name))).all()
        return [channel_config(row) for row in rows]


def default_max_length(kind: str) -> int:
    from agentfleet.content.model import ChannelKind

    return MAX_LENGTH[ChannelKind(kind)]


def record_content(url: str, record: ContentRecord) -> None:
    """Write the audit rows not yet written and bring the item's row in step with ``view``."""
    view = record.view
    with session_scope(url) as session:
        for entry in record.entries:
            record_once(
                session,
                AuditEvent(
                    idempotency_key=entry.key,
                    actor=entry.actor,
                    kind=f"content.{entry.step}",
                    subject=view.content_id,
                    workflow_id=record.workflow_id,
                    detail=entry.detail,
                ),
            )
        row = session.get(ContentItem, view.content_id)
        if row is None:
            row = ContentItem(
                content_id=view.content_id,
                bot=view.bot,
                channel=view.channel,
                brief=view.brief,
                submitted_by=view.submitted_by,
                state=view.state.value,
            )
        row.state = view.state.value
        row.text = view.text
        row.subject = view.subject or None
        row.publish_at = view.publish_at
        row.policy = view.policy
        row.decided_by = view.decided_by
        row.message_id = view.receipt.message_id if view.receipt else None
        row.reason = view.reason or None
        row.updated_at = utcnow()
        session.add(row)
        session.commit()


def list_items(
    url: str, *, state: ContentState | None = None, bot: str | None = None, limit: int = 50
) -> list[ContentItem]:
    with session_scope(url) as session:
        query = select(ContentItem)
        if state is not None:
            query = query.where(ContentItem.state == state.value)
        if bot is not None:
            query = query.where(ContentItem.bot == bot)
        query = query.order_by(col(ContentItem.created_at).desc()).limit(limit)
        rows: Sequence[ContentItem] = session.exec(query).all()
        return list(rows)


def get_item(url: str, content_id: str) -> ContentItem | None:
    with session_scope(url) as session:
        return session.get(ContentItem, content_id)


def audit_trail(url: str, content_id: str) -> list[AuditEvent]:
    """Every audit row of one item, oldest first."""
    with session_scope(url) as session:
        query = (
            select(AuditEvent)
            .where(AuditEvent.subject == content_id)
            .where(col(AuditEvent.kind).startswith("content."))
            .order_by(col(AuditEvent.id))
        )
        return list(session.exec(query).all())


class SendState(StrEnum):
    SENDING = "sending"
    SENT = "sent"
    NOT_SENT = "not_sent"
    UNCONFIRMED = "unconfirmed"
    REFUSED = "refused"


def begin_send(url: str, content_id: str, channel: str) -> PublishAttempt:
    """Mark the send of ``content_id`` as started, committed before the request leaves.

    Returns the row as it was *before* this call (``state`` ``not_sent`` for a first attempt):
    a caller that finds ``sending`` or ``unconfirmed`` must not send again, one that finds
    ``sent`` has its receipt.
    """
    with session_scope(url) as session:
        row = session.get(PublishAttempt, content_id)
        if row is None:
            before = PublishAttempt(content_id=content_id, channel=channel, state="not_sent")
            row = PublishAttempt(content_id=content_id, channel=channel, state="sending")
        else:
            before = PublishAttempt.model_validate(row.model_dump())
            if row.state in {SendState.NOT_SENT.value}:
                row.state = SendState.SENDING.value
        row.attempts += 1
        row.updated_at = utcnow()
        session.add(row)
        session.commit()
        return before


def finish_send(
    url: str,
    content_id: str,
    state: SendState,
    *,
    message_id: str | None = None,
    error: str | None = None,
) -> None:
    with session_scope(url) as session:
        row = session.get(PublishAttempt, content_id)
        if row is None:
            return
        row.state = state.value
        row.message_id = message_id or row.message_id
        row.error = error
        row.updated_at = utcnow()
        session.add(row)
        session.commit()


def allow_resend(url: str, content_id: str) -> None:
    """A human looked at the channel and said the item was not published: send it again."""
    finish_send(url, content_id, SendState.NOT_SENT, error="resend allowed by a human")


def send_marker(url: str, content_id: str) -> PublishAttempt | None:
    with session_scope(url) as session:
        return session.get(PublishAttempt, content_id)


def parse_when(text: str, now: datetime) -> datetime:
    """``--at``: an ISO 8601 time (with offset, or UTC when none) or ``+15m`` from now."""
    from datetime import UTC

    from agentfleet.content.model import parse_duration

    raw = text.strip()
    if raw.startswith("+"):
        return now + parse_duration(raw[1:])
    try:
        when = datetime.fromisoformat(raw)
    except ValueError:
        raise ValueError(
            f"--at {text!r} is neither an ISO time (2026-11-25T09:00Z) nor +DURATION (+15m)"
        ) from None
    return when if when.tzinfo else when.replace(tzinfo=UTC)
