"""Bot skills: the standard interface (forecast, tune, status, performance, share_pattern,
receive_intelligence) answered by built-in kinds in this worker, or by remote bots over A2A.

A skill that cannot answer is a result with ``ok=False`` and the reason, never an activity
failure: a fleet command reports which bot failed and why, and one bad bot never fails the
batch. Only cancellation propagates.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx
from pydantic_core import to_json
from temporalio import activity

from agentfleet import taskqueues
from agentfleet.bots import command_store
from agentfleet.bots.command_batches import AnswerBatch
from agentfleet.bots.commands import (
    CALLABLE_STATUSES,
    AnswerRow,
    AnswerTally,
    BotAnswer,
    called_row,
    skipped_row,
    tally_answers,
    unknown_row,
)
from agentfleet.bots.kinds import agent, publisher
from agentfleet.bots.kinds.common import SkillFailed
from agentfleet.bots.kinds.forecaster import Forecaster
from agentfleet.bots.kinds.remote import RemoteBots
from agentfleet.bots.model import (
    BotKind,
    BotStatus,
    Skill,
    SkillBatch,
    SkillBatchResult,
    SkillCall,
    SkillResult,
)
from agentfleet.chaos import chaos_point
from agentfleet.netguard import UrlRule, outbound_client
from agentfleet.redaction import redact
from agentfleet.settings import Settings

log = logging.getLogger("agentfleet.skills")

ANSWERING = (BotStatus.ACTIVE, BotStatus.DEGRADED)
"""Bots in these states answer every skill; the others answer ``status`` only."""
YIELD_EVERY = 50
"""Calls a batch makes between two turns it gives the event loop (heartbeats, other work)."""
KINDS = frozenset(kind.value for kind in BotKind)
REMOTE = BotKind.REMOTE.value
IN_PROCESS_CALLERS = 8
"""Callers a batch runs when every bot it calls answers in this worker (no remote bot): their
answers are computed here, not waited for, so more callers would only cost a task each."""
CALLED = frozenset(status.value for status in CALLABLE_STATUSES)
SKIPPED = frozenset(status.value for status in BotStatus) - CALLED


class SkillActivities:
    """Skill activities bound to one database (series) and one HTTP client (remote bots): by
    default the outbound guard's, so a remote bot is called only where the fleet's
    :class:`UrlRule` allows (``http`` replaces it in tests)."""

    task_queue = taskqueues.LLM

    def __init__(self, settings: Settings, http: httpx.AsyncClient | None = None) -> None:
        urls = UrlRule.of(settings)
        self._http = http or outbound_client(
            urls,
            limits=httpx.Limits(max_connections=200, max_keepalive_connections=50),
            headers={"user-agent": "agentfleet-skills"},
        )
        self._url = settings.effective_database_url
        self._forecaster = Forecaster(self._url)
        self._remote = RemoteBots(urls, self._http)

    async def close(self) -> None:
        await self._http.aclose()

    @activity.defn(name="run_skill")
    async def run_skill(self, call: SkillCall) -> SkillResult:
        """One skill of one bot; bounded by the activity's timeout (remote: the bot's)."""
        result = await self._run(call, None)
        chaos_point("after_skill", call.bot.name)
        return result

    @activity.defn(name="run_skill_batch")
    async def run_skill_batch(self, batch: SkillBatch) -> SkillBatchResult:
        """Every call concurrently, each within ``per_call_timeout_s``; results in call order.

        Heartbeats (calls done so far) while it runs, so big batches can have a heartbeat
        timeout.
        """
        done = 0

        async def one(call: SkillCall) -> SkillResult:
            nonlocal done
            result = await self._run(call, batch.per_call_timeout_s)
            done += 1
            return result

        async with self._heartbeats(lambda: done, len(batch.calls)):
            results = await asyncio.gather(*(one(call) for call in batch.calls))
        return SkillBatchResult(results=list(results))

    @contextlib.asynccontextmanager
    async def _heartbeats(self, done: Callable[[], int], total: int) -> AsyncIterator[None]:
        """Heartbeat (calls done so far, of ``total``) while the block runs: at least every
        second, and three times per heartbeat timeout."""
        info = activity.info()
        every = 1.0
        if info.heartbeat_timeout:
            every = min(every, info.heartbeat_timeout.total_seconds() / 3)

        async def beat() -> None:
            while True:
                await asyncio.sleep(every)
                activity.heartbeat(done(), total)

        beating = asyncio.create_task(beat())
        try:
            yield
        finally:
            beating.cancel()

    @activity.defn(name="answer_batch")
    async def answer_batch(self, batch: AnswerBatch) -> AnswerTally:
        """One batch of a large fleet command: reads its bots, calls those that take commands
        (at most ``concurrency`` at once, each within ``per_call_timeout_s``), stores every
        answer as one ``command_answers`` row and returns their tally only.

        A retried batch finds its row and calls no bot again: the answers are stored, and
        counted, once. Heartbeats from start to end (reading the bots and writing the answers
        wait for the database, behind every other batch, as long as calling them does).
        """
        info = activity.info()
        command_id, index = batch.command_id, batch.targets.index
        run_id = info.workflow_run_id or ""
        done = [0]
        async with self._heartbeats(lambda: done[0], batch.targets.bots):
            stored: list[BotAnswer] | None = None
            if info.attempt > 1:
                stored = await asyncio.to_thread(
                    command_store.read_page, self._url, command_id, run_id, index
                )
            if stored is not None:
                return tally_answers(batch.skill, stored, batch.summary, batch.keep)
            targets = await asyncio.to_thread(
                command_store.batch_targets, self._url, batch.targets, batch.kinds
            )
            page, tally = await self._answer(batch, targets, done)
            written = await asyncio.to_thread(
                command_store.write_page, self._url, command_id, run_id, index, page, len(targets)
            )
            chaos_point("after_answers_stored", command_id)
            if not written:  # an earlier attempt, still running, stored first: its answers count
                stored = await asyncio.to_thread(
                    command_store.read_page, self._url, command_id, run_id, index
                )
                if stored is not None:
                    return tally_answers(batch.skill, stored, batch.summary, batch.keep)
            return tally

    async def _answer(
        self, batch: AnswerBatch, targets: list[tuple[str, Any | None]], done: list[int]
    ) -> tuple[bytes, AnswerTally]:
        """Every target's answer, in order, as one JSON array, and their tally: skipped and
        unknown ones at once, the others called.

        Each answer is serialized as soon as it is known and only its numbers are kept, so the
        answers of a large command do not outlive their batch as objects (the garbage collector
        would scan them all)."""
        skill, options = batch.skill, batch.summary
        parts: list[bytes] = [b""] * len(targets)
        tally = AnswerTally()
        issues: list[tuple[int, AnswerRow]] = []

        def answered(position: int, row: AnswerRow) -> None:
            parts[position] = to_json(row)
            if row["ok"]:
                tally.add(skill, row, options)
            else:
                issues.append((position, row))

        calls: list[tuple[int, Any]] = []
        for position, (name, found) in enumerate(targets):
            if found is None or found.kind not in KINDS:  # no bot, or a kind of a newer version
                answered(position, unknown_row(name))
            elif found.status in CALLED:
                calls.append((position, found))
            elif found.status in SKIPPED:
                answered(position, skipped_row(name, found.kind, found.status, found.reason))
            else:  # a status a newer version wrote
                answered(position, unknown_row(name))
        pending = iter(calls)

        async def caller() -> None:
            for position, found in pending:
                # Built here, not ahead: objects that outlive the call cost the collector.
                bot = command_store.bot_of(found)
                if bot is None:  # parameters that are not an object: not a bot this version knows
                    answered(position, unknown_row(found.name))
                    continue
                call = SkillCall(bot=bot, skill=skill, args=batch.args)
                ok, data, error, elapsed_ms = await self._call(call, batch.per_call_timeout_s)
                answered(
                    position,
                    called_row(found.name, found.kind, found.status, ok, data, error, elapsed_ms),
                )
                done[0] += 1
                if done[0] % YIELD_EVERY == 0:
                    await asyncio.sleep(0)

        callers = min(batch.concurrency, len(calls))
        if not any(found.kind == REMOTE for _, found in calls):
            callers = min(callers, IN_PROCESS_CALLERS)
        await asyncio.gather(*(caller() for _ in range(callers)))
        for _, row in sorted(issues, key=lambda issue: issue[0]):
            tally.add(skill, row, options, batch.keep)
        return b"[" + b",".join(parts) + b"]", tally

    async def _run(self, call: SkillCall, limit_s: float | None) -> SkillResult:
        ok, data, error, elapsed_ms = await self._call(call, limit_s)
        return SkillResult(
            bot=call.bot.name,
            skill=call.skill,
            ok=ok,
            data=data,
            error=error,
            elapsed_ms=elapsed_ms,
        )

    async def _call(
        self, call: SkillCall, limit_s: float | None
    ) -> tuple[bool, dict[str, Any], str | None, float]:
        """One call's outcome: ok, its data, the error (None when ok) and the milliseconds it
        took."""
        started = time.perf_counter()
        ok, data, error = False, {}, None
        try:
            async with asyncio.timeout(limit_s):
                data = await self._dispatch(call)
            ok = True
        except SkillFailed as exc:
            # The error reaches the buyer (a 502's body), the history and the command center.
            error = redact(str(exc))
        except TimeoutError:
            error = "timed out" if limit_s is None else f"no answer within {limit_s:g} s"
        except Exception as exc:  # a defect in a skill must not fail the other bots
            log.exception("skill %s of bot %s failed", call.skill.value, call.bot.name)
            error = redact(f"internal error: {type(exc).__name__}: {exc}")
        return ok, data, error, round((time.perf_counter() - started) * 1000, 3)

    async def _dispatch(self, call: SkillCall) -> dict[str, Any]:
        bot = call.bot
        if call.skill is not Skill.STATUS and bot.status not in ANSWERING:
            raise SkillFailed(f"bot {bot.name} is {bot.status.value}")
        handlers: dict[BotKind, Callable[[SkillCall], Awaitable[dict[str, Any]]]] = {
            BotKind.FORECASTER: self._forecaster.answer,
            BotKind.PUBLISHER: publisher.answer,
            BotKind.REMOTE: self._remote.answer,
            BotKind.AGENT: agent.answer,
        }
        return await handlers[bot.kind](call)
