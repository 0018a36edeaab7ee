"""FleetCommandWorkflow: one skill to many bots, one aggregated answer, on time.

Id ``command-{command_id}`` (starting a command id twice attaches to the first run). The sequence:
plan the targets (``plan_command`` on ``fleet-io``), then one of two paths:

- **inline** (at most ``FLEET_COMMAND_INLINE_ANSWERS`` targets): answer at once for bots that take
  no commands and for unknown names -> send the callable bots in batches of ``concurrency`` calls
  to ``run_skill_batch`` (``fleet-llm``), up to ``parallel_batches`` at once -> summarize; every
  answer is in the result.
- **stored** (more): send the plan's batches to ``answer_batch`` (``fleet-llm``), up to
  ``parallel_batches`` at once; each reads, calls and stores its bots' answers and returns a
  tally -> merge the tallies. The result holds the summary, counts and where the answers are,
  never a line per bot, so its size does not grow with the fleet.

A batch costs one activity, not one per bot. Each call is bounded by ``per_bot_timeout_s`` inside
the batch; a batch that fails as a whole marks its bots failed with the reason and never fails
the command. Histories from before the plan (patch ``command-answers-stored``) resolve their
targets with ``resolve_targets`` and take the inline path.
"""

from __future__ import annotations

import asyncio
import math
from datetime import datetime, timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError, FailureError
from temporalio.exceptions import TimeoutError as ActivityTimeoutError

from workflows import calls, patches

