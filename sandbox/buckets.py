"""The token buckets the Telegram sandbox enforces, defined exactly so a publisher can pace to them.

Definition. A bucket has a rate ``r`` (tokens a second), a burst ``b`` and a jitter allowance
``j`` (seconds). Its capacity is ``C = b + r * j`` tokens and it starts full. Evaluated at time
``t`` (``time.monotonic()`` seconds), its level is ``L(t) = min(C, L(t0) + r * (t - t0))``, ``t0``
being the previous evaluation. A message is admitted iff *every* bucket that applies to it holds
``L(t) >= 1``; an admitted message takes one token from each of them, a refused one takes
nothing. A refused message learns ``wait = max over the buckets of (1 - L(t)) / r``; the Bot API
answers ``retry_after = max(1, ceil(wait))`` because Telegram's ``retry_after`` is whole seconds.

Why ``j``: a sender that spaces its sends with a bucket of the same rate and a burst ``b' <= b``
never exceeds the bucket at the moment it sends, but network and scheduling delays move the
arrivals by a few milliseconds. With ``j`` at least the spread of those delays, such a sender is
never refused; ``j = 0`` is the textbook bucket.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

from pydantic import BaseModel, ConfigDict, Field

from agentfleet.content.model import RateLimit

EPSILON = 1e-9


class TokenBucket:
    """One bucket of the definition above (not thread-safe: callers hold their own lock)."""

    def __init__(self, limit: RateLimit, jitter_s: float, now: float) -> None:
        self.rate = limit.rate_per_s
        self.capacity = limit.burst + limit.rate_per_s * jitter_s
        self.level = self.capacity
        self.updated = now

    def refill(self, now: float) -> float:
        """Bring the level to ``now`` and return it."""
        if now > self.updated:
            self.level = min(self.capacity, self.level + self.rate * (now - self.updated))
            self.updated = now
        return self.level

    def wait_s(self, now: float) -> float:
        """Seconds until one token is there (0 when one is there now)."""
        level = self.refill(now)
        return 0.0 if level >= 1 - EPSILON else (1 - level) / self.rate

    def take(self) -> None:
        self.level -= 1


def admit(buckets: list[TokenBucket], now: float) -> float:
    """Take one token from every bucket if all have one and return 0; else take nothing and
    return the seconds until all would have one."""
    wait = max(bucket.wait_s(now) for bucket in buckets)
    if wait == 0:
        for bucket in buckets:
            bucket.take()
    return wait


def retry_after_seconds(wait_s: float) -> int:
    """The whole seconds the Bot API tells a refused sender to wait (at least 1)."""
    return max(1, math.ceil(wait_s - EPSILON))


class TelegramLimits(BaseModel):
    """Telegram's published limits, as the sandbox enforces them on ``sendMessage``.

    ``overall``: 30 messages a second per bot token (burst 30). ``private_chat``: 1 a second per
    chat with a positive id (burst 1). ``group_chat``: 20 a minute per group (negative id) or
    channel (``@username``), burst 3: a short cluster is fine, the minute's total is not
    exceeded over time. Tests pass faster limits; :func:`agentfleet.content.model.default_limit`
    (burst 1) always conforms.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    overall: RateLimit = RateLimit(rate_per_s=30.0, burst=30)
    private_chat: RateLimit = RateLimit(rate_per_s=1.0, burst=1)
    group_chat: RateLimit = RateLimit(rate_per_s=20 / 60, burst=3)
    jitter_s: float = Field(default=0.1, ge=0, le=10)
    """The ``j`` of the definition, for every bucket."""


def is_group_chat(chat_id: str) -> bool:
    """Groups and channels: a negative id or an ``@username`` (as in ``default_limit``)."""
    return chat_id.startswith(("-", "@"))


class TelegramRateLimiter:
    """The buckets of one sandbox: one ``overall`` per token, one per token and chat."""

    def __init__(self, limits: TelegramLimits, clock: Callable[[], float] = time.monotonic) -> None:
        self.limits = limits
        self.clock = clock
        self._overall: dict[str, TokenBucket] = {}
        self._chats: dict[tuple[str, str], TokenBucket] = {}

    def admit(self, token: str, chat_id: str) -> float:
        """0 when the message to ``chat_id`` is admitted (tokens taken), else the wait in s."""
        now = self.clock()
        jitter = self.limits.jitter_s
        overall = self._overall.get(token)
        if overall is None:
            overall = self._overall[token] = TokenBucket(self.limits.overall, jitter, now)
        chat = self._chats.get((token, chat_id))
        if chat is None:
            limit = self.limits.group_chat if is_group_chat(chat_id) else self.limits.private_chat
            chat = self._chats[(token, chat_id)] = TokenBucket(limit, jitter, now)
        return admit([overall, chat], now)

    def reset(self) -> None:
        self._overall.clear()
        self._chats.clear()
