"""The fleet's figures, read from the database in one place.

Both the workers' ``/metrics`` (:class:`agentfleet.operations.metrics.FiguresCollector`, one gauge
family per figure, behind the Grafana dashboards) and ``fleet report`` (HTML for operators without
Grafana) call :func:`read_figures`, so a dashboard and a report taken at the same moment show the
same numbers. The database rows are what the activities keep in step with the workflows; Temporal
visibility adds what runs right now (``fleet report`` asks it separately).

Everything here is a handful of ``GROUP BY`` queries plus bounded reads of recent rows (latency
samples within :data:`WINDOW`, at most :data:`MAX_SAMPLES`), so a scrape every 15 s stays cheap.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from pydantic import BaseModel, Field
from sqlalchemy import Numeric, cast, exists
from sqlmodel import Session, col, func, select

from agentfleet.agents.model import UsageDay
from agentfleet.agents.usage import day_start, runs_since, usage_since
from agentfleet.db import session_scope
from agentfleet.models import (
    AuditEvent,
    BotRecord,
    ChainTransaction,
    ChannelRecord,
    ContentItem,
    LearningRoundRecord,
    ModelVersion,
    PaymentRecord,
    PublishAttempt,
    utcnow,
)

WINDOW = timedelta(hours=24)
"""Latency and wait quantiles cover events of the last 24 hours."""
RATE_WINDOW = timedelta(minutes=5)
"""Publish rates are averaged over the last 5 minutes (the limits are per second)."""
MAX_SAMPLES = 2000
"""At most this many recent events feed a quantile, whatever the traffic."""
MAX_ROUNDS = 200
"""``fleet report`` draws at most the last 200 rounds of each task."""
FUSD_UNIT = 10**6
PENDING_PAYMENT_STATES = ("verifying", "executing", "settling")
"""PaymentStatus values of a saga still running (the ledger only holds finished payments)."""


class Quantiles(BaseModel):
    """p50 / p95 of a set of durations in seconds (None when there was no sample)."""

    samples: int = 0
    p50_s: float | None = None
    p95_s: float | None = None
    max_s: float | None = None


class BotCount(BaseModel):
    status: str
    kind: str
    count: int


class PaymentStatusFigures(BaseModel):
    status: str
    count: int
    amount_fusd: float


class PaymentFigures(BaseModel):
    """The ledger by status, settlements under way and settle latency.

    ``settling`` counts settlement transactions sent for a payment whose ledger row is not written
    yet (the saga is between settle and record). ``settle_latency`` runs from the settlement
    transaction's recording (before broadcast) to the ledger row (after its confirmations).
    """

    by_status: list[PaymentStatusFigures] = Field(default_factory=list)
    settling: int = 0
    settle_latency: Quantiles = Field(default_factory=Quantiles)


class ChannelFigures(BaseModel):
    name: str
    kind: str
    limit_per_s: float
    burst: int
    published: int
    """Items sent on this channel, ever."""
    rate_per_s: float
    """Sends per second over the last :data:`RATE_WINDOW`."""


class ContentFigures(BaseModel):
    """Items by state, how long people take to approve, and publishing against each limit.

    ``approval_wait`` is from scoring (when an item starts waiting) to a person's decision, for
    decisions of the last :data:`WINDOW`; automatic approvals (actor ``policy:...``) do not wait.
    """

    by_state: dict[str, int] = Field(default_factory=dict)
    awaiting_approval: int = 0
    oldest_wait_s: float | None = None
    approval_wait: Quantiles = Field(default_factory=Quantiles)
    channels: list[ChannelFigures] = Field(default_factory=list)


class RoundPoint(BaseModel):
    round: int
    status: str
    value: float | None
    """The candidate's primary metric (None: the round failed or runs)."""


class TaskFigures(BaseModel):
    """One learning task: its deciding metric per round, the champion, and what was decided."""

    task: str
    metric: str
    higher_is_better: bool
    rounds_by_status: dict[str, int] = Field(default_factory=dict)
    promotions: int = 0
    rolled_back: int = 0
    """Rounds whose candidate lost to the champion (the champion stayed)."""
    live_rollbacks: int = 0
    """Champions fleet-health rolled back to their parent on fresh data."""
    champion: str | None = None
    champion_value: float | None = None
    latest_round: int | None = None
    latest_value: float | None = None
    series: list[RoundPoint] = Field(default_factory=list)
    """Per round, oldest first (only with ``series=True``)."""


class AgentFigures(UsageDay):
    """One agent's UTC day so far (the day its budget counts): model calls, tokens, their cost
    and its settled purchases in units (micro-fUSD), its budget, and its runs that ended today
    by final status."""

    runs: dict[str, int] = Field(default_factory=dict)

    @property
    def spent_units(self) -> int:
        """Tokens and purchases together: what the budget counts."""
        return self.token_units + self.purchase_units

    @property
    def budget_used(self) -> float | None:
        """The share of today's budget spent (None without a budget)."""
        if not self.budget_units:
            return None
        return self.spent_units / self.budget_units


