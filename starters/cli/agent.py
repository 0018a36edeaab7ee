"""``fleet agent ...``: agent bots' runs from a terminal.

Each run is an ``AgentRunWorkflow`` (``agent-{bot}-{key}``): ``ask`` starts one and follows it
live (every model call and tool call as it happens), ``runs`` and ``show`` read them, ``approve``
and ``deny`` decide a tool call that waits for a human (the run's ``decide`` update: a decision
it does not wait for is one line and changes nothing), ``usage`` sums tokens, their cost and
purchases against each agent's daily budget.
"""

from __future__ import annotations

import getpass
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from starters.cli.client import run_or_fail
from starters.cli.output import (
    JsonOpt,
    console,
    emit_json,
    err_console,
    fail,
    print_rows,
    read_database,
)
from starters.cli.settings_arg import load_settings

if TYPE_CHECKING:
    from temporalio.client import Client

    from agentfleet.agents.model import AgentRunView, UsageDay

# The agents' models and client are imported by each command: `fleet --help` and every other
# command do not pay for them (they pull in the database and Temporal's client).

app = typer.Typer(
    help="Agent bots: ask one a task, follow its runs, approve its tool calls, see its usage.",
    no_args_is_help=True,
)
RunArg = Annotated[str, typer.Argument(help="The run id (`fleet agent runs`).")]
ApproverOpt = Annotated[
    str | None, typer.Option("--approver", help="Who decides (default: your OS user name).")
]
COLOURS = {"completed": "green", "waiting_approval": "yellow", "running": "cyan"}


def _status(view: AgentRunView) -> str:
    return f"[{COLOURS.get(view.status.value, 'red')}]{view.status.value}[/]"


def fusd(units: int) -> str:
    from agentfleet.agents.model import fusd as as_fusd

    return as_fusd(units)


def print_run(view: AgentRunView, as_json: bool) -> None:
    if as_json:
        emit_json(view.model_dump(mode="json"))
        return
    table = Table(show_header=False, box=None)
    table.add_row("run", view.run_id)
    table.add_row("agent", f"{view.bot} (asked by {view.requested_by} via {view.source.value})")
    table.add_row("task", view.task)
    table.add_row("status", _status(view))
    table.add_row(
        "model",
        f"{view.model_calls} calls, {view.input_tokens} in / {view.output_tokens} out tokens, "
        f"{fusd(view.token_units)} fUSD",
    )
    if view.purchases:
        table.add_row(
            "purchases", f"{', '.join(view.purchases)} ({fusd(view.purchase_units)} fUSD)"
        )
    if view.posts:
        table.add_row("posts", ", ".join(view.posts) + " (waiting for approval: `fleet content`)")
    if view.pending is not None:
        p = view.pending
        table.add_row(
            "waiting",
            f"[yellow]{p.tool}[/] {p.arguments} - {p.why}; `fleet agent approve {view.run_id} "
            f"{p.approval_id}` (expires {p.expires_at:%H:%M:%S} UTC)",
        )
    if view.reason:
        table.add_row("reason", view.reason)
    console.print(table)
    if view.answer:
        console.rule("answer")
        console.print(view.answer, highlight=False, markup=False)


def _progress(seen: set[int]) -> Callable[[AgentRunView], None]:
    """Print each new step of a run once (the live view of ``ask`` and ``show --follow``)."""

    def show(view: AgentRunView) -> None:
        for index, step in enumerate(view.steps):
            if index in seen:
                continue
            seen.add(index)
            detail = f" - {step.detail}" if step.detail else ""
            err_console.print(f"[dim]{step.at:%H:%M:%S}[/] {step.kind} {step.name}{detail}")

    return show


@app.command("ask")
def ask(
    bot: Annotated[str, typer.Argument(help="The agent bot.")],
    task: Annotated[str, typer.Argument(help="What it should do, in words.")],
    wait: Annotated[
        float,
        typer.Option("--wait", help="Seconds to follow the run (0: print the run id and leave)."),
    ] = 120,
    as_json: JsonOpt = False,
) -> None:
    """Start a run of an agent on a task and follow it live until it ends or waits for a human.
    Refused with one line, starting nothing: unknown bot, not an agent, paused, budget spent,
    empty task."""
    from agentfleet.agents.model import RunSource
    from clients import agents

    settings = load_settings(as_json)
    seen: set[int] = set()
    follow = None if as_json else _progress(seen)

    async def work(client: Client) -> AgentRunView | str:
        run_id = await agents.ask(
            client, settings, bot, task, source=RunSource.CLI, requested_by=getpass.getuser()
        )
        if wait <= 0:
            return run_id
        if not as_json:
            err_console.print(f"run {run_id} started")
        return await agents.wait(client, run_id, wait, follow)

    outcome = run_or_fail(settings, work, as_json)
    if isinstance(outcome, str):
        if as_json:
            emit_json({"run_id": outcome})
        else:
            console.print(outcome)
        return
    print_run(outcome, as_json)
    if not agents.waiting(outcome) and not as_json:
        err_console.print(f"still running; `fleet agent show {outcome.run_id}` follows it")