with workflow.unsafe.imports_passed_through():
    from activities.fleet import FleetActivities
    from activities.skills import SkillActivities
    from agentfleet.bots.command_batches import (
        AnswerBatch,
        CommandPlan,
        PlanCommand,
        TargetBatch,
        calls_at_once,
    )
    from agentfleet.bots.commands import (
        CALLABLE_STATUSES,
        ISSUES_KEPT,
        AnswerOutcome,
        AnswerRow,
        AnswersRef,
        AnswerTally,
        BatchFailure,
        BotAnswer,
        BotIssue,
        CommandPhase,
        CommandProgress,
        FleetCommand,
        FleetCommandResult,
        ResolvedTargets,
        ResolveTargets,
        called_row,
        failed_row,
        skipped_row,
        summarize,
        unknown_row,
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
        self.stored = False
        self.tallies: dict[int, AnswerTally] = {}
        self.failures: list[BatchFailure] = []

    @workflow.run
    async def run(self, command: FleetCommand) -> FleetCommandResult:
        started = workflow.now()
        if workflow.patched(patches.COMMAND_ANSWERS_STORED.id):
            plan = await self._plan()
            if plan.resolved is None:
                return await self._run_stored(plan, started)
            resolved = plan.resolved
        else:
            resolved = await self._resolve()
        self.total = len(resolved.bots) + len(resolved.unknown)
        self.phase = CommandPhase.CALLING
        callable_bots: list[BotRef] = []
        for bot in resolved.bots:
            if bot.status in CALLABLE_STATUSES:
                callable_bots.append(bot)
            else:
                reason = resolved.reasons.get(bot.name)
                self._answer(skipped_row(bot.name, bot.kind.value, bot.status.value, reason))
        for name in resolved.unknown:
            self._answer(unknown_row(name))
        size = command.concurrency
        batches = [callable_bots[i : i + size] for i in range(0, len(callable_bots), size)]
        await asyncio.gather(*(self._send(batch) for batch in batches))
        self.phase = CommandPhase.DONE
        return self._result(resolved, started)

    async def _plan(self) -> CommandPlan:
        request = PlanCommand(
            command_id=self.command.command_id,
            targets=self.command.targets,
            concurrency=self.command.concurrency,
            parallel_batches=self.command.parallel_batches,
        )
        try:
            plan: CommandPlan = await calls.run(
                FleetActivities.plan_command,
                request,
                start_to_close_timeout=timedelta(seconds=30),
                schedule_to_close_timeout=timedelta(minutes=1),
                retry_policy=RESOLVE_RETRY,
            )
        except ActivityError as err:
            raise _unresolved(err) from err
        return plan

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
            raise _unresolved(err) from err
        return resolved

    async def _run_stored(self, plan: CommandPlan, started: datetime) -> FleetCommandResult:
        self.stored = True
        self.total = plan.total
        self.phase = CommandPhase.CALLING
        await asyncio.gather(*(self._answer_batch(batch, plan) for batch in plan.batches))
        self.phase = CommandPhase.DONE
        tally = AnswerTally()
        for batch in plan.batches:
            part = self.tallies.get(batch.index)
            if part is not None:
                tally.merge(part, ISSUES_KEPT)
        stored = tally.answered
        tally.failed += sum(failure.bots for failure in self.failures)
        finished = workflow.now()
        return FleetCommandResult(
            command_id=self.command.command_id,
            skill=self.command.skill,
            targets=self.command.targets.describe(),
            summary=tally.summary(self.command.skill),
            failed=tally.failed_bots,
            skipped=tally.skipped_bots,
            unknown=tally.unknown_bots,
            started_at=started,
            finished_at=finished,
            elapsed_s=(finished - started).total_seconds(),
            total=tally.answered,
            answers_ref=AnswersRef(
                command_id=self.command.command_id,
                run_id=workflow.info().run_id,
                batches=len(self.tallies),
                answers=stored,
            ),
            failed_batches=sorted(self.failures, key=lambda failure: failure.batch),
        )

    async def _answer_batch(self, batch: TargetBatch, plan: CommandPlan) -> None:
        """One ``answer_batch`` activity for ``batch``; its tally, or its failure, is kept."""
        command = self.command
        await workflow.wait_condition(lambda: self.in_flight < command.parallel_batches)
        self.in_flight += 1
        per_call = timedelta(seconds=command.per_bot_timeout_s)
        at_once = calls_at_once(
            batch.bots, len(plan.batches), command.concurrency, command.parallel_batches
        )
        waves = math.ceil(max(batch.bots, 1) / at_once)
        try:
            tally: AnswerTally = await calls.run(
                SkillActivities.answer_batch,
                AnswerBatch(
                    command_id=command.command_id,
                    skill=command.skill,
                    args=command.args,
                    targets=batch,
                    kinds=plan.kinds,
                    per_call_timeout_s=command.per_bot_timeout_s,
                    concurrency=at_once,
                    summary=command.summary,
                    keep=ISSUES_KEPT,
                ),
                start_to_close_timeout=waves * per_call + BATCH_MARGIN,
                # A batch of several waves of calls heartbeats, so a lost worker shows sooner;
                # the retry policy bounds the attempts (each timer costs the server a task).
                heartbeat_timeout=per_call + BATCH_MARGIN if waves > 1 else None,
                retry_policy=BATCH_RETRY,
            )
        except ActivityError as err:
            self.failures.append(
                BatchFailure(
                    batch=batch.index,
                    position=batch.position,
                    bots=batch.bots,
                    first=batch.first,
                    last=batch.last,
                    reason=f"batch failed: {_reason(err)}",
                )
            )
            return
        finally:
            self.in_flight -= 1
        self.tallies[batch.index] = tally

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
                self._answer(
                    failed_row(bot.name, bot.kind.value, bot.status.value, reason, elapsed_ms)
                )
            return
        finally:
            self.in_flight -= 1
        results = {result.bot: result for result in outcome.results}
        for bot in batch:
            result = results.get(bot.name)
            if result is None:
                reason = "the batch returned no answer for this bot"
                self._answer(failed_row(bot.name, bot.kind.value, bot.status.value, reason, 0.0))
                continue
            self._answer(
                called_row(
                    bot.name,
                    bot.kind.value,
                    bot.status.value,
                    result.ok,
                    result.data,
                    result.error,
                    result.elapsed_ms,
                )
            )

    def _answer(self, row: AnswerRow) -> None:
        answer = BotAnswer.model_validate(row)
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
            total=len(answers),
        )

    @workflow.query
    def progress(self) -> CommandProgress:
        counts = dict.fromkeys(AnswerOutcome, 0)
        by_status: dict[str, int] = {}
        if self.stored:
            for tally in self.tallies.values():
                counts[AnswerOutcome.OK] += tally.ok
                counts[AnswerOutcome.FAILED] += tally.failed
                counts[AnswerOutcome.SKIPPED] += tally.skipped
                counts[AnswerOutcome.UNKNOWN] += tally.unknown
                for status, count in tally.by_status.items():
                    by_status[status] = by_status.get(status, 0) + count
            counts[AnswerOutcome.FAILED] += sum(failure.bots for failure in self.failures)
        else:
            for answer in self.answers.values():
                by_status[answer.status] = by_status.get(answer.status, 0) + 1
                counts[answer.outcome] += 1
        answered = sum(counts.values())
        return CommandProgress(
            command_id=self.command.command_id,
            phase=self.phase,
            total=max(self.total, answered),
            answered=answered,
            ok=counts[AnswerOutcome.OK],
            failed=counts[AnswerOutcome.FAILED],
            skipped=counts[AnswerOutcome.SKIPPED],
            unknown=counts[AnswerOutcome.UNKNOWN],
            pending=max(0, self.total - answered),
            by_status=dict(sorted(by_status.items())),
            started_at=workflow.info().start_time,
        )


def _unresolved(err: ActivityError) -> ApplicationError:
    return ApplicationError(
        f"could not resolve the targets: {_reason(err)}",
        type="TargetsUnresolved",
        non_retryable=True,
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
