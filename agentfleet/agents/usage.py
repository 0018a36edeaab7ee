"""What agents spent, read from the database: model calls and their tokens (the ``usage`` table),
settled purchases (the ledger) and ended runs (their ``agent_run`` audit rows), per agent since
00:00 UTC. ``fleet agent usage``, Telegram ``/usage``, ``fleet report`` and the dashboards' gauges
read these; a few ``GROUP BY`` queries, cheap enough for every scrape.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime, time, timedelta

from sqlalchemy import Numeric, cast
from sqlalchemy import select as sa_select
from sqlmodel import Session, col, func, select

from agentfleet.agents.model import AgentParams, UsageDay, units_of
from agentfleet.bots.model import BotKind
from agentfleet.bots.params import parse_params
from agentfleet.db import session_scope
from agentfleet.models import AuditEvent, BotRecord, PaymentRecord, UsageRecord

RUN_AUDIT_KIND = "agent_run"
"""The audit row an agent run writes once when it ends (``detail.status``)."""


def day_start(now: datetime | None = None, days: int = 1) -> datetime:
    """00:00 UTC ``days - 1`` days before ``now``'s day (the budget's day is the UTC day)."""
    now = now or datetime.now(UTC)
    day = now.date() if now.tzinfo is None else now.astimezone(UTC).date()
    return datetime.combine(day - timedelta(days=days - 1), time(), UTC)


def budget_units(params: dict[str, object] | None) -> int | None:
    """``budget.per_day`` in units, or None when the parameters are not an agent's."""
    try:
        parsed = parse_params(BotKind.AGENT, dict(params or {}))
    except ValueError:
        return None
    return units_of(parsed.budget.per_day) if isinstance(parsed, AgentParams) else None


def usage_since(session: Session, since: datetime, bot: str | None = None) -> list[UsageDay]:
    """Each agent's (or only ``bot``'s) model calls, tokens, their cost and its settled
    purchases since ``since``, with its daily budget; agents without any usage included, sorted
    by name."""
    agents = session.exec(select(BotRecord).where(BotRecord.kind == BotKind.AGENT.value)).all()
    params = {a.name: a.params for a in agents if bot is None or a.name == bot}
    # Five columns: SQLAlchemy's own select (SQLModel's is typed up to four).
    calls = sa_select(
        col(UsageRecord.bot),
        func.count(),
        func.coalesce(func.sum(UsageRecord.input_tokens), 0),
        func.coalesce(func.sum(UsageRecord.output_tokens), 0),
        func.coalesce(func.sum(UsageRecord.cost_units), 0),
    ).where(col(UsageRecord.created_at) >= since)
    if bot is not None:
        calls = calls.where(col(UsageRecord.bot) == bot)
    totals = {
        name: (int(n), int(tokens_in), int(tokens_out), int(cost))
        for name, n, tokens_in, tokens_out, cost in session.execute(
            calls.group_by(col(UsageRecord.bot))
        ).all()
    }
    purchases: dict[str, int] = {}
    if params:
        paid = session.exec(
            select(PaymentRecord.buyer, func.sum(cast(PaymentRecord.amount, Numeric)))
            .where(PaymentRecord.status == "settled")
            .where(col(PaymentRecord.created_at) >= since)
            .where(col(PaymentRecord.buyer).in_(list(params)))
            .group_by(col(PaymentRecord.buyer))
        ).all()
        purchases = {buyer: int(amount or 0) for buyer, amount in paid if buyer is not None}
    out = []
    for name in sorted(set(params) | set(totals)):
        calls_n, tokens_in, tokens_out, cost = totals.get(name, (0, 0, 0, 0))
        out.append(
            UsageDay(
                bot=name,
                model_calls=calls_n,
                input_tokens=tokens_in,
                output_tokens=tokens_out,
                token_units=cost,
                purchase_units=purchases.get(name, 0),
                budget_units=budget_units(params[name]) if name in params else None,
            )
        )
    return out


def runs_since(session: Session, since: datetime) -> dict[str, dict[str, int]]:
    """Runs that ended since ``since``, per agent and final status."""
    counts: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for actor, detail in session.exec(
        select(AuditEvent.actor, AuditEvent.detail)
        .where(AuditEvent.kind == RUN_AUDIT_KIND)
        .where(col(AuditEvent.occurred_at) >= since)
    ).all():
        status = (detail or {}).get("status") or "unknown"
        counts[actor][str(status)] += 1
    return {bot: dict(sorted(by.items())) for bot, by in counts.items()}


def read_usage(
    url: str, bot: str | None = None, days: int = 1, now: datetime | None = None
) -> list[UsageDay]:
    """:func:`usage_since` 00:00 UTC ``days - 1`` days ago, from the database at ``url``."""
    with session_scope(url) as session:
        return usage_since(session, day_start(now, days), bot)