@app.command("schedule")
def schedule(
    bot: Annotated[str, typer.Argument(help="The agent bot.")],
    task: Annotated[str, typer.Argument(help="What it should do each time.")],
    every: Annotated[str, typer.Option("--every", help="How often (30s, 15m, 1h, 1d).")] = "1h",
    as_json: JsonOpt = False,
) -> None:
    """A Temporal Schedule asking the agent the task every interval (`fleet schedule list`
    shows it; pause, resume and trigger it there). The same task again updates it."""
    from agentfleet.bots.market.feed import parse_interval
    from clients import agents

    settings = load_settings(as_json)
    try:
        interval = parse_interval(every)
    except ValueError:
        fail(f"--every {every!r} is not like 30s, 15m, 1h or 1d", 2, as_json=as_json)
    view = run_or_fail(
        settings, lambda client: agents.schedule(client, settings, bot, task, interval), as_json
    )
    if as_json:
        emit_json(view.model_dump(mode="json"))
        return
    console.print(f"{view.id}: {view.note} (next run {view.next_run:%Y-%m-%d %H:%M:%S} UTC)")


@app.command("show")
def show(run_id: RunArg, as_json: JsonOpt = False) -> None:
    """One run: status, steps, tokens and cost, purchases, posts, what it waits for."""
    from clients import agents

    settings = load_settings(as_json)
    view = run_or_fail(settings, lambda client: agents.show(client, run_id), as_json)
    if not as_json:
        _progress(set())(view)
    print_run(view, as_json)


def _runs_table(rows: Sequence[AgentRunView]) -> Table:
    table = Table(header_style="bold")
    table.add_column("run", overflow="fold", min_width=20)  # the id `show` takes, whole
    for name in ("agent", "status", "calls", "cost fUSD", "task"):
        table.add_column(name)
    for view in rows:
        table.add_row(
            view.run_id,
            view.bot,
            _status(view),
            str(view.model_calls),
            fusd(view.token_units + view.purchase_units),
            view.task[:40],
        )
    return table


@app.command("runs")
def runs(
    bot: Annotated[str | None, typer.Option("--bot", help="Only this agent's runs.")] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, max=200)] = 20,
    as_json: JsonOpt = False,
) -> None:
    """The latest runs, newest first."""
    from clients import agents

    settings = load_settings(as_json)
    views = run_or_fail(settings, lambda client: agents.runs(client, bot, limit), as_json)
    print_rows(views, as_json, _runs_table, 'no agent runs yet; `fleet agent ask BOT "..."`')


def _decide(
    run_id: str, approval: str, approved: bool, approver: str | None, note: str, as_json: bool
) -> None:
    from agentfleet.agents.model import ApprovalDecision
    from clients import agents

    settings = load_settings(as_json)
    try:
        decision = ApprovalDecision(
            approval_id=approval,
            approver=approver or getpass.getuser(),
            approved=approved,
            note=note,
        )
    except ValueError as exc:
        fail(f"invalid decision: {str(exc).splitlines()[0]}", as_json=as_json)
    view = run_or_fail(settings, lambda client: agents.decide(client, run_id, decision), as_json)
    print_run(view, as_json)


@app.command("approve")
def approve(
    run_id: RunArg,
    approval: Annotated[str, typer.Argument(help="The approval id the run waits for.")],
    approver: ApproverOpt = None,
    note: Annotated[str, typer.Option("--note", help="Why (kept in the audit trail).")] = "",
    as_json: JsonOpt = False,
) -> None:
    """Let the tool call the run waits for go ahead (audited with your name)."""
    _decide(run_id, approval, True, approver, note, as_json)


@app.command("deny")
def deny(
    run_id: RunArg,
    approval: Annotated[str, typer.Argument(help="The approval id the run waits for.")],
    approver: ApproverOpt = None,
    note: Annotated[str, typer.Option("--note", help="Why (the agent reads it).")] = "",
    as_json: JsonOpt = False,
) -> None:
    """Refuse the tool call the run waits for; the agent is told and goes on without it."""
    _decide(run_id, approval, False, approver, note, as_json)


def _usage_table(rows: Sequence[UsageDay]) -> Table:
    table = Table(
        "agent",
        "calls",
        "tokens in",
        "tokens out",
        "tokens fUSD",
        "purchases fUSD",
        "budget used",
        header_style="bold",
    )
    for row in rows:
        spent = row.token_units + row.purchase_units
        used = f"{fusd(spent)} / {fusd(row.budget_units)}" if row.budget_units else fusd(spent)
        table.add_row(
            row.bot,
            str(row.model_calls),
            str(row.input_tokens),
            str(row.output_tokens),
            fusd(row.token_units),
            fusd(row.purchase_units),
            used,
        )
    return table


@app.command("usage")
def usage(
    bot: Annotated[str | None, typer.Option("--bot", help="Only this agent.")] = None,
    days: Annotated[int, typer.Option("--days", min=1, max=366, help="UTC days back.")] = 1,
    as_json: JsonOpt = False,
) -> None:
    """Model calls, tokens, their cost and settled purchases per agent, against its budget."""
    from clients import agents

    settings = load_settings(as_json)
    rows = read_database("agent usage", lambda: agents.usage(settings, bot, days), as_json=as_json)
    print_rows(rows, as_json, _usage_table, "no agents yet; `fleet bot create NAME --kind agent`")
