"""The model registry in SQL: champions, candidates, lineage, and what each round decided.

One champion per task at a time. Writes are idempotent: a round's candidate is keyed by its
round id (a retried ``record_round`` finds its version instead of numbering a second one), and
the first champion of a task is ``{task}-v1``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlmodel import Session, col, func, select

from agentfleet.db import session_scope
from agentfleet.learning.rounds import ModelRef, ModelStatus, RoundRecord, RoundStatus, TrainFrom
from agentfleet.models import BotRecord, LearningRoundRecord, ModelVersion, utcnow


def version_id(task: str, version: int) -> str:
    return f"{task}-v{version}"


def ref_of(row: ModelVersion) -> ModelRef:
    return ModelRef(
        version_id=row.version_id,
        version=row.version,
        artifact=row.artifact,
        metrics=metrics_of(row.metrics),
        controls={str(k): str(v) for k, v in (row.controls or {}).items()},
    )


def champion(session: Session, task: str) -> ModelVersion | None:
    query = select(ModelVersion).where(
        ModelVersion.task == task, ModelVersion.status == ModelStatus.CHAMPION.value
    )
    return session.exec(query).first()


def head(session: Session, task: str) -> ModelVersion | None:
    """The version the task's next round trains from (the champion when none is marked)."""
    query = select(ModelVersion).where(ModelVersion.task == task, col(ModelVersion.head))
    return session.exec(query).first() or champion(session, task)


def start_of(url: str, task: str, train_from: TrainFrom) -> ModelRef | None:
    """The version a round starting now trains from."""
    with session_scope(url) as session:
        row = head(session, task) if train_from is TrainFrom.CANDIDATE else champion(session, task)
        return ref_of(row) if row is not None else None


def _move_head(session: Session, task: str, to: ModelVersion) -> None:
    for row in session.exec(
        select(ModelVersion).where(ModelVersion.task == task, col(ModelVersion.head))
    ).all():
        if row.version_id != to.version_id:
            row.head = False
            session.add(row)
    to.head = True
    session.add(to)
    session.flush()


def ensure_champion(
    url: str, task: str, initial: Callable[[], tuple[str, dict[str, float]]]
) -> ModelRef:
    """The task's champion; the first time, ``initial()`` (artifact ref, metrics) becomes v1."""
    with session_scope(url) as session:
        row = champion(session, task)
        if row is not None:
            return ref_of(row)
        first = session.get(ModelVersion, version_id(task, 1))
        if first is not None:  # every version lost its crown (should not happen): restore v1
            first.status = ModelStatus.CHAMPION.value
            session.add(first)
            session.commit()
            return ref_of(first)
    artifact, metrics = initial()
    with session_scope(url) as session:
        if session.get(ModelVersion, version_id(task, 1)) is None:
            session.add(
                ModelVersion(
                    version_id=version_id(task, 1),
                    task=task,
                    version=1,
                    artifact=artifact,
                    metrics=dict(metrics),
                    status=ModelStatus.CHAMPION.value,
                    round_id=f"learning-{task}-init",
                    head=True,
                )
            )
            session.commit()
        row = session.get(ModelVersion, version_id(task, 1))
        assert row is not None  # noqa: S101 - written just above
        return ref_of(row)


def record_round(url: str, record: RoundRecord) -> tuple[str | None, str]:
    """Write the round, its candidate version (if any) and the champion change, at once.

    Returns (candidate version id, champion version id after the round). A second call for the
    same round id changes nothing and returns the same answer.
    """
    with session_scope(url) as session:
        done = session.get(LearningRoundRecord, record.round_id)
        existing = session.exec(
            select(ModelVersion).where(ModelVersion.round_id == record.round_id)
        ).first()
        if done is not None and done.status != RoundStatus.RUNNING.value:
            return (existing.version_id if existing else None), done.champion or record.parent
        candidate_id: str | None = existing.version_id if existing else None
        if record.candidate is not None and existing is None:
            latest = session.exec(
                select(func.max(ModelVersion.version)).where(ModelVersion.task == record.task)
            ).one()
            number = int(latest or 0) + 1
            promoted = record.status is RoundStatus.PROMOTED
            parent = session.get(ModelVersion, record.parent)
            inherited = dict(parent.controls) if parent is not None and parent.controls else {}
            row = ModelVersion(
                version_id=version_id(record.task, number),
                task=record.task,
                version=number,
                parent=record.parent,
                round_id=record.round_id,
                participants=list(record.participants),
                excluded=[e.model_dump() for e in record.excluded],
                metrics=dict(record.metrics),
                artifact=record.candidate,
                status=(ModelStatus.CHAMPION if promoted else ModelStatus.REJECTED).value,
                strategy=record.strategy,
                controls=inherited | record.controls,
            )
            if promoted:
                _dethrone(session, record.task)
            session.add(row)
            if promoted or record.train_from is TrainFrom.CANDIDATE:
                _move_head(session, record.task, row)
            candidate_id = row.version_id
        reigning = champion(session, record.task)
        champion_id = (
            candidate_id
            if record.status is RoundStatus.PROMOTED and candidate_id
            else (reigning.version_id if reigning else record.parent)
        )
        round_row = done or LearningRoundRecord(
            round_id=record.round_id,
            task=record.task,
            round=record.round,
            status=record.status.value,
            strategy=record.strategy,
        )
        round_row.status = record.status.value
        round_row.participants = list(record.participants)
        round_row.dropped = [e.model_dump() for e in record.dropped]
        round_row.excluded = [e.model_dump() for e in record.excluded]
        round_row.candidate = candidate_id
        round_row.champion = champion_id
        round_row.metrics = dict(record.metrics) | (
            {"reason": record.reason} if record.reason else {}
        )
        round_row.finished_at = utcnow()
        session.add(round_row)
        _serve(session, record.participants, champion_id)
        session.commit()
        return candidate_id, champion_id


