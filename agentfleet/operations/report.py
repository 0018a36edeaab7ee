"""``fleet report``: the dashboards' figures as one self-contained HTML page.

For operators without Grafana: the same :func:`agentfleet.operations.figures.read_figures` the
workers export, plus what Temporal visibility says runs right now (skipped, and said so, when
Temporal is down). The page loads nothing from anywhere: styles inline, charts inline SVG drawn by
matplotlib on figures of their own (no ``pyplot`` state), so it opens from a file, a mail or an
air-gapped laptop. Links to the Temporal Web UI's list views are plain links."""

from __future__ import annotations

import asyncio
import html
import io
import urllib.parse
from collections.abc import Sequence
from datetime import datetime

import matplotlib
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
from pydantic import BaseModel, Field
from temporalio.client import Client
from temporalio.service import RPCError

from agentfleet.agents.model import TOKEN_UNITS, fusd
from agentfleet.operations.figures import AgentFigures, FleetFigures, Quantiles, TaskFigures

SAVED_VIEWS: tuple[tuple[str, str], ...] = (
    (
        "Bots running",
        'WorkflowType = "BotLifecycleWorkflow" AND ExecutionStatus = "Running"',
    ),
    ("Bots paused", 'WorkflowType = "BotLifecycleWorkflow" AND BotStatus = "paused"'),
    ("Bots degraded", 'WorkflowType = "BotLifecycleWorkflow" AND BotStatus = "degraded"'),
    (
        "Payments pending",
        'PaymentStatus IN ("verifying", "executing", "settling")',
    ),
    (
        "Content awaiting approval",
        'WorkflowType = "ContentPipelineWorkflow" AND ContentState = "awaiting_approval"',
    ),
    (
        "Learning rounds running",
        'WorkflowType = "LearningRoundWorkflow" AND ExecutionStatus = "Running"',
    ),
    ("Workflows failed", 'ExecutionStatus = "Failed"'),
)
"""(label, visibility query): what the report counts, and the Web UI views that
docs/operations.md lists."""


def web_ui_url(ui_url: str, namespace: str, query: str) -> str:
    """The Temporal Web UI's workflow list filtered by ``query``."""
    quoted = urllib.parse.quote(query, safe="")
    return f"{ui_url.rstrip('/')}/namespaces/{namespace}/workflows?query={quoted}"


class VisibilityCount(BaseModel):
    label: str
    query: str
    url: str
    count: int | None = None


class TemporalCounts(BaseModel):
    """Counts from Temporal visibility; ``error`` says why there are none."""

    namespace: str
    ui_url: str
    error: str | None = None
    counts: list[VisibilityCount] = Field(default_factory=list)


class Report(BaseModel):
    figures: FleetFigures
    temporal: TemporalCounts


def _svg(figure: Figure) -> str:
    """``figure`` as an inline ``<svg>`` element (text kept as text, ids stable)."""
    buffer = io.StringIO()
    with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": "agentfleet"}):
        figure.savefig(buffer, format="svg", metadata={"Date": None})
    text = buffer.getvalue()
    return text[text.index("<svg") :]


def _figure(width: float = 6.0, height: float = 2.8) -> Figure:
    figure = Figure(figsize=(width, height), layout="constrained")
    return figure


def _bar_chart(title: str, values: dict[str, float], unit: str = "") -> str:
    figure = _figure()
    axes = figure.add_subplot()
    labels = list(values) or ["none"]
    heights = list(values.values()) or [0]
    bars = axes.barh(labels, heights, color="tab:blue")
    axes.bar_label(bars, fmt="%g", padding=3)
    axes.invert_yaxis()
    axes.set_title(title, loc="left", fontsize=10)
    axes.set_xlabel(unit)
    axes.margins(x=0.15)
    return _svg(figure)


