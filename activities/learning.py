"""Learning round activities: the numeric work (``fleet-llm``: train, aggregate, evaluate) and
the registry (``fleet-io``: who takes part, what the round decided).

Weights stay in the artifact store; activities take and return ``sha256:`` refs. Training
heartbeats after each epoch so a dead worker is noticed within the heartbeat timeout, and a
retried training writes the same artifact (same seed, same data: same weights, same ref).
"""

from __future__ import annotations

import asyncio
import json
import math
import statistics
import threading
from datetime import UTC, datetime, timedelta

from sqlmodel import select
from temporalio import activity
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError, RPCStatusCode

from activities.queues import runs_on
from agentfleet import db, taskqueues
from agentfleet.bots.health import HealthCheck, ModelHealth, ModelRollback
from agentfleet.bots.model import BotEvent, BotKind, BotRef, BotStatus, bot_workflow_id
from agentfleet.chaos import chaos_point
from agentfleet.learning import drift, patterns, registry
from agentfleet.learning.patterns import PatternTargets, PatternView, ShareOrder, ValidationWave
from agentfleet.learning.rounds import (
    Aggregated,
    AggregateOrder,
    EvaluateOrder,
    Evaluation,
    Recorded,
    RoundOrder,
    RoundRecord,
    Selection,
    TrainOrder,
    TrainOutcome,
    round_workflow_id,
)
from agentfleet.learning.store import ArtifactError, ArtifactStore
from agentfleet.learning.strategies import Exclusion, Update, screen, strategy_named
from agentfleet.learning.tasks.builtin import TASKS, task_named
from agentfleet.learning.tasks.interface import (
    LocalData,
    Weights,
    derive_seed,
    train_participant,
)
from agentfleet.models import AuditEvent, BotRecord, ModelVersion
from agentfleet.settings import Settings

TASK_KIND = BotKind.FORECASTER
"""The bots that take part in the built-in tasks (forecasters hold price series)."""


def refused(message: str, kind: str) -> ApplicationError:
    return ApplicationError(message, type=kind, non_retryable=True)


