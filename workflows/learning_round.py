"""LearningRoundWorkflow: one federated round (``learning-{task}-{round}``).

select participants (active bots of the task's kind; paused ones skipped and recorded) -> every
participant trains from the round's start, the task's latest candidate or its champion
(``RoundOrder.train_from``), drift-corrected by control variates (``train_model`` on
``fleet-llm``, a heartbeat, a per-participant timeout) -> once all have answered, or the
timeout passed with enough of them, the late and the failed are dropped and recorded ->
``aggregate_updates`` screens (non-finite, far-off norms, a score far below the start's) and
aggregates -> ``evaluate_candidate`` on the held-out split and the participants' validation
data -> promoted if it beats the champion by the margin, else rolled back (the champion stays,
the candidate is recorded as rejected; the next round still starts from it unless
``train_from`` is the champion) -> ``record_round`` -> the participants' entity workflows are
told the champion they serve (``note`` signals sent by ``record_round``, patch
``learning-told-by-record``; before it, one signal command per participant) -> a rolled-back
round is raised as an alert (``raise_alerts``, patch ``alerts``; info: the champion stays).

All numbers are computed in activities; the workflow moves refs and decides.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any, TypeVar

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError

from workflows import calls, patches

with workflow.unsafe.imports_passed_through():
    from activities.learning import LearningActivities
    from agentfleet import search_attributes
    from agentfleet.bots.model import BotEvent, bot_workflow_id
    from agentfleet.learning.rounds import (
        Aggregated,
        AggregateOrder,
        EvaluateOrder,
        Evaluation,
        ModelRef,
        Recorded,
        RoundOrder,
        RoundRecord,
        RoundReport,
        RoundStatus,
        Selection,
        TrainOrder,
        TrainOutcome,
    )
    from agentfleet.learning.strategies import Exclusion
    from agentfleet.learning.tasks.builtin import task_named
    from agentfleet.learning.tasks.interface import improves
    from agentfleet.operations.alerts import AlertKind, Severity

from workflows.alerting import new_alert, raise_alerts

T = TypeVar("T")
STEP = timedelta(seconds=60)
RETRY = RetryPolicy(maximum_interval=timedelta(seconds=10), maximum_attempts=10)
STEP_OPTIONS: dict[str, Any] = {"start_to_close_timeout": STEP, "retry_policy": RETRY}
TRAIN_RETRY = RetryPolicy(maximum_attempts=2)
"""A participant that fails twice is dropped from the round (it never stalls it)."""


@workflow.defn(name="LearningRoundWorkflow")
class LearningRoundWorkflow:
    def __init__(self) -> None:
        self.report: RoundReport | None = None

    @workflow.query
    def status(self) -> RoundReport | None:
        return self.report

    @workflow.run
    async def run(self, order: RoundOrder) -> RoundReport:
        round_id = workflow.info().workflow_id
        self.report = RoundReport(
            task=order.task, round=order.round, round_id=round_id, status=RoundStatus.RUNNING
        )
        workflow.upsert_search_attributes([search_attributes.LEARNING_TASK.value_set(order.task)])
        selection: Selection = await calls.run(
            LearningActivities.select_participants, order, **STEP_OPTIONS
        )
        report = self.report
        report.participants = list(selection.participants)
        report.dropped = list(selection.skipped)
        start = selection.start or selection.champion
        record = RoundRecord(
            task=order.task,
            round=order.round,
            round_id=round_id,
            strategy=order.strategy,
            status=RoundStatus.FAILED,
            participants=list(selection.participants),
            dropped=list(selection.skipped),
            parent=start.version_id,
            train_from=order.train_from,
        )
        if len(selection.participants) < order.min_participants:
            reason = (
                f"{len(selection.participants)} eligible participants, "
                f"{order.min_participants} needed"
            )
            return await self._finish(record, reason)
        updates = await self._train_all(order, selection, start, round_id)
        record.dropped = list(report.dropped)
        if len(updates) < order.min_participants:
            reason = f"{len(updates)} participants trained, {order.min_participants} needed"
            return await self._finish(record, reason)
        aggregated: Aggregated = await calls.run(
            LearningActivities.aggregate_updates,
            AggregateOrder(
                task=order.task,
                round_id=round_id,
                strategy=order.strategy,
                start=start.artifact,
                updates=updates,
                screening=order.screening,
                drift_correction=order.drift_correction,
                population=selection.population,
            ),
            **STEP_OPTIONS,
        )
        report.excluded = record.excluded = list(aggregated.excluded)
        record.controls = dict(aggregated.controls)
        if aggregated.candidate is None:
            return await self._finish(record, "screening excluded every update")
        evaluation: Evaluation = await calls.run(
            LearningActivities.evaluate_candidate,
            EvaluateOrder(
                task=order.task,
                round_id=round_id,
                candidate=aggregated.candidate,
                champion=selection.champion.artifact,
                participants=aggregated.kept,
                params=selection.params,
                seed=order.seed,
            ),
            **STEP_OPTIONS,
        )
        report.evaluation = evaluation
        primary = evaluation.primary
        promoted = improves(
            evaluation.candidate[primary],
            evaluation.champion[primary],
            higher_is_better=evaluation.higher_is_better,
            margin=order.margin,
        )
        record.status = RoundStatus.PROMOTED if promoted else RoundStatus.ROLLED_BACK
        record.candidate = aggregated.candidate
        record.metrics = dict(evaluation.candidate) | {
            f"val_{k}": v for k, v in evaluation.validation.items()
        }
        if not promoted:
            record.reason = (
                f"{primary} {evaluation.candidate[primary]:.4f} does not beat the champion's "
                f"{evaluation.champion[primary]:.4f} by {order.margin:g}"
            )
        report = await self._finish(record, record.reason)
        if not promoted and workflow.patched(patches.ALERTS.id):
            text = f"round {order.round} rolled back: {record.reason}"
            await raise_alerts(
                [new_alert(AlertKind.LEARNING_ROLLBACK, order.task, text, Severity.INFO)]
            )
        return report

    async def _train_all(
        self, order: RoundOrder, selection: Selection, start: ModelRef, round_id: str
    ) -> list[TrainOutcome]:
        """Every participant at once; after the per-participant timeout, those still training
        are dropped (cancelled) as long as enough have answered."""
        assert self.report is not None  # noqa: S101
        task = task_named(order.task)
        config = order.train or task.default_config
        timeout = timedelta(seconds=order.participant_timeout_s)
        pending = {
            name: asyncio.ensure_future(
                calls.run(
                    LearningActivities.train_model,
                    TrainOrder(
                        task=order.task,
                        round_id=round_id,
                        participant=name,
                        participants=selection.participants,
                        params=selection.params,
                        start=start.artifact,
                        config=config,
                        seed=order.seed,
                        drift_correction=order.drift_correction,
                        control=start.controls.get(name) if order.drift_correction else None,
                    ),
                    start_to_close_timeout=timeout,
                    heartbeat_timeout=min(timeout, timedelta(seconds=30)),
                    retry_policy=TRAIN_RETRY,
                )
            )
            for name in selection.participants
        }
        deadline = workflow.now() + timeout

        def settled() -> bool:
            done = [t for t in pending.values() if t.done()]
            if len(done) == len(pending):
                return True
            ok = sum(1 for t in done if t.exception() is None)
            return workflow.now() >= deadline and ok >= order.min_participants

        while not settled():
            remaining = deadline - workflow.now()
            try:
                await workflow.wait_condition(
                    settled,
                    timeout=remaining if remaining > timedelta(0) else None,
                    timeout_summary="participants: training",
                )
            except TimeoutError:
                continue
        late = [future for future in pending.values() if not future.done()]
        for future in late:
            future.cancel()
        if late:  # their cancellation is acknowledged before the round moves on
            await asyncio.gather(*late, return_exceptions=True)
        updates: list[TrainOutcome] = []
        for name, future in pending.items():
            if future in late:
                self.report.dropped.append(
                    Exclusion(participant=name, reason=f"late: still training after {timeout}")
                )
                continue
            error = future.exception()
            if error is not None:
                cause = error.cause if isinstance(error, ActivityError) else error
                self.report.dropped.append(
                    Exclusion(participant=name, reason=f"failed: {cause}".splitlines()[0][:200])
                )
                continue
            updates.append(future.result())
        return updates

    async def _finish(self, record: RoundRecord, reason: str) -> RoundReport:
        assert self.report is not None  # noqa: S101
        record.reason = reason
        record.tell = workflow.patched(patches.LEARNING_TOLD_BY_RECORD.id)
        recorded: Recorded = await calls.run(
            LearningActivities.record_round, record, **STEP_OPTIONS
        )
        report = self.report
        report.status = record.status
        report.reason = reason
        report.champion = recorded.champion
        report.candidate_version = recorded.candidate
        if not record.tell:
            await asyncio.gather(
                *(self._tell(name, recorded.champion) for name in record.participants)
            )
        return report

    async def _tell(self, name: str, version: str) -> None:
        """The bot's entity records the model it serves (a bot without one is skipped)."""
        handle = workflow.get_external_workflow_handle(bot_workflow_id(name))
        try:
            await handle.signal("note", BotEvent(at=workflow.now(), event="model", detail=version))
        except ApplicationError:
            workflow.logger.info("bot %s has no entity to tell its model", name)