def bots_chart(figures: FleetFigures) -> str:
    """Bots per status, one stacked segment per kind."""
    statuses = sorted({row.status for row in figures.bots}) or ["none"]
    kinds = sorted({row.kind for row in figures.bots})
    figure = _figure()
    axes = figure.add_subplot()
    left = [0.0] * len(statuses)
    for kind in kinds:
        counts = [
            float(sum(r.count for r in figures.bots if r.status == s and r.kind == kind))
            for s in statuses
        ]
        axes.barh(statuses, counts, left=left, label=kind)
        left = [a + b for a, b in zip(left, counts, strict=True)]
    if not kinds:
        axes.barh(statuses, [0])
    axes.invert_yaxis()
    axes.set_title("Bots by status and kind", loc="left", fontsize=10)
    if kinds:
        axes.legend(fontsize=8)
    return _svg(figure)


def channels_chart(figures: FleetFigures) -> str:
    """Each channel's send rate (last 5 minutes) next to its limit."""
    channels = figures.content.channels
    figure = _figure()
    axes = figure.add_subplot()
    names = [c.name for c in channels] or ["none"]
    positions = list(range(len(names)))
    axes.barh(
        [p - 0.2 for p in positions],
        [c.rate_per_s for c in channels] or [0],
        0.4,
        label="sent / s (last 5 min)",
    )
    axes.barh(
        [p + 0.2 for p in positions],
        [c.limit_per_s for c in channels] or [0],
        0.4,
        label="limit / s",
        color="tab:gray",
    )
    axes.set_yticks(positions, names)
    axes.invert_yaxis()
    axes.set_title("Publish rate vs limit", loc="left", fontsize=10)
    axes.legend(fontsize=8)
    return _svg(figure)


def agents_chart(agents: Sequence[AgentFigures]) -> str:
    """Each agent's day: tokens and purchases stacked (fUSD), its budget as a mark."""
    figure = _figure()
    axes = figure.add_subplot()
    names = [a.bot for a in agents] or ["none"]
    tokens = [a.token_units / TOKEN_UNITS for a in agents] or [0.0]
    bought = [a.purchase_units / TOKEN_UNITS for a in agents] or [0.0]
    axes.barh(names, tokens, label="model tokens")
    axes.barh(names, bought, left=tokens, label="purchases")
    budgets = [(a.bot, a.budget_units / TOKEN_UNITS) for a in agents if a.budget_units is not None]
    if budgets:
        axes.plot(
            [b for _, b in budgets],
            [n for n, _ in budgets],
            "|",
            color="tab:red",
            ms=18,
            mew=2,
            label="budget per day",
        )
    axes.invert_yaxis()
    axes.set_title("Agents: spent today (UTC) vs budget", loc="left", fontsize=10)
    axes.set_xlabel("fUSD")
    axes.legend(fontsize=8)
    return _svg(figure)


def learning_chart(task: TaskFigures) -> str:
    """The task's deciding metric per round: promoted rounds filled, rolled back hollow."""
    figure = _figure()
    axes = figure.add_subplot()
    points = [(p.round, p.value, p.status) for p in task.series if p.value is not None]
    axes.plot([r for r, _, _ in points], [v for _, v, _ in points], color="tab:blue", lw=1)
    for status, face in (("promoted", "tab:blue"), ("rolled_back", "white")):
        chosen = [(r, v) for r, v, s in points if s == status]
        axes.plot(
            [r for r, _ in chosen],
            [v for _, v in chosen],
            "o",
            color="tab:blue",
            mfc=face,
            label=status.replace("_", " "),
        )
    if task.champion_value is not None:
        axes.axhline(task.champion_value, color="tab:green", ls="--", lw=1, label="champion")
    better = "higher" if task.higher_is_better else "lower"
    axes.set_title(
        f"{task.task}: {task.metric} per round ({better} is better)", loc="left", fontsize=10
    )
    axes.set_xlabel("round")
    axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    if points:
        axes.legend(fontsize=8)
    return _svg(figure)


def _seconds(value: float | None) -> str:
    if value is None:
        return "–"
    if value < 120:
        return f"{value:.1f} s"
    if value < 7200:
        return f"{value / 60:.1f} min"
    return f"{value / 3600:.1f} h"


