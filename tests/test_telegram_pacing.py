"""The command center's reply pacer against Telegram's published limits, on a virtual clock:
every message it lets go is one the sandbox's definition of those limits (``sandbox.buckets``,
with no jitter allowance) admits at that moment, each chat's messages go in the order they were
asked, and the pace is not slower than the limits need. Nothing here waits on the wall clock;
the real Bot API round trip is checked in ``tests/test_telegram_center.py``.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
from collections import defaultdict

from sandbox.buckets import TelegramLimits, TelegramRateLimiter
from starters.telegram.bot import ReplyPacer

TOKEN = "123:pacing"
ALONE = 11
GROUP = -100500
OTHERS = range(2001, 2060)


class VirtualClock:
    """Time that moves only when every task waits: then to the earliest sleeper's wake-up."""

    def __init__(self) -> None:
        self.now = 0.0
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._order = itertools.count()

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        woken = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (self.now + seconds, next(self._order), woken))
        await woken

    async def run(self, *work: asyncio.Task[None]) -> None:
        while not all(task.done() for task in work):
            for _ in range(50):  # every runnable task reaches its next sleep or lock
                await asyncio.sleep(0)
            if self._sleepers:
                wake, _, woken = heapq.heappop(self._sleepers)
                self.now = max(self.now, wake)
                woken.set_result(None)
        await asyncio.gather(*work)


def most_in_any_window(times: list[float], window_s: float) -> int:
    """The most of ``times`` inside one half-open window ``[t, t + window_s)``."""
    ordered = sorted(times)
    return max(
        sum(1 for other in ordered[i:] if other < start + window_s - 1e-9)
        for i, start in enumerate(ordered)
    )


async def test_replies_keep_to_telegrams_limits_per_chat_per_group_and_overall() -> None:
    clock = VirtualClock()
    pacer = ReplyPacer(clock=clock, sleep=clock.sleep)
    telegram = TelegramRateLimiter(TelegramLimits(jitter_s=0), clock=clock)
    refused: list[tuple[int, int, float]] = []
    sent: dict[int, list[tuple[int, float]]] = defaultdict(list)

    async def reply(chat: int, number: int) -> None:
        async with pacer.turn(chat):
            if telegram.admit(TOKEN, str(chat)) > 0:
                refused.append((chat, number, clock.now))
            sent[chat].append((number, clock.now))

    asked = [(ALONE, n) for n in range(10)] + [(GROUP, n) for n in range(25)]
    asked += [(chat, 0) for chat in OTHERS]
    await clock.run(*(asyncio.create_task(reply(chat, n)) for chat, n in asked))

    assert refused == []
    assert {chat: [n for n, _ in got] for chat, got in sent.items()} == {
        ALONE: list(range(10)),
        GROUP: list(range(25)),
        **{chat: [0] for chat in OTHERS},
    }
    times = {chat: [t for _, t in got] for chat, got in sent.items()}
    everything = [t for chat in times.values() for t in chat]
    assert most_in_any_window(times[ALONE], 1.0) == 1
    assert most_in_any_window(times[GROUP], 60.0) == 20
    assert most_in_any_window(everything, 1.0) <= 30
    # Not much slower than the limits need: one a second, one every 3 s, 61 first messages in
    # ~2 s (a chat's next message may also wait for an overall slot: a little more).
    assert times[ALONE][-1] < 9 + 2
    assert times[GROUP][-1] < 24 * 3 + 3
    assert max(times[chat][0] for chat in OTHERS) <= 61 / 30 + 0.1


async def test_a_chat_waiting_out_its_interval_does_not_hold_up_another() -> None:
    clock = VirtualClock()
    pacer = ReplyPacer(clock=clock, sleep=clock.sleep)
    went: list[tuple[int, float]] = []

    async def reply(chat: int, delay_s: float) -> None:
        await clock.sleep(delay_s)
        async with pacer.turn(chat):
            went.append((chat, clock.now))

    work = [reply(GROUP, 0), reply(GROUP, 0), reply(ALONE, 0.5)]
    await clock.run(*(asyncio.create_task(w) for w in work))
    assert went == [(GROUP, 0.0), (ALONE, 0.5), (GROUP, 3.0)]
