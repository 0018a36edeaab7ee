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
from pathlib import Path

import httpx
from temporalio.client import Client

from agentfleet.settings import Settings
from sandbox.app import Sandbox
from sandbox.buckets import TelegramLimits, TelegramRateLimiter
from starters.telegram import bot as telegram
from starters.telegram.bot import GROUP_CHAT_INTERVAL_S, PRIVATE_CHAT_INTERVAL_S, ReplyPacer

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


async def test_the_center_keeps_to_the_limits_the_sandbox_enforces(
    dev_client: Client, tmp_path: Path
) -> None:
    admin, group, asked = 2004, -100999, 3
    async with Sandbox(home=tmp_path, telegram_limits=TelegramLimits()) as sandbox:
        settings = Settings(
            home=tmp_path,
            telegram_users=f"{admin}:admin:adam",
            **sandbox.settings_overrides(),
        )
        stop = asyncio.Event()
        polling = asyncio.create_task(telegram.serve(settings, dev_client, stop))
        try:
            ready = tmp_path / telegram.READY_FILE
            for _ in range(200):
                if ready.exists() or polling.done():
                    break
                await asyncio.sleep(0.05)
            async with httpx.AsyncClient(base_url=sandbox.url) as http:
                for _ in range(asked):
                    for chat in (admin, group):
                        update = {"chat_id": chat, "from_id": admin, "text": "/help"}
                        pushed = await http.post("/sandbox/telegram/updates", json=update)
                        pushed.raise_for_status()
            for _ in range(600):
                got = [sandbox.store.telegram_messages(str(c)) for c in (admin, group)]
                if all(len(messages) >= asked for messages in got) or polling.done():
                    break
                await asyncio.sleep(0.05)
        finally:
            stop.set()
            await asyncio.wait_for(polling, 30)
        private, grouped = got
        counters = sandbox.store.telegram_counters()
    assert [len(private), len(grouped)] == [asked, asked]
    assert len({m.text for m in private + grouped}) == 1  # the same /help answer, six times
    assert counters["rate_limited"] == 0
    for messages, interval in (
        (private, PRIVATE_CHAT_INTERVAL_S),
        (grouped, GROUP_CHAT_INTERVAL_S),
    ):
        arrivals = [m.received_monotonic for m in messages]
        gaps = [later - earlier for earlier, later in itertools.pairwise(arrivals)]
        assert min(gaps) >= interval - 1e-3, gaps