def _quantiles(values: Quantiles) -> str:
    if not values.samples:
        return "no samples in the last 24 h"
    return (
        f"p50 {_seconds(values.p50_s)}, p95 {_seconds(values.p95_s)}, max {_seconds(values.max_s)}"
        f" ({values.samples} samples, last 24 h)"
    )


def _table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    if not rows:
        return f"<table><tr>{head}</tr><tr><td colspan={len(header)}>none</td></tr></table>"
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>" for row in rows
    )
    return f"<table><tr>{head}</tr>{body}</table>"


def agent_row(agent: AgentFigures) -> tuple[str, ...]:
    """One agent's line in the report's table (and the CLI's summary)."""
    if agent.budget_units is None:
        budget = f"{fusd(agent.spent_units)} (no budget)"
    else:
        share = agent.budget_used or 0.0
        budget = f"{fusd(agent.spent_units)} of {fusd(agent.budget_units)} ({share:.0%})"
    runs = ", ".join(f"{status} {n}" for status, n in agent.runs.items()) or "none"
    return (
        agent.bot,
        str(agent.model_calls),
        f"{agent.input_tokens} in, {agent.output_tokens} out",
        fusd(agent.token_units),
        fusd(agent.purchase_units),
        budget,
        runs,
    )


AGENT_COLUMNS = (
    "agent",
    "model calls",
    "tokens",
    "tokens fUSD",
    "purchases fUSD",
    "budget used fUSD",
    "runs ended",
)


def _section(key: str, title: str, *parts: str) -> str:
    return f'<section id="{key}"><h2>{html.escape(title)}</h2>{"".join(parts)}</section>'


def _chart(svg: str) -> str:
    return f'<div class="chart">{svg}</div>'


def _temporal(temporal: TemporalCounts) -> str:
    if temporal.error:
        note = f'<p class="warn">Temporal not reachable: {html.escape(temporal.error)}</p>'
    else:
        note = f"<p>Namespace {html.escape(temporal.namespace)}, counted just now.</p>"
    rows = "".join(
        f'<tr><td><a href="{html.escape(c.url)}">{html.escape(c.label)}</a></td>'
        f"<td>{'–' if c.count is None else c.count}</td><td><code>{html.escape(c.query)}</code>"
        "</td></tr>"
        for c in temporal.counts
    )
    table = f"<table><tr><th>Web UI view</th><th>count</th><th>query</th></tr>{rows}</table>"
    return _section("temporal", "Running now (Temporal visibility)", note, table)


STYLE = """
body{font:14px/1.4 system-ui,sans-serif;margin:2em auto;max-width:1100px;color:#222}
h1{margin-bottom:0}section{margin-top:2em}
table{border-collapse:collapse;margin:.5em 0}td,th{border-bottom:1px solid #ddd;padding:3px 10px;
text-align:left}.charts{display:flex;flex-wrap:wrap;gap:1em}.chart svg{width:540px;height:auto}
.warn{color:#a40}.muted{color:#777}code{font-size:12px}
"""


