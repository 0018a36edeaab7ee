"""Agents' counters and gauges: a model call's tokens and cost and a run's end are counted once
however often the activity that records them is retried, and the day's figures are exported as
gauges (on SQLite and PostgreSQL)."""

from __future__ import annotations

import uuid
from pathlib import Path

from prometheus_client import REGISTRY
from temporalio.testing import ActivityEnvironment

from activities.agents import AgentActivities
from activities.store import StoreActivities
from agentfleet.agents.model import UsageEntry
from agentfleet.agents.usage import read_usage
from agentfleet.db import session_scope
from agentfleet.messages import AuditRecord
from agentfleet.models import BotRecord
from agentfleet.operations.figures import read_figures
from agentfleet.operations.metrics import figure_metrics
from agentfleet.settings import Settings


def counted(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def test_a_retried_usage_record_and_run_end_are_counted_once(
    migrated_database_url: str, tmp_path: Path
) -> None:
    settings = Settings(home=tmp_path, database_url=migrated_database_url)
    bot = f"metric-{uuid.uuid4().hex[:6]}"
    with session_scope(migrated_database_url) as session:
        session.add(
            BotRecord(
                name=bot,
                kind="agent",
                owner="desk",
                status="active",
                params={"budget": {"per_day": "0.25"}},
            )
        )
    run_id = f"agent-{bot}-{uuid.uuid4().hex[:16]}"
    entry = UsageEntry(
        run_id=run_id,
        call_no=1,
        bot=bot,
        model="gpt-4o-mini",
        input_tokens=120,
        output_tokens=30,
        cost_units=36,
    )
    end = AuditRecord(
        idempotency_key=f"agent-run:{run_id}",
        actor=bot,
        kind="agent_run",
        subject="olga",
        workflow_id=run_id,
        detail={"status": "over_budget", "model_calls": 1},
    )
    env = ActivityEnvironment()
    agent_activities = AgentActivities(settings)
    store = StoreActivities(settings)

    assert [await env.run(agent_activities.record_usage, entry) for _ in range(3)] == [
        True,
        False,
        False,
    ]
    assert [env.run(store.record_audit_event, end).inserted for _ in range(2)] == [True, False]

    labels = {"bot": bot, "model": "gpt-4o-mini"}
    assert counted("agentfleet_agent_tokens_total", **labels, direction="input") == 120
    assert counted("agentfleet_agent_tokens_total", **labels, direction="output") == 30
    assert counted("agentfleet_agent_cost_units_total", **labels) == 36
    assert counted("agentfleet_agent_runs_total", bot=bot, status="over_budget") == 1

    [day] = read_usage(migrated_database_url, bot)
    assert (day.model_calls, day.input_tokens, day.token_units, day.budget_units) == (
        1,
        120,
        36,
        250_000,
    )
    figures = read_figures(migrated_database_url)
    [agent] = [a for a in figures.agents if a.bot == bot]
    assert agent.runs == {"over_budget": 1}
    samples = {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in figure_metrics(figures)
        for sample in family.samples
    }
    spent = "fleet_agent_spent_today_fusd"
    assert samples[(spent, (("bot", bot), ("what", "tokens")))] == 36 / 10**6
    assert samples[(spent, (("bot", bot), ("what", "purchases")))] == 0
    assert samples[("fleet_agent_budget_per_day_fusd", (("bot", bot),))] == 0.25
    assert samples[("fleet_agent_model_calls_today", (("bot", bot),))] == 1