class FleetFigures(BaseModel):
    taken_at: datetime
    bots: list[BotCount] = Field(default_factory=list)
    payments: PaymentFigures = Field(default_factory=PaymentFigures)
    content: ContentFigures = Field(default_factory=ContentFigures)
    learning: list[TaskFigures] = Field(default_factory=list)
    agents: list[AgentFigures] = Field(default_factory=list)
    """Every agent bot's day so far (since 00:00 UTC)."""

    def bots_by(self, field: str) -> dict[str, int]:
        """Bot counts summed by ``status`` or ``kind``."""
        totals: dict[str, int] = defaultdict(int)
        for row in self.bots:
            totals[getattr(row, field)] += row.count
        return dict(sorted(totals.items()))


def quantiles(durations: Sequence[float]) -> Quantiles:
    """Nearest-rank p50 / p95 (what a reader checks by hand on a sorted list)."""
    if not durations:
        return Quantiles()
    ordered = sorted(durations)

    def rank(q: float) -> float:
        return ordered[max(0, math.ceil(q * len(ordered)) - 1)]

    return Quantiles(samples=len(ordered), p50_s=rank(0.5), p95_s=rank(0.95), max_s=ordered[-1])


def read_figures(url: str, *, series: bool = False, now: datetime | None = None) -> FleetFigures:
    """Every figure of the fleet from the database at ``url``; raises what the database raises.

    ``series`` adds each learning task's per-round metric (the report draws it; a scrape does
    not need it).
    """
    now = now or utcnow()
    with session_scope(url) as session:
        return FleetFigures(
            taken_at=now,
            bots=_bots(session),
            payments=_payments(session, now),
            content=_content(session, now),
            learning=_learning(session, series),
            agents=_agents(session, now),
        )


def _bots(session: Session) -> list[BotCount]:
    query = (
        select(BotRecord.status, BotRecord.kind, func.count())
        .group_by(col(BotRecord.status), col(BotRecord.kind))
        .order_by(col(BotRecord.status), col(BotRecord.kind))
    )
    return [BotCount(status=s, kind=k, count=n) for s, k, n in session.exec(query).all()]


def _payments(session: Session, now: datetime) -> PaymentFigures:
    amount = func.sum(cast(PaymentRecord.amount, Numeric))
    rows = session.exec(
        select(PaymentRecord.status, func.count(), amount)
        .group_by(col(PaymentRecord.status))
        .order_by(col(PaymentRecord.status))
    ).all()
    by_status = [
        PaymentStatusFigures(status=s, count=n, amount_fusd=float(total or 0) / FUSD_UNIT)
        for s, n, total in rows
    ]
    recorded = exists().where(col(PaymentRecord.payment_id) == col(ChainTransaction.request_id))
    settling = session.exec(
        select(func.count())
        .select_from(ChainTransaction)
        .where(col(ChainTransaction.request_id).startswith("payment-"))
        .where(~recorded)
    ).one()
    pairs = session.exec(
        select(PaymentRecord.created_at, ChainTransaction.created_at)
        .join(ChainTransaction, col(ChainTransaction.request_id) == col(PaymentRecord.payment_id))
        .where(PaymentRecord.status == "settled")
        .where(col(PaymentRecord.created_at) >= now - WINDOW)
        .order_by(col(PaymentRecord.created_at).desc())
        .limit(MAX_SAMPLES)
    ).all()
    latencies = [max(0.0, (done - sent).total_seconds()) for done, sent in pairs]
    return PaymentFigures(
        by_status=by_status, settling=int(settling), settle_latency=quantiles(latencies)
    )


def _content(session: Session, now: datetime) -> ContentFigures:
    by_state = {
        state: count
        for state, count in session.exec(
            select(ContentItem.state, func.count())
            .group_by(col(ContentItem.state))
            .order_by(col(ContentItem.state))
        ).all()
    }
    waiting_ids = select(ContentItem.content_id).where(ContentItem.state == "awaiting_approval")
    since = session.exec(
        select(func.min(AuditEvent.occurred_at))
        .where(AuditEvent.kind == "content.scores")
        .where(col(AuditEvent.subject).in_(waiting_ids))
    ).one()
    waits = _approval_waits(session, now)
    return ContentFigures(
        by_state=by_state,
        awaiting_approval=by_state.get("awaiting_approval", 0),
        oldest_wait_s=(now - since).total_seconds() if since is not None else None,
        approval_wait=quantiles(waits),
        channels=_channels(session, now),
    )


