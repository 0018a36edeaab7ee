"""Telegram adapter: one ``sendMessage`` through python-telegram-bot, outcome mapped for retries.

The Bot API URL holds the token (``<api>/bot<token>/sendMessage``), so no message built here
quotes a library error's text or URL, and the httpx request log line has the token masked.
"""

from __future__ import annotations

import hashlib
import logging
import re
from datetime import UTC, datetime, timedelta

from telegram import Bot, InlineKeyboardButton, InlineKeyboardMarkup
from telegram.error import (
    BadRequest,
    ChatMigrated,
    Conflict,
    Forbidden,
    InvalidToken,
    NetworkError,
    RetryAfter,
    TelegramError,
    TimedOut,
)
from telegram.request import HTTPXRequest

from agentfleet.channels.clients import shared
from agentfleet.channels.endpoints import describe_url, telegram_endpoint
from agentfleet.channels.errors import (
    ChannelError,
    MaybeSent,
    RateLimited,
    Refused,
    describe_transport,
    httpx_cause,
    one_line,
    transport_error_class,
)
from agentfleet.content.model import ChannelConfig, InlineButton, OutboundMessage, SendReceipt
from agentfleet.settings import Settings

POOL_SIZE = 64
"""Connections one loop keeps to the Bot API (a publisher sends up to 64 at once)."""
_BOT_PATH = re.compile(r"/bot[^/\s]+")
_CHAT_NUMBER = re.compile(r"^-?\d+$")


class _MaskBotToken(logging.Filter):
    """httpx logs every request URL at INFO; a Bot API URL carries the token in its path."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple) and any("/bot" in str(arg) for arg in record.args):
            record.args = tuple(
                _BOT_PATH.sub("/bot***", str(arg)) if "/bot" in str(arg) else arg
                for arg in record.args
            )
        return True


_httpx_logger = logging.getLogger("httpx")
if not any(isinstance(f, _MaskBotToken) for f in _httpx_logger.filters):
    _httpx_logger.addFilter(_MaskBotToken())


def chat_id_of(target: str) -> int | str:
    """The Bot API ``chat_id`` for a channel target: an integer id, or ``@channelusername``."""
    return int(target) if _CHAT_NUMBER.match(target) else target


async def send_telegram(
    channel: ChannelConfig, message: OutboundMessage, settings: Settings
) -> SendReceipt:
    """Send ``message.text`` as plain text to ``channel.target``.

    Every timeout (connect, write, read, pool) is ``settings.channel_timeout_s``. Raises
    :class:`RateLimited` (429), :class:`Refused` (400/401/403/404/409), :class:`NotSent`
    (connection failed before the request left), :class:`MaybeSent` (read timeout, dropped
    connection, 5xx, unreadable answer).
    """
    api, token = telegram_endpoint(settings)
    secret = token.get_secret_value()
    timeout = settings.channel_timeout_s
    digest = hashlib.sha256(secret.encode()).hexdigest()
    bot = shared(("telegram", api, digest, timeout), lambda: _make_bot(api, secret, timeout))
    where = f"telegram chat {channel.target} via {describe_url(api)}"
    try:
        sent = await bot.send_message(
            chat_id=chat_id_of(channel.target),
            text=message.text,
            reply_markup=_keyboard(message.buttons),
        )
    except TelegramError as error:
        raise _channel_error(error, where, secret) from None
    return SendReceipt(
        channel=channel.name,
        message_id=str(sent.message_id),
        sent_at=datetime.now(UTC),
        detail={"chat_id": channel.target, "date": sent.date.isoformat()},
    )


def _keyboard(rows: list[list[InlineButton]]) -> InlineKeyboardMarkup | None:
    if not rows:
        return None
    return InlineKeyboardMarkup(
        [[InlineKeyboardButton(b.text, callback_data=b.data) for b in row] for row in rows]
    )


def _make_bot(api: str, secret: str, timeout: float) -> Bot:
    """A Bot whose connection pool is shared by the sends of one loop (kept by ``shared``)."""
    request = HTTPXRequest(
        connection_pool_size=POOL_SIZE,
        connect_timeout=timeout,
        read_timeout=timeout,
        write_timeout=timeout,
        pool_timeout=timeout,
    )
    return Bot(secret, base_url=f"{api}/bot", request=request, get_updates_request=request)


def _channel_error(error: TelegramError, where: str, secret: str) -> ChannelError:
    if isinstance(error, RetryAfter):
        after = getattr(error, "_retry_after", None)  # the property warns about its type
        if not isinstance(after, timedelta):
            after = error.retry_after
        seconds = after.total_seconds() if isinstance(after, timedelta) else float(after)
        return RateLimited(f"{where}: too many requests, retry after {seconds:g} s", seconds)
    if isinstance(error, ChatMigrated):
        return Refused(f"{where}: the group moved to chat {error.new_chat_id}")
    if isinstance(error, InvalidToken):
        return Refused(f"{where}: the bot token was rejected (401/404)")
    if isinstance(error, BadRequest | Forbidden | Conflict):
        return Refused(f"{where}: {one_line(error.message, secret)}")
    cause = httpx_cause(error)
    if cause is not None:
        kind = transport_error_class(cause)
        return kind(f"{where}: {describe_transport(cause)}")
    if isinstance(error, TimedOut):
        return MaybeSent(f"{where}: no answer in time")
    if isinstance(error, NetworkError):
        return MaybeSent(f"{where}: server error: {one_line(error.message, secret)}")
    return MaybeSent(f"{where}: unreadable answer: {one_line(error.message, secret)}")
