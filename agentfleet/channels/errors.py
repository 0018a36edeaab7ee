"""What a failed send means for a retry: the four outcomes a publisher must tell apart.

The split follows one question, "could the message have reached the channel?": :class:`NotSent`
(surely not, retry freely), :class:`RateLimited` (not sent, retry after the delay),
:class:`MaybeSent` (perhaps; a blind retry may publish twice) and :class:`Refused` (the channel
said no for good). ``str()`` of each is one readable line that names the channel and the cause and
never holds a token, password or secret URL part.
"""

from __future__ import annotations

import re

import httpx

_SPACE = re.compile(r"\s+")
MESSAGE_LIMIT = 300


def one_line(text: str, *secrets: str | None, limit: int = MESSAGE_LIMIT) -> str:
    """``text`` on one line, each non-empty secret replaced by ``***``, at most ``limit`` chars."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    text = _SPACE.sub(" ", text).strip()
    return text if len(text) <= limit else text[: limit - 3] + "..."


class ChannelError(Exception):
    """A send that did not end in a receipt. ``retry_safe`` says whether sending again can
    publish the message twice (False) or not (True)."""

    retry_safe = False

    def __init__(self, message: str) -> None:
        super().__init__(one_line(message))


class NotSent(ChannelError):
    """The message surely did not reach the channel (refused connection, DNS, connect timeout,
    TLS handshake, a "try later" before the message was handed over): safe to retry."""

    retry_safe = True


class RateLimited(ChannelError):
    """The channel said "too many" and did not take the message; retry after ``retry_after_s``."""

    retry_safe = True

    def __init__(self, message: str, retry_after_s: float) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s

    def __reduce__(self) -> tuple[type[RateLimited], tuple[str, float]]:
        return type(self), (str(self), self.retry_after_s)


class MaybeSent(ChannelError):
    """The request may have reached the channel (timeout after it left, connection dropped
    mid-answer, a 5xx): the message may be published. Check the channel before sending again."""


class Refused(ChannelError):
    """The channel answered no for good (unknown chat, bad token, 4xx, recipient refused) or the
    channel is misconfigured: the same send will fail again."""


class NotConfigured(Refused):
    """A setting the channel needs is missing (a bot token, an SMTP host): nothing was sent."""


_NOT_SENT_TRANSPORT = (
    httpx.ConnectError,
    httpx.ConnectTimeout,
    httpx.PoolTimeout,
    httpx.ProxyError,
)
_BAD_CONFIG_TRANSPORT = (httpx.UnsupportedProtocol, httpx.LocalProtocolError, httpx.InvalidURL)


def transport_error_class(error: BaseException) -> type[ChannelError]:
    """Which outcome an httpx failure means: failures before the request could leave are
    :class:`NotSent`, an unusable URL is :class:`Refused`, anything later is :class:`MaybeSent`."""
    if isinstance(error, _NOT_SENT_TRANSPORT):
        return NotSent
    if isinstance(error, _BAD_CONFIG_TRANSPORT):
        return Refused
    return MaybeSent


def httpx_cause(error: BaseException) -> BaseException | None:
    """The httpx exception behind a library's wrapper (``__cause__`` / ``__context__`` chain)."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        if isinstance(current, httpx.HTTPError | httpx.InvalidURL):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


def describe_transport(error: BaseException) -> str:
    """A short, secret-free description of a transport failure: its kind, never its text (httpx
    messages can repeat the URL, and a Telegram URL holds the bot token)."""
    kind = type(error).__name__
    labels = {
        "ConnectError": "cannot connect",
        "ConnectTimeout": "connect timed out",
        "PoolTimeout": "no free connection",
        "ReadTimeout": "no answer in time (the request was sent)",
        "WriteTimeout": "sending the request timed out",
        "ReadError": "connection broke while waiting for the answer",
        "WriteError": "connection broke while sending",
        "RemoteProtocolError": "connection dropped mid-answer",
        "UnsupportedProtocol": "the URL's scheme is not http or https",
        "InvalidURL": "the URL is invalid",
    }
    return f"{labels.get(kind, 'transport failure')} ({kind})"