def render_html(report: Report) -> str:
    """The whole page (UTF-8 text); the same report renders the same page."""
    figures = report.figures
    taken: datetime = figures.taken_at
    payments, content = figures.payments, figures.content
    fleet = _section(
        "fleet",
        "Fleet",
        _table(["status", "bots"], list(figures.bots_by("status").items())),
        _table(["kind", "bots"], list(figures.bots_by("kind").items())),
        _chart(bots_chart(figures)),
    )
    payment_rows = [(p.status, p.count, f"{p.amount_fusd:g}") for p in payments.by_status]
    money = _section(
        "payments",
        "Payments",
        _table(["status", "payments", "fUSD"], payment_rows),
        f"<p>Settling now (sent, not recorded yet): {payments.settling}. Settle latency: "
        f"{html.escape(_quantiles(payments.settle_latency))}.</p>",
        '<div class="charts">',
        _chart(_bar_chart("Payments by status", {p.status: p.count for p in payments.by_status})),
        _chart(
            _bar_chart(
                "Amount by status",
                {p.status: p.amount_fusd for p in payments.by_status},
                "fUSD",
            )
        ),
        "</div>",
    )
    channel_rows = [
        (c.name, c.kind, f"{c.rate_per_s:.3g}", f"{c.limit_per_s:g}", c.burst, c.published)
        for c in content.channels
    ]
    writing = _section(
        "content",
        "Content",
        f"<p>Awaiting approval: {content.awaiting_approval} (oldest waiting "
        f"{_seconds(content.oldest_wait_s)}). Approval wait: "
        f"{html.escape(_quantiles(content.approval_wait))}.</p>",
        _table(
            ["channel", "kind", "sent/s (5 min)", "limit/s", "burst", "published"], channel_rows
        ),
        '<div class="charts">',
        _chart(_bar_chart("Content items by state", dict(content.by_state))),
        _chart(channels_chart(figures)),
        "</div>",
    )
    task_rows = [
        (
            t.task,
            t.metric,
            t.champion or "–",
            "–" if t.champion_value is None else f"{t.champion_value:.4g}",
            t.latest_round or "–",
            t.promotions,
            t.rolled_back,
            t.live_rollbacks,
            t.rounds_by_status.get("failed", 0),
        )
        for t in figures.learning
    ]
    learning = _section(
        "learning",
        "Learning",
        _table(
            [
                "task",
                "metric",
                "champion",
                "value",
                "latest round",
                "promotions",
                "rolled back",
                "live rollbacks",
                "failed",
            ],
            task_rows,
        ),
        '<div class="charts">',
        *(_chart(learning_chart(t)) for t in figures.learning),
        "</div>",
    )
    agents = _section(
        "agents",
        "Agents (today, UTC)",
        "<p>Model calls and their tokens, what they cost and what the agents' purchases paid "
        "since 00:00 UTC, against each agent's budget.per_day (tokens and purchases count "
        "together).</p>",
        _table(AGENT_COLUMNS, [agent_row(a) for a in figures.agents]),
        _chart(agents_chart(figures.agents)),
    )
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        f"<title>agentfleet report {taken:%Y-%m-%d %H:%M} UTC</title>"
        f"<style>{STYLE}</style></head><body>"
        f"<h1>agentfleet report</h1><p class=muted>Taken {taken:%Y-%m-%d %H:%M:%S} UTC from the "
        "fleet's database; the Grafana dashboards show the same figures.</p>"
        f"{fleet}{money}{writing}{learning}{agents}{_temporal(report.temporal)}</body></html>\n"
    )


async def count_views(
    client: Client, namespace: str, ui_url: str, timeout_s: float = 5.0
) -> TemporalCounts:
    """Each of :data:`SAVED_VIEWS` counted by Temporal visibility (at once, within
    ``timeout_s``); on any error the counts stay empty and ``error`` says why."""
    counts = [
        VisibilityCount(label=label, query=query, url=web_ui_url(ui_url, namespace, query))
        for label, query in SAVED_VIEWS
    ]
    result = TemporalCounts(namespace=namespace, ui_url=ui_url, counts=counts)
    try:
        answers = await asyncio.wait_for(
            asyncio.gather(*(client.count_workflows(c.query) for c in counts)), timeout_s
        )
    except (TimeoutError, RPCError) as exc:
        result.error = str(exc).strip().splitlines()[0] if str(exc).strip() else "timed out"
        return result
    for view, answer in zip(counts, answers, strict=True):
        view.count = answer.count
    return result


def unreachable(namespace: str, ui_url: str, reason: str) -> TemporalCounts:
    """The Temporal part of a report taken while Temporal is down."""
    return TemporalCounts(
        namespace=namespace,
        ui_url=ui_url,
        error=reason,
        counts=[
            VisibilityCount(label=label, query=query, url=web_ui_url(ui_url, namespace, query))
            for label, query in SAVED_VIEWS
        ],
    )
