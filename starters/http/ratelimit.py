"""Moving-window rate limits of the HTTP app (the facilitator's per key and per payer, agent runs
per A2A caller), counted in ``FLEET_RATE_LIMIT_STORAGE`` (memory, or a store such as Redis
shared by several gateways)."""

from __future__ import annotations

import math
import time

from limits import RateLimitItem, parse_many
from limits.aio.strategies import MovingWindowRateLimiter
from limits.storage import storage_from_string

from agentfleet.settings import Settings


class RateLimits:
    def __init__(self, settings: Settings) -> None:
        uri = settings.rate_limit_storage
        self._limiter = MovingWindowRateLimiter(
            storage_from_string(uri if uri.startswith("async+") else f"async+{uri}")
        )

    @staticmethod
    def parse(rates: str) -> list[RateLimitItem]:
        return parse_many(rates)

    async def exceeded(self, items: list[RateLimitItem], identity: str) -> tuple[str, int] | None:
        """Count one hit of ``identity`` against each of ``items``; None while every one
        allows it, else the rate it passed and the seconds until it allows again."""
        for item in items:
            if not await self._limiter.hit(item, identity):
                stats = await self._limiter.get_window_stats(item, identity)
                return str(item), max(1, math.ceil(stats.reset_time - time.time()))
        return None
