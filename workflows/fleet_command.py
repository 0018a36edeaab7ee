"""FleetCommandWorkflow: one skill to many bots, one aggregated answer, on time.

Id ``command-{command_id}`` (starting a command id twice attaches to the first run). The sequence:
resolve the targets (``resolve_targets`` on ``fleet-io``) -> answer at once for bots that take no
commands and for unknown names -> send the callable bots in batches of ``concurrency`` calls to
``run_skill_batch`` (``fleet-llm``), up to ``parallel_batches`` at once -> summarize. A batch costs
one activity, not one per bot. Each call is bounded by ``per_bot_timeout_s`` inside the batch; a
batch that fails as a whole marks its bots failed with the reason and never fails the command.
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError, FailureError
from temporalio.exceptions import TimeoutError as ActivityTimeoutError

from workflows import calls

with workflow.unsafe.imports_passed_through():
    from activities.fleet import FleetActivities
    from activities.skills import SkillActivities
    from agentfleet.bots.commands import (
        CALLABLE_STATUSES,
        UNKNOWN_STATUS,
        AnswerOutcome,
        BotAnswer,
        BotIssue,
        CommandPhase,
        CommandProgress,
        FleetCommand,
        FleetCommandResult,
        ResolvedTargets,
        ResolveTargets,
        summarize,
    )
    from agentfleet.bots.model import BotRef, SkillBatch, SkillBatchResult, SkillCall

BATCH_MARGIN = timedelta(seconds=2)
"""How much longer than one call a batch activity may take (scheduling, payloads)."""
RESOLVE_RETRY = RetryPolicy(
    initial_interval=timedelta(milliseconds=200),
    maximum_interval=timedelta(seconds=2),
    non_retryable_error_types=["InvalidTargetQuery", "NoTemporalClient"],
)
BATCH_RETRY = RetryPolicy(initial_interval=timedelta(milliseconds=100), maximum_attempts=2)


@workflow.defn(name="FleetCommandWorkflow")
class FleetCommandWorkflow:
    @workflow.init
    def __init__(self, command: FleetCommand) -> None:
        self.command = command
        self.phase = CommandPhase.RESOLVING
        self.total = 0
        self.answers: dict[str, BotAnswer] = {}
        self.in_flight = 0

    @workflow.run
    async def run(self, command: FleetCommand) -> FleetCommandResult:
        started = workflow.now()
        resolved = await self._resolve()
        self.total = len(resolved.bots) + len(resolved.unknown)
        self.phase = CommandPhase.CALLING
        callable_bots: list[BotRef] = []
        for bot in resolved.bots:
            if bot.status in CALLABLE_STATUSES:
                callable_bots.append(bot)
            else:
                reason = resolved.reasons.get(bot.name)
                self._answer(
                    BotAnswer(
                        name=bot.name,
                        kind=bot.kind,
                        status=bot.status.value,
                        outcome=AnswerOutcome.SKIPPED,
                        data={"status": bot.status.value},
                        error=f"bot is {bot.status.value}" + (f": {reason}" if reason else ""),
                    )
                )
        for name in resolved.unknown:
            self._answer(
                BotAnswer(
                    name=name,
                    status=UNKNOWN_STATUS,
                    outcome=AnswerOutcome.UNKNOWN,
                    error="no such bot",
                )
            )
        size = command.concurrency
        batches = [callable_bots[i : i + size] for i in range(0, len(callable_bots), size)]
        await asyncio.gather(*(self._send(batch) for batch in batches))
        self.phase = CommandPhase.DONE
        return self._result(resolved, started)

    async def _resolve(self) -> ResolvedTargets:
        try:
            resolved: ResolvedTargets = await calls.run(
                FleetActivities.resolve_targets,
                ResolveTargets(targets=self.command.targets),
                start_to_close_timeout=timedelta(seconds=30),
                schedule_to_close_timeout=timedelta(minutes=1),
                retry_policy=RESOLVE_RETRY,
            )
        except ActivityError as err:
            raise ApplicationError(
                f"could not resolve the targets: {_reason(err)}",
                type="TargetsUnresolved",
                non_retryable=True,
            ) from err
        return resolved

    async def _send(self, batch: list[BotRef]) -> None:
        """One ``run_skill_batch`` activity for ``batch``; every bot in it gets an answer."""
        limit = self.command.parallel_batches
        await workflow.wait_condition(lambda: self.in_flight < limit)
        self.in_flight += 1
        sent = workflow.now()
        per_call = timedelta(seconds=self.command.per_bot_timeout_s)
        try:
            outcome: SkillBatchResult = await calls.run(
                SkillActivities.run_skill_batch,
                SkillBatch(
                    calls=[
                        SkillCall(bot=bot, skill=self.command.skill, args=self.command.args)
                        for bot in batch
                    ],
                    per_call_timeout_s=self.command.per_bot_timeout_s,
                ),
                start_to_close_timeout=per_call + BATCH_MARGIN,
                schedule_to_close_timeout=2 * (per_call + BATCH_MARGIN),
                retry_policy=BATCH_RETRY,
            )
        except ActivityError as err:
            reason = f"batch failed: {_reason(err)}"
            elapsed_ms = (workflow.now() - sent).total_seconds() * 1000
            for bot in batch:
                self._answer(_failed(bot, reason, elapsed_ms))
            return
        finally:
            self.in_flight -= 1
        results = {result.bot: result for result in outcome.results}
        for bot in batch:
            result = results.get(bot.name)
            if result is None:
                self._answer(_failed(bot, "the batch returned no answer for this bot", 0.0))
                continue
            self._answer(
                BotAnswer(
                    name=bot.name,
                    kind=bot.kind,
                    status=bot.status.value,
                    outcome=AnswerOutcome.OK if result.ok else AnswerOutcome.FAILED,
                    ok=result.ok,
                    data=result.data,
                    error=None if result.ok else (result.error or "failed without a reason"),
                    elapsed_ms=result.elapsed_ms,
                )
            )

    def _answer(self, answer: BotAnswer) -> None:
        self.answers[answer.name] = answer

    def _result(self, resolved: ResolvedTargets, started: datetime) -> FleetCommandResult:
        order = [bot.name for bot in resolved.bots] + resolved.unknown
        answers = [self.answers[name] for name in dict.fromkeys(order)]
        finished = workflow.now()
        return FleetCommandResult(
            command_id=self.command.command_id,
            skill=self.command.skill,
            targets=self.command.targets.describe(),
            answers=answers,
            summary=summarize(self.command.skill, answers, self.command.summary),
            failed=[
                BotIssue(name=a.name, status=a.status, reason=a.error or "")
                for a in answers
                if a.outcome is AnswerOutcome.FAILED
            ],
            skipped=[
                BotIssue(name=a.name, status=a.status, reason=a.error or "")
                for a in answers
                if a.outcome is AnswerOutcome.SKIPPED
            ],
            unknown=[a.name for a in answers if a.outcome is AnswerOutcome.UNKNOWN],
            started_at=started,
            finished_at=finished,
            elapsed_s=(finished - started).total_seconds(),
        )

    @workflow.query
    def progress(self) -> CommandProgress:
        answers = list(self.answers.values())
        by_status: dict[str, int] = {}
        counts = dict.fromkeys(AnswerOutcome, 0)
        for answer in answers:
            by_status[answer.status] = by_status.get(answer.status, 0) + 1
            counts[answer.outcome] += 1
        return CommandProgress(
            command_id=self.command.command_id,
            phase=self.phase,
            total=self.total,
            answered=len(answers),
            ok=counts[AnswerOutcome.OK],
            failed=counts[AnswerOutcome.FAILED],
            skipped=counts[AnswerOutcome.SKIPPED],
            unknown=counts[AnswerOutcome.UNKNOWN],
            pending=self.total - len(answers),
            by_status=dict(sorted(by_status.items())),
            started_at=workflow.info().start_time,
        )


def _failed(bot: BotRef, reason: str, elapsed_ms: float) -> BotAnswer:
    return BotAnswer(
        name=bot.name,
        kind=bot.kind,
        status=bot.status.value,
        outcome=AnswerOutcome.FAILED,
        error=reason,
        elapsed_ms=elapsed_ms,
    )


def _reason(err: ActivityError) -> str:
    """One line for an activity that failed as a whole."""
    cause = err.cause
    if isinstance(cause, ActivityTimeoutError):
        kind = cause.type.name.lower().replace("_", "-") if cause.type else "timeout"
        return f"activity timed out ({kind})"
    if isinstance(cause, FailureError) and cause.message:
        return cause.message.splitlines()[0]
    if cause is not None and str(cause):
        return str(cause).splitlines()[0]
    return str(err) or type(err).__name__