class LearningActivities:
    task_queue = taskqueues.LLM

    def __init__(self, settings: Settings) -> None:
        self._url = settings.effective_database_url
        self._store = ArtifactStore(settings.effective_models_path)

    @activity.defn(name="select_participants")
    @runs_on(taskqueues.IO)
    async def select_participants(self, order: RoundOrder) -> Selection:
        return await asyncio.to_thread(self._select, order)

    def _select(self, order: RoundOrder) -> Selection:
        try:
            task = task_named(order.task)
        except ValueError as err:
            raise refused(str(err), "UnknownTask") from None
        round_id = round_workflow_id(order.task, order.round)
        registry.mark_running(self._url, order.task, order.round, round_id, order.strategy)
        with db.session_scope(self._url) as session:
            rows = list(
                session.exec(select(BotRecord).where(BotRecord.kind == TASK_KIND.value)).all()
            )
        rows.sort(key=lambda row: row.name)
        skipped = [
            Exclusion(participant=row.name, reason=f"bot is {row.status}")
            for row in rows
            if row.status != BotStatus.ACTIVE.value
        ]
        eligible = [row for row in rows if row.status == BotStatus.ACTIVE.value]
        wanted = max(order.min_participants, math.ceil(order.fraction * len(eligible)))
        if order.max_participants is not None:
            wanted = min(wanted, order.max_participants)
        ranked = sorted(eligible, key=lambda row: derive_seed(order.seed, order.round, row.name))
        chosen = sorted(ranked[:wanted], key=lambda row: row.name)
        for row in ranked[wanted:]:
            skipped.append(Exclusion(participant=row.name, reason="not drawn this round"))

        def initial() -> tuple[str, dict[str, float]]:
            weights = task.init(order.seed)
            return self._store.put(weights), task.evaluate(weights, task.holdout())

        champion = registry.ensure_champion(self._url, order.task, initial)
        start = registry.start_of(self._url, order.task, order.train_from) or champion
        return Selection(
            participants=[row.name for row in chosen],
            skipped=skipped,
            params={row.name: dict(row.params) for row in chosen},
            champion=champion,
            start=start,
            population=len(eligible),
        )

    @activity.defn(name="check_models")
    async def check_models(self, check: HealthCheck) -> ModelHealth:
        """Every task's champion against its parent on the task's fresh data (its held-out
        split: the newest bars for ``forecast``); a champion that does worse by more than
        ``check.model_tolerance`` is rolled back to the parent, with an audit event."""
        return await asyncio.to_thread(self._check_models, check)

    def _check_models(self, check: HealthCheck) -> ModelHealth:
        health = ModelHealth()
        for name in sorted(TASKS):
            task = TASKS[name]
            with db.session_scope(self._url) as session:
                champion = registry.champion(session, name)
                parent = session.get(ModelVersion, champion.parent) if champion else None
            if champion is None or parent is None:
                continue
            health.checked.append(name)
            fresh = task.holdout()
            metric = task.primary_metric
            now = task.evaluate(self._load_model(champion.artifact), fresh)[metric]
            before = task.evaluate(self._load_model(parent.artifact), fresh)[metric]
            margin = check.model_tolerance
            worse = now < before - margin if task.higher_is_better else now > before + margin
            if not worse:
                continue
            reason = f"{metric} {now:.4f} on fresh data, its parent {before:.4f}"
            _, bots = registry.rollback(self._url, name, parent.version_id)
            with db.session_scope(self._url) as session:
                db.record_once(
                    session,
                    AuditEvent(
                        idempotency_key=f"model-degraded:{champion.version_id}",
                        actor="fleet-health",
                        kind="model_degraded",
                        subject=name,
                        detail={
                            "from": champion.version_id,
                            "to": parent.version_id,
                            "reason": reason,
                        },
                    ),
                )
            activity.logger.warning(
                "model %s did worse than %s (%s): rolled back",
                champion.version_id,
                parent.version_id,
                reason,
            )
            health.rolled_back.append(
                ModelRollback(
                    task=name,
                    from_version=champion.version_id,
                    to_version=parent.version_id,
                    reason=reason,
                    bots=bots,
                )
            )
        return health

    @activity.defn(name="next_learning_round")
    @runs_on(taskqueues.IO)
    async def next_learning_round(self, task: str) -> int:
        """The task's next free round number (a scheduled campaign's first round)."""
        return await asyncio.to_thread(registry.next_round, self._url, task)

    @activity.defn(name="train_model")
    async def train_model(self, order: TrainOrder) -> TrainOutcome:
        """One participant's local training from the round's start (drift-corrected when the
        order says so); heartbeats as it starts."""
        chaos_point("mid_train", order.participant)
        activity.heartbeat()
        return await asyncio.to_thread(self._train, order)

    def _train(self, order: TrainOrder) -> TrainOutcome:
        task = task_named(order.task)
        data = _partition(order, order.participants, order.params)
        mine = data[order.participant]
        start = self._load(order.start)
        weights = drift.model_part(start)
        fleet = own = shift = None
        if order.drift_correction:
            fleet = drift.control_part(start)
            own = drift.control_part(self._load(order.control)) if order.control else None
            shift = drift.correction(fleet, own, weights)
        config = order.config.model_copy(
            update={"seed": derive_seed(order.seed, order.round_id, order.participant)}
        )
        result = train_participant(task, weights, mine, config, shift)
        arrays = result.weights
        if order.drift_correction:
            control = drift.participant_control(
                weights,
                result.weights,
                steps=result.steps,
                learning_rate=config.learning_rate,
                fleet=fleet,
                own=own,
            )
            before = own if own is not None else drift.zeros_like(weights)
            change = {k: control[k] - before[k] for k in control}
            arrays = drift.with_control(result.weights, control, change)
        return TrainOutcome(
            participant=order.participant,
            artifact=self._store.put(arrays),
            num_examples=result.num_examples,
            metrics={k: float(v) for k, v in result.metrics.items()},
        )

    @activity.defn(name="aggregate_updates")
    async def aggregate_updates(self, order: AggregateOrder) -> Aggregated:
        return await asyncio.to_thread(self._aggregate, order)

    def _aggregate(self, order: AggregateOrder) -> Aggregated:
        try:
            strategy = strategy_named(order.strategy)
        except ValueError as err:
            raise refused(str(err), "UnknownStrategy") from None
        start_arrays = self._load(order.start)
        start = drift.model_part(start_arrays)
        loaded = {u.participant: self._load(u.artifact) for u in order.updates}
        updates = [
            Update(
                participant=u.participant,
                weights=drift.model_part(loaded[u.participant]),
                num_examples=u.num_examples,
                metrics=dict(u.metrics),
            )
            for u in order.updates
        ]
        task = task_named(order.task)
        holdout = task.holdout()

        def score(weights: Weights) -> float:
            return task.evaluate(weights, holdout)[task.primary_metric]

        kept, excluded = screen(
            updates,
            reference=start,
            champion_score=score(start),
            evaluate=score,
            higher_is_better=task.higher_is_better,
            norm_factor=order.screening.norm_factor,
            score_drop=order.screening.score_drop,
        )
        if not kept:
            return Aggregated(candidate=None, kept=[], excluded=excluded)
        candidate = strategy.aggregate(kept)
        fleet = drift.control_part(start_arrays)
        controls: dict[str, str] = {}
        if order.drift_correction:
            changes = []
            artifacts = {u.participant: u.artifact for u in order.updates}
            for update in kept:
                change = drift.control_part(loaded[update.participant], drift.CHANGE)
                if change is None:  # trained without correction: nothing to average in
                    continue
                changes.append(change)
                controls[update.participant] = artifacts[update.participant]
            fleet = drift.fleet_control(fleet, changes, order.population, start)
        return Aggregated(
            candidate=self._store.put(drift.with_control(candidate, fleet)),
            kept=[u.participant for u in kept],
            excluded=excluded,
            controls=controls,
        )

    @activity.defn(name="evaluate_candidate")
    async def evaluate_candidate(self, order: EvaluateOrder) -> Evaluation:
        return await asyncio.to_thread(self._evaluate, order)

    def _evaluate(self, order: EvaluateOrder) -> Evaluation:
        task = task_named(order.task)
        candidate = self._load_model(order.candidate)
        champion = self._load_model(order.champion)
        holdout = task.holdout()
        validation: dict[str, list[float]] = {}
        if order.participants:
            local = _partition(order, order.participants, order.params)
            for data in local.values():
                if len(data.validation):
                    for key, value in task.evaluate(candidate, data.validation).items():
                        if math.isfinite(value):
                            validation.setdefault(key, []).append(value)
        return Evaluation(
            primary=task.primary_metric,
            higher_is_better=task.higher_is_better,
            candidate=task.evaluate(candidate, holdout),
            champion=task.evaluate(champion, holdout),
            validation={k: statistics.fmean(v) for k, v in validation.items()},
        )

    @activity.defn(name="record_round")
    @runs_on(taskqueues.IO)
    async def record_round(self, record: RoundRecord) -> Recorded:
        """The round's row, its candidate version and the champion change (idempotent by
        round id); with ``record.tell``, then each participant's entity is told the champion it
        serves (``note``; a bot without an entity is skipped, a retry tells again)."""
        candidate, champion = await asyncio.to_thread(registry.record_round, self._url, record)
        if record.tell and record.participants:
            client = activity.client()
            note = BotEvent(at=datetime.now(UTC), event="model", detail=champion)

            async def tell(name: str) -> None:
                handle = client.get_workflow_handle(bot_workflow_id(name))
                try:
                    await handle.signal("note", note, rpc_timeout=timedelta(seconds=10))
                except RPCError as err:
                    if err.status is not RPCStatusCode.NOT_FOUND:
                        raise
                    activity.logger.info("bot %s has no entity to tell its model", name)

            await asyncio.gather(*(tell(name) for name in record.participants))
        return Recorded(candidate=candidate, champion=champion)

    def _load(self, ref: str) -> Weights:
        try:
            return self._store.get(ref)
        except ArtifactError as err:
            raise refused(str(err), "ArtifactError") from None

    def _load_model(self, ref: str) -> Weights:
        return drift.model_part(self._load(ref))


