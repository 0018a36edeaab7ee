"""Content pipeline activities on ``fleet-io``: read what an item needs, write its audit trail,
hand it to its channel's publisher.

``prepare_content`` refuses (non-retryable) what a retry cannot fix: an unknown or inactive bot,
a bot that is not a publisher, an unknown channel, a policy file that does not load.
"""

from __future__ import annotations

import asyncio

from temporalio import activity
from temporalio.client import Client
from temporalio.exceptions import ApplicationError

from agentfleet import db, taskqueues
from agentfleet.bots.model import BotKind, BotStatus, disclosure_for
from agentfleet.content import store as content_store
from agentfleet.content.model import (
    NOTICE_DISCLOSURE,
    ChannelConfig,
    ContentContext,
    ContentOrder,
    ContentRecord,
    InlineButton,
    Notice,
    OutboundMessage,
    PublishRequest,
    approval_buttons,
)
from agentfleet.content.policy.loading import PolicyError, default_policy, load_policy
from agentfleet.models import BotRecord
from agentfleet.operations import metrics
from agentfleet.settings import Settings
from clients import publishers


def refused(message: str, kind: str) -> ApplicationError:
    return ApplicationError(message, type=kind, non_retryable=True)


class ContentActivities:
    task_queue = taskqueues.IO

    def __init__(self, settings: Settings, client: Client | None = None) -> None:
        self._settings = settings
        self._url = settings.effective_database_url
        self._client = client

    @activity.defn(name="prepare_content")
    async def prepare_content(self, order: ContentOrder) -> ContentContext:
        return await asyncio.to_thread(self._prepare, order)

    def _prepare(self, order: ContentOrder) -> ContentContext:
        with db.session_scope(self._url) as session:
            bot = session.get(BotRecord, order.bot)
        if bot is None:
            raise refused(f"no bot named {order.bot}", "UnknownBot")
        if bot.kind != BotKind.PUBLISHER.value:
            raise refused(
                f"bot {order.bot} is a {bot.kind}; content needs a publisher", "NotPublisher"
            )
        if bot.status != BotStatus.ACTIVE.value:
            raise refused(
                f"bot {order.bot} is {bot.status}; content needs it active", "BotNotActive"
            )
        channel = content_store.get_channel(self._url, order.channel)
        if channel is None:
            raise refused(f"no channel named {order.channel}", "UnknownChannel")
        try:
            path = self._settings.content_policy
            policy = load_policy(path) if path else default_policy()
        except PolicyError as err:
            raise refused(str(err), "InvalidPolicy") from None
        return ContentContext(
            bot=bot.name,
            owner=bot.owner,
            disclosure=disclosure_for(bot.owner),
            channel=channel,
            policy=policy.model_dump(mode="json"),
            policy_label=policy.label,
        )

    @activity.defn(name="record_content")
    async def record_content(self, record: ContentRecord) -> None:
        """The item's audit rows (each once) and its ``content_items`` row."""
        await asyncio.to_thread(content_store.record_content, self._url, record)
        for entry in record.entries:
            metrics.AUDIT_EVENTS.labels(kind=f"content.{entry.step}").inc()

    @activity.defn(name="hand_to_publisher")
    async def hand_to_publisher(self, request: PublishRequest) -> None:
        """Signal-with-start ``publisher-{channel}``: the entity is created on first use."""
        await self._signal_publisher(request)

    @activity.defn(name="notify_approvers")
    async def notify_approvers(self, notice: Notice) -> bool:
        """Send ``notice`` to the approvers' channel through its publisher (within its rate
        limit, once per notice); False when that channel does not exist (logged)."""
        channel = await asyncio.to_thread(content_store.get_channel, self._url, notice.channel)
        if channel is None:
            activity.logger.warning(
                "approval notices go to channel %s, which does not exist: `fleet channel add`",
                notice.channel,
            )
            return False
        notice_id = f"{notice.content_id}-{notice.kind}"
        await self._signal_publisher(
            automated_request(
                channel,
                notice_id,
                text=f"{notice.text}\n\n{NOTICE_DISCLOSURE}",
                subject=notice.text.split(".")[0][:120],
                idempotency_key=f"notice-{notice_id}",
                buttons=approval_buttons(notice.content_id),
            )
        )
        return True

    async def _signal_publisher(self, request: PublishRequest) -> None:
        await hand_over(self._client, request)

    @activity.defn(name="allow_resend")
    async def allow_resend(self, content_id: str) -> None:
        await asyncio.to_thread(content_store.allow_resend, self._url, content_id)


def automated_request(
    channel: ChannelConfig,
    message_id: str,
    *,
    text: str,
    subject: str,
    idempotency_key: str,
    buttons: list[list[InlineButton]] | None = None,
) -> PublishRequest:
    """A message from agentfleet itself (a notice, an alert) for ``channel``'s publisher: no
    pipeline waits for its answer. ``message_id`` is the publisher's and the send marker's key,
    so the same id is sent at most once."""
    return PublishRequest(
        content_id=message_id,
        reply_to=None,
        channel=channel,
        message=OutboundMessage(
            content_id=message_id,
            bot="agentfleet",
            text=text,
            subject=subject,
            idempotency_key=idempotency_key,
            buttons=buttons or [],
        ),
    )


async def hand_over(client: Client | None, request: PublishRequest) -> None:
    """:func:`clients.publishers.hand_over`, refused where the worker has no Temporal client."""
    if client is None:
        raise refused("handing over needs a Temporal client in the worker", "NoClient")
    await publishers.hand_over(client, request)
