"""Webhook adapter: one signed POST per message, per the Standard Webhooks specification.

The ``webhook-id`` is the message's idempotency key, so every retry of one item carries the same
id and a receiver that dedupes (as the spec asks) publishes it once.
"""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import httpx
from standardwebhooks.webhooks import EmptyWebhookSecretError, Webhook

from agentfleet.channels.clients import shared
from agentfleet.channels.endpoints import describe_url, webhook_secret
from agentfleet.channels.errors import (
    MaybeSent,
    NotConfigured,
    RateLimited,
    Refused,
    describe_transport,
    transport_error_class,
)
from agentfleet.content.model import ChannelConfig, OutboundMessage, SendReceipt
from agentfleet.settings import Settings

EVENT_TYPE = "content.published"
DEFAULT_RETRY_AFTER_S = 5.0
"""Delay assumed when a 429 carries no usable ``Retry-After``."""


def webhook_payload(
    channel: ChannelConfig, message: OutboundMessage, now: datetime
) -> dict[str, Any]:
    """The JSON body: ``{"type", "timestamp", "data": {content_id, bot, channel, text, subject}}``
    (the envelope the Standard Webhooks spec recommends)."""
    return {
        "type": EVENT_TYPE,
        "timestamp": now.isoformat().replace("+00:00", "Z"),
        "data": {
            "content_id": message.content_id,
            "bot": message.bot,
            "channel": channel.name,
            "text": message.text,
            "subject": message.subject,
        },
    }


def signed_request(
    channel: ChannelConfig, message: OutboundMessage, signer: Webhook, now: datetime
) -> tuple[bytes, dict[str, str]]:
    """Body and headers (``webhook-id``, ``webhook-timestamp``, ``webhook-signature``)."""
    body = json.dumps(webhook_payload(channel, message, now), separators=(",", ":"))
    webhook_id = message.idempotency_key
    headers = {
        "content-type": "application/json",
        "user-agent": "agentfleet-webhooks",
        "webhook-id": webhook_id,
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": signer.sign(webhook_id, now, body),
    }
    return body.encode(), headers


async def send_webhook(
    channel: ChannelConfig, message: OutboundMessage, settings: Settings
) -> SendReceipt:
    """POST the signed event to ``channel.target``; redirects are not followed.

    2xx: a receipt whose ``message_id`` is the ``webhook-id``. 429: :class:`RateLimited` (its
    ``Retry-After``, seconds or HTTP date). Other 3xx/4xx: :class:`Refused`. 5xx, read timeout or
    a dropped connection: :class:`MaybeSent`. A failed connect: :class:`NotSent`.
    """
    try:
        signer = Webhook(webhook_secret(settings).get_secret_value())
    except (ValueError, EmptyWebhookSecretError):
        raise NotConfigured("webhook: FLEET_WEBHOOK_SECRET is not whsec_ + base64") from None
    now = datetime.now(UTC)
    body, headers = signed_request(channel, message, signer, now)
    where = f"webhook {channel.name} at {describe_url(channel.target)}"
    try:
        timeout = settings.channel_timeout_s
        client = shared(
            ("webhook", timeout),
            lambda: httpx.AsyncClient(timeout=timeout, follow_redirects=False),
        )
        response = await client.post(channel.target, content=body, headers=headers)
    except (httpx.HTTPError, httpx.InvalidURL) as error:
        raise transport_error_class(error)(f"{where}: {describe_transport(error)}") from None
    status = response.status_code
    if status == 429:
        after = retry_after_s(response.headers.get("retry-after"), now)
        raise RateLimited(f"{where}: 429 too many requests, retry after {after:g} s", after)
    if status >= 500:
        raise MaybeSent(f"{where}: server error {status}")
    if status >= 300:
        raise Refused(f"{where}: answered {status}")
    return SendReceipt(
        channel=channel.name,
        message_id=headers["webhook-id"],
        sent_at=datetime.now(UTC),
        detail={"url": describe_url(channel.target), "status": status},
    )


def retry_after_s(value: str | None, now: datetime) -> float:
    """Seconds to wait from a ``Retry-After`` header (delta seconds or an HTTP date)."""
    if value is None:
        return DEFAULT_RETRY_AFTER_S
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:
        return max(0.0, seconds) if math.isfinite(seconds) else DEFAULT_RETRY_AFTER_S
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return DEFAULT_RETRY_AFTER_S
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - now).total_seconds())
