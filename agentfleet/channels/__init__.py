"""Channel adapters: send one :class:`~agentfleet.content.model.OutboundMessage` to one channel.

:func:`send` is the single entry point the publishing activity calls. It returns a
:class:`~agentfleet.content.model.SendReceipt` or raises one of the :class:`ChannelError` outcomes,
which tell a caller whether a retry is safe (:class:`NotSent`, :class:`RateLimited`), risky
(:class:`MaybeSent`) or useless (:class:`Refused`). Endpoints come from settings; with
``FLEET_CHANNEL_SANDBOX`` and no real endpoint they are the local sandbox's."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from agentfleet.channels.email import send_email
from agentfleet.channels.endpoints import (
    SANDBOX_TELEGRAM_TOKEN,
    dev_webhook_secret,
    smtp_endpoint,
    telegram_endpoint,
    webhook_secret,
)
from agentfleet.channels.errors import (
    ChannelError,
    MaybeSent,
    NotConfigured,
    NotSent,
    RateLimited,
    Refused,
)
from agentfleet.channels.telegram import send_telegram
from agentfleet.channels.webhook import send_webhook
from agentfleet.content.model import (
    MAX_LENGTH,
    ChannelConfig,
    ChannelKind,
    OutboundMessage,
    SendReceipt,
)
from agentfleet.settings import Settings

Adapter = Callable[[ChannelConfig, OutboundMessage, Settings], Awaitable[SendReceipt]]

ADAPTERS: dict[ChannelKind, Adapter] = {
    ChannelKind.TELEGRAM: send_telegram,
    ChannelKind.EMAIL: send_email,
    ChannelKind.WEBHOOK: send_webhook,
}


async def send(channel: ChannelConfig, message: OutboundMessage, settings: Settings) -> SendReceipt:
    """Send ``message`` through the adapter of ``channel.kind``.

    An empty text, or one longer than ``channel.max_length`` or the kind's :data:`MAX_LENGTH`, is
    :class:`Refused` before anything is sent.
    """
    limit = min(channel.max_length, MAX_LENGTH[channel.kind])
    if not message.text.strip():
        raise Refused(f"{channel.kind} channel {channel.name}: the message text is empty")
    if len(message.text) > limit:
        raise Refused(
            f"{channel.kind} channel {channel.name}: the text has {len(message.text)} "
            f"characters, more than the {limit} allowed"
        )
    return await ADAPTERS[channel.kind](channel, message, settings)


__all__ = [
    "ADAPTERS",
    "SANDBOX_TELEGRAM_TOKEN",
    "ChannelError",
    "MaybeSent",
    "NotConfigured",
    "NotSent",
    "RateLimited",
    "Refused",
    "dev_webhook_secret",
    "send",
    "send_email",
    "send_telegram",
    "send_webhook",
    "smtp_endpoint",
    "telegram_endpoint",
    "webhook_secret",
]