def _approval_waits(session: Session, now: datetime) -> list[float]:
    """Seconds from each human decision of the window back to the item's scoring before it."""
    decisions = session.exec(
        select(AuditEvent.subject, AuditEvent.occurred_at)
        .where(AuditEvent.kind == "content.decision")
        .where(~col(AuditEvent.actor).startswith("policy:"))
        .where(col(AuditEvent.occurred_at) >= now - WINDOW)
        .order_by(col(AuditEvent.id).desc())
        .limit(MAX_SAMPLES)
    ).all()
    if not decisions:
        return []
    scored: dict[str, list[datetime]] = defaultdict(list)
    for subject, at in session.exec(
        select(AuditEvent.subject, AuditEvent.occurred_at)
        .where(AuditEvent.kind == "content.scores")
        .where(col(AuditEvent.subject).in_({s for s, _ in decisions}))
    ).all():
        scored[subject].append(at)
    waits = []
    for subject, decided in decisions:
        before = [at for at in scored.get(subject, []) if at <= decided]
        if before:
            waits.append((decided - max(before)).total_seconds())
    return waits


def _channels(session: Session, now: datetime) -> list[ChannelFigures]:
    sent = PublishAttempt.state == "sent"
    published = dict(
        session.exec(
            select(PublishAttempt.channel, func.count())
            .where(sent)
            .group_by(col(PublishAttempt.channel))
        ).all()
    )
    recent = dict(
        session.exec(
            select(PublishAttempt.channel, func.count())
            .where(sent)
            .where(col(PublishAttempt.updated_at) >= now - RATE_WINDOW)
            .group_by(col(PublishAttempt.channel))
        ).all()
    )
    channels = session.exec(select(ChannelRecord).order_by(col(ChannelRecord.name))).all()
    return [
        ChannelFigures(
            name=c.name,
            kind=c.kind,
            limit_per_s=c.rate_per_s,
            burst=c.burst,
            published=published.get(c.name, 0),
            rate_per_s=recent.get(c.name, 0) / RATE_WINDOW.total_seconds(),
        )
        for c in channels
    ]


def _agents(session: Session, now: datetime) -> list[AgentFigures]:
    since = day_start(now)
    runs = runs_since(session, since)
    return [
        AgentFigures(**day.model_dump(), runs=runs.get(day.bot, {}))
        for day in usage_since(session, since)
    ]


def _learning(session: Session, series: bool) -> list[TaskFigures]:
    counts: dict[str, dict[str, int]] = defaultdict(dict)
    for task, status, n in session.exec(
        select(LearningRoundRecord.task, LearningRoundRecord.status, func.count()).group_by(
            col(LearningRoundRecord.task), col(LearningRoundRecord.status)
        )
    ).all():
        counts[task][status] = n
    live = dict(
        session.exec(
            select(AuditEvent.subject, func.count())
            .where(AuditEvent.kind == "model_degraded")
            .group_by(col(AuditEvent.subject))
        ).all()
    )
    champions = {
        row.task: row
        for row in session.exec(select(ModelVersion).where(ModelVersion.status == "champion"))
    }
    figures = []
    for task in sorted(set(counts) | set(champions)):
        limit = MAX_ROUNDS if series else 1
        rounds = list(
            session.exec(
                select(LearningRoundRecord)
                .where(LearningRoundRecord.task == task)
                .where(LearningRoundRecord.status != "running")
                .order_by(col(LearningRoundRecord.round).desc())
                .limit(limit)
            ).all()
        )[::-1]
        metric, higher = primary_metric(task, [r.metrics for r in rounds])
        points = [
            RoundPoint(round=r.round, status=r.status, value=_number(r.metrics.get(metric)))
            for r in rounds
        ]
        champion = champions.get(task)
        by_status = dict(sorted(counts.get(task, {}).items()))
        figures.append(
            TaskFigures(
                task=task,
                metric=metric,
                higher_is_better=higher,
                rounds_by_status=by_status,
                promotions=by_status.get("promoted", 0),
                rolled_back=by_status.get("rolled_back", 0),
                live_rollbacks=live.get(task, 0),
                champion=champion.version_id if champion else None,
                champion_value=_number(champion.metrics.get(metric)) if champion else None,
                latest_round=points[-1].round if points else None,
                latest_value=points[-1].value if points else None,
                series=points if series else [],
            )
        )
    return figures


def primary_metric(task: str, metrics: Sequence[dict[str, Any]]) -> tuple[str, bool]:
    """The task's deciding metric and whether higher is better; for a task this build does not
    know, the first numeric metric recorded (higher assumed better)."""
    from agentfleet.learning.tasks.builtin import TASKS  # numpy: only when rounds exist

    known = TASKS.get(task)
    if known is not None:
        return known.primary_metric, known.higher_is_better
    for values in metrics:
        for key, value in values.items():
            if not key.startswith("val_") and _number(value) is not None:
                return key, True
    return "metric", True


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None