def _partition(
    order: TrainOrder | EvaluateOrder,
    participants: list[str],
    params: dict[str, dict[str, object]],
) -> dict[str, LocalData]:
    """The task's partition among ``participants``, dealt once per round and worker (each
    participant's training and the evaluation would deal it again otherwise)."""
    names = tuple(sorted(participants))
    key = (order.round_id, names, order.seed, json.dumps(params, sort_keys=True, default=str))
    with _PARTITION_LOCK:
        found = _PARTITIONS.get(key)
    if found is None:
        found = task_named(order.task).partition(list(names), order.seed, params)
        with _PARTITION_LOCK:
            _PARTITIONS[key] = found
            while len(_PARTITIONS) > _PARTITIONS_KEPT:
                _PARTITIONS.pop(next(iter(_PARTITIONS)))
    return found


_PARTITIONS: dict[tuple[str, tuple[str, ...], int, str], dict[str, LocalData]] = {}
"""Recent rounds' partitions (a round's training and evaluation share one)."""
_PARTITIONS_KEPT = 4
_PARTITION_LOCK = threading.Lock()


class PatternActivities:
    """The SQL side of shared patterns (``fleet-io``)."""

    task_queue = taskqueues.IO

    def __init__(self, settings: Settings) -> None:
        self._url = settings.effective_database_url

    @activity.defn(name="pattern_targets")
    async def pattern_targets(self, order: ShareOrder) -> PatternTargets:
        return await asyncio.to_thread(self._targets, order)

    def _targets(self, order: ShareOrder) -> PatternTargets:
        with db.session_scope(self._url) as session:
            source = session.get(BotRecord, order.source)
            if source is None:
                raise refused(f"no bot named {order.source}", "UnknownBot")
            rows = session.exec(
                select(BotRecord).where(
                    BotRecord.kind == source.kind, BotRecord.status == BotStatus.ACTIVE.value
                )
            ).all()
        others = sorted((r for r in rows if r.name != source.name), key=lambda r: r.name)
        return PatternTargets(source=_ref(source), others=[_ref(r) for r in others])

    @activity.defn(name="store_pattern")
    async def store_pattern(self, view: PatternView) -> bool:
        assert view.pattern is not None  # noqa: S101 - the workflow stores only a known pattern
        await asyncio.to_thread(
            patterns.store_pattern, self._url, view.pattern_id, view.source, view.pattern
        )
        return True

    @activity.defn(name="record_validations")
    async def record_validations(self, wave: ValidationWave) -> list[int]:
        asked, holds = await asyncio.to_thread(patterns.record_wave, self._url, wave)
        return [asked, holds]

    @activity.defn(name="finish_pattern")
    async def finish_pattern(self, view: PatternView) -> bool:
        await asyncio.to_thread(patterns.set_status, self._url, view.pattern_id, view.status)
        return True


def _ref(row: BotRecord) -> BotRef:
    return BotRef(
        name=row.name,
        kind=BotKind(row.kind),
        status=BotStatus(row.status),
        owner=row.owner,
        params=dict(row.params),
    )