def _dethrone(session: Session, task: str) -> None:
    current = champion(session, task)
    if current is not None:
        current.status = ModelStatus.RETIRED.value
        current.updated_at = utcnow()
        session.add(current)
        session.flush()


def _serve(session: Session, bots: list[str], version: str) -> None:
    """The ``bots`` rows follow what their entity workflows are told to serve."""
    for name in bots:
        bot = session.get(BotRecord, name)
        if bot is not None and bot.model_version != version:
            bot.model_version = version
            bot.updated_at = utcnow()
            session.add(bot)


def rollback(url: str, task: str, to: str) -> tuple[ModelVersion, list[str]]:
    """Make ``to`` the champion and the next round's start again (the current champion is
    retired); return it and the bots that serve the task's models (to be told). ValueError with
    one line when ``to`` is not a version of ``task``."""
    with session_scope(url) as session:
        target = session.get(ModelVersion, to)
        if target is None or target.task != task:
            known = ", ".join(v.version_id for v in list_versions_in(session, task)) or "none"
            raise ValueError(f"no version {to} of task {task} (versions: {known})")
        current = champion(session, task)
        if current is not None and current.version_id != target.version_id:
            current.status = ModelStatus.RETIRED.value
            current.updated_at = utcnow()
            session.add(current)
            session.flush()
        target.status = ModelStatus.CHAMPION.value
        target.updated_at = utcnow()
        session.add(target)
        _move_head(session, task, target)
        served = session.exec(
            select(BotRecord.name).where(col(BotRecord.model_version).startswith(f"{task}-v"))
        ).all()
        _serve(session, list(served), target.version_id)
        session.commit()
        session.refresh(target)
        return target, list(served)


def list_versions_in(session: Session, task: str) -> list[ModelVersion]:
    query = (
        select(ModelVersion).where(ModelVersion.task == task).order_by(col(ModelVersion.version))
    )
    return list(session.exec(query).all())


def list_versions(url: str, task: str) -> list[ModelVersion]:
    with session_scope(url) as session:
        return list_versions_in(session, task)


def list_rounds(url: str, task: str | None = None, limit: int = 50) -> list[LearningRoundRecord]:
    with session_scope(url) as session:
        query = select(LearningRoundRecord)
        if task is not None:
            query = query.where(LearningRoundRecord.task == task)
        query = query.order_by(col(LearningRoundRecord.started_at).desc()).limit(limit)
        return list(session.exec(query).all())


def next_round(url: str, task: str) -> int:
    with session_scope(url) as session:
        latest = session.exec(
            select(func.max(LearningRoundRecord.round)).where(LearningRoundRecord.task == task)
        ).one()
        return int(latest or 0) + 1


def mark_running(url: str, task: str, round_number: int, round_id: str, strategy: str) -> None:
    """The round's row while it runs (so rounds are numbered and listed from the start)."""
    with session_scope(url) as session:
        if session.get(LearningRoundRecord, round_id) is None:
            session.add(
                LearningRoundRecord(
                    round_id=round_id,
                    task=task,
                    round=round_number,
                    status=RoundStatus.RUNNING.value,
                    strategy=strategy,
                )
            )
            session.commit()


def metrics_of(values: dict[str, Any]) -> dict[str, float]:
    return {k: float(v) for k, v in values.items() if isinstance(v, int | float)}
