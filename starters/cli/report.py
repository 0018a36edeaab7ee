"""``fleet report``: the dashboards' figures as a self-contained HTML page, for operators
without Grafana (see :mod:`agentfleet.operations.report`).

Reads the database (required) and Temporal visibility (optional: when Temporal is down the page
and the summary say so, and the command still succeeds).
"""

from __future__ import annotations

import asyncio
import gc
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from agentfleet.errors import FleetError
from agentfleet.settings import Settings
from starters.cli.output import console, emit_json, err_console, fail, read_database
from starters.cli.settings_arg import load_settings

if TYPE_CHECKING:
    from agentfleet.operations.report import Report, TemporalCounts

DEFAULT_HTML = Path("fleet-report.html")


def _temporal_counts(settings: Settings) -> TemporalCounts:
    """Visibility counts, or the reason there are none (never raises for a down server)."""
    from temporalio.client import Client

    from agentfleet.operations.report import count_views, unreachable
    from agentfleet.temporal import connect, connect_options

    try:
        namespace = str(connect_options(settings)["namespace"])
    except FleetError as exc:
        return unreachable("default", settings.ui_url, exc.message)

    async def main() -> TemporalCounts:
        client: Client | None = None
        try:
            client = await asyncio.wait_for(connect(settings), 8)
            counts = await count_views(client, namespace, settings.ui_url)
        except FleetError as exc:
            counts = unreachable(namespace, settings.ui_url, exc.message)
        except TimeoutError:
            counts = unreachable(namespace, settings.ui_url, "no answer within 8 s")
        del client  # collected while the loop runs (see starters.cli.client)
        gc.collect()
        return counts

    return asyncio.run(main())


def report(
    html: Annotated[
        Path | None,
        typer.Option(
            "--html", help=f"The HTML file to write (default {DEFAULT_HTML}).", dir_okay=False
        ),
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the figures as JSON (HTML only with --html).")
    ] = False,
) -> None:
    """A snapshot of the fleet: bots, payments, content, learning, agents, and what runs now.

    The same figures as the Grafana dashboards, as one HTML file with inline charts (no
    network needed to open it).
    """
    from agentfleet.operations.figures import read_figures
    from agentfleet.operations.report import Report, render_html

    settings = load_settings(as_json)
    url = settings.effective_database_url
    with err_console.status("reading the fleet's figures from the database"):
        figures = read_database(
            "the fleet's figures", lambda: read_figures(url, series=True), as_json=as_json
        )
    with err_console.status("counting running workflows in Temporal"):
        temporal = _temporal_counts(settings)
    taken = Report(figures=figures, temporal=temporal)
    path = html if html is not None or not as_json else None
    if path is None and not as_json:
        path = DEFAULT_HTML
    if path is not None:
        with err_console.status("drawing the charts"):
            page = render_html(taken)
        try:
            path.write_text(page, encoding="utf-8")
        except OSError as exc:
            fail(f"cannot write {path}: {exc.strerror or exc}", as_json=as_json)
    if as_json:
        emit_json({"html": str(path) if path else None} | taken.model_dump(mode="json"))
        return
    _summary(taken)
    console.print(f"wrote {path}")


def _summary(taken: Report) -> None:
    from agentfleet.operations.report import agent_row

    figures, temporal = taken.figures, taken.temporal
    table = Table("figure", "value", box=None, header_style="bold")
    bots = figures.bots_by("status")
    table.add_row("bots", ", ".join(f"{s} {n}" for s, n in bots.items()) or "none")
    payments = figures.payments
    table.add_row(
        "payments",
        ", ".join(f"{p.status} {p.count} ({p.amount_fusd:g} fUSD)" for p in payments.by_status)
        or "none",
    )
    latency = payments.settle_latency
    if latency.samples:
        table.add_row("settle latency", f"p50 {latency.p50_s:.2f} s, p95 {latency.p95_s:.2f} s")
    content = figures.content
    table.add_row("content", ", ".join(f"{s} {n}" for s, n in content.by_state.items()) or "none")
    for channel in content.channels:
        table.add_row(
            f"channel {channel.name}",
            f"{channel.rate_per_s:.3g}/s of {channel.limit_per_s:g}/s, {channel.published} sent",
        )
    for task in figures.learning:
        value = "–" if task.champion_value is None else f"{task.champion_value:.4g}"
        table.add_row(
            f"learning {task.task}",
            f"champion {task.champion or '–'} {task.metric} {value}, "
            f"{task.promotions} promoted, {task.rolled_back} rolled back, "
            f"{task.live_rollbacks} live rollbacks",
        )
    for agent in figures.agents:
        _, calls, tokens, token_fusd, bought, budget, runs = agent_row(agent)
        table.add_row(
            f"agent {agent.bot}",
            f"{calls} model calls ({tokens} tokens, {token_fusd} fUSD), purchases {bought} fUSD,"
            f" budget used {budget}; runs ended today: {runs}",
        )
    if temporal.error:
        table.add_row("temporal", f"[yellow]not reachable:[/] {temporal.error}")
    else:
        for view in temporal.counts:
            table.add_row(view.label.lower(), str(view.count))
    console.print(table)
