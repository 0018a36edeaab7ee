"""``fleet command forecast|status|performance|tune``: one skill to many bots, one answer;
``fleet command answers ID``: a command's answers, page by page.

Each runs a FleetCommandWorkflow (``command-{id}``) and shows a live progress bar (the workflow's
``progress`` query) until the aggregated answer arrives: the summary and the first
:data:`PAGE_SIZE` answers (the rest: ``fleet command answers ID --page 2`` ...); with ``--json``,
every answer. ``--id`` makes it idempotent: the same id again shows the first run's answer.
Ctrl-C leaves the command running in Temporal. A large command's answers are read from the
fleet's database (``FLEET_DATABASE_URL``), a small one's from its result.
"""

from __future__ import annotations

import math
import re
import secrets
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer
from pydantic import ValidationError
from rich.markup import escape
from rich.table import Table

from agentfleet.bots.model import BotKind, ForecastRequest, Skill
from agentfleet.errors import FleetError
from starters.cli.client import run_or_fail
from starters.cli.output import JsonOpt, console, emit_json, err_console, fail
from starters.cli.settings_arg import load_settings

if TYPE_CHECKING:
    from temporalio.client import Client

    from agentfleet.bots.commands import (
        BotAnswer,
        CommandProgress,
        FleetCommand,
        FleetCommandResult,
        Targets,
    )
    from agentfleet.settings import Settings

T = TypeVar("T")

app = typer.Typer(
    help="Send one skill to many bots at once (forecast, status, performance, tune).",
    no_args_is_help=True,
)

AllOpt = Annotated[bool, typer.Option("--all", help="Every bot.")]
KindOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--kind", help=f"Bots of this kind ({', '.join(BotKind)}; repeat).", show_default=False
    ),
]
BotOpt = Annotated[
    list[str] | None, typer.Option("--bot", help="This bot (repeat).", show_default=False)
]
QueryOpt = Annotated[
    str | None,
    typer.Option(
        "--query",
        help="Temporal list filter on BotKind, BotStatus, BotOwner, BotName, e.g. "
        "'BotKind = \"forecaster\"'.",
        show_default=False,
    ),
]
TimeoutOpt = Annotated[
    float, typer.Option("--timeout", help="Seconds each bot has to answer.", min=0.1, max=600)
]
ConcurrencyOpt = Annotated[
    int, typer.Option("--concurrency", help="Bots called at once per batch.", min=1, max=1000)
]
IdOpt = Annotated[
    str | None,
    typer.Option(
        "--id",
        help="Command id (same id again: the same answer). Default: generated.",
        show_default=False,
    ),
]
WINDOW = re.compile(r"^[1-9][0-9]*[mhd]$")
POLL_S = 0.2
PAGE_SIZE = 50
"""Answers a command prints after its summary; ``fleet command answers`` shows the others."""


def _targets(
    all_bots: bool,
    kinds: list[str] | None,
    bots: list[str] | None,
    query: str | None,
    *,
    default_all: bool,
    as_json: bool,
) -> Targets:
    from agentfleet.bots.commands import Targets

    chosen = sum([all_bots, bool(kinds), bool(bots), bool(query)])
    if chosen == 0 and default_all:
        return Targets(all=True)
    if chosen != 1:
        fail(
            "choose the bots with one of --all, --kind K, --bot NAME or --query Q",
            2,
            as_json=as_json,
        )
    parsed_kinds: list[BotKind] = []
    for kind in kinds or []:
        try:
            parsed_kinds.append(BotKind(kind))
        except ValueError:
            fail(f"unknown kind {kind!r}; use one of {', '.join(BotKind)}", 2, as_json=as_json)
    return Targets(all=all_bots, kinds=parsed_kinds, names=list(bots or []), query=query)


def _command(
    skill: Skill,
    args: dict[str, Any],
    targets: Targets,
    timeout: float,
    concurrency: int,
    command_id: str | None,
    as_json: bool,
) -> FleetCommand:
    from agentfleet.bots.commands import COMMAND_ID_PATTERN, FleetCommand

    if command_id is not None and not re.match(COMMAND_ID_PATTERN, command_id):
        fail(
            f"command id {command_id!r} must be letters, digits, '.', '_' or '-' (1-100)",
            2,
            as_json=as_json,
        )
    generated = f"{skill.value}-{datetime.now(UTC):%Y%m%d-%H%M%S}-{secrets.token_hex(3)}"
    return FleetCommand(
        command_id=command_id or generated,
        skill=skill,
        args=args,
        targets=targets,
        per_bot_timeout_s=timeout,
        concurrency=concurrency,
    )


async def _execute(client: Client, command: FleetCommand, live: bool) -> FleetCommandResult:
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        SpinnerColumn,
        TextColumn,
        TimeElapsedColumn,
    )
    from temporalio.service import RPCError

    from clients.commands import command_result, follow_command, start_command

    try:
        handle = await start_command(client, command)
    except RPCError as exc:
        raise FleetError(f"could not start command {command.command_id}: {exc.message}") from exc
    if not live:
        return await command_result(handle)
    columns = (
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=err_console, transient=True) as bar:
        task = bar.add_task(f"{command.skill.value}: resolving targets", total=None)

        def show(progress: CommandProgress | None) -> None:
            if progress is None:
                bar.update(task, description="waiting for a worker (`fleet up` / `fleet worker`)")
                return
            bar.update(
                task,
                total=progress.total or None,
                completed=progress.answered,
                description=f"{command.skill.value}: {progress.ok} ok, {progress.failed} "
                f"failed, {progress.skipped + progress.unknown} skipped",
            )

        return await follow_command(client, handle, POLL_S, show)


def _run(settings: Settings, command: FleetCommand, as_json: bool) -> None:
    from clients.commands import all_answers, answers_page

    live = not as_json and err_console.is_terminal
    try:
        result = run_or_fail(settings, lambda client: _execute(client, command, live), as_json)
    except KeyboardInterrupt:
        fail(
            f"stopped waiting; command {command.command_id} keeps running "
            f"(same command with --id {command.command_id} shows its answer)",
            130,
            as_json=as_json,
        )
    url = settings.effective_database_url
    if as_json:
        answers = _read(result, lambda: all_answers(url, result), as_json)
        _check_kept(result, answers, as_json)
        _emit(result, answers)
        return
    _print_summary(result)
    first = _read(result, lambda: answers_page(url, result, 0, PAGE_SIZE), as_json)
    _check_kept(result, first, as_json)
    _print_answers(result, first)
    more = result.answer_count - len(first)
    if more > 0:
        console.print(
            f"... and {more} more: fleet command answers {escape(result.command_id)} --page 2",
            highlight=False,
        )


def _read(result: FleetCommandResult, read: Callable[[], T], as_json: bool) -> T:
    """``read()`` the command's answers, or one line on why they cannot be read here."""
    try:
        return read()
    except Exception as exc:  # noqa: BLE001 - the database unreachable, wrong URL, no schema
        lines = str(exc).strip().splitlines()
        reason = lines[0] if lines else type(exc).__name__
        fail(
            f"command {result.command_id} answered, but its answers are stored in the fleet's "
            f"database and cannot be read here ({reason}); set FLEET_DATABASE_URL and run "
            f"`fleet command answers {result.command_id}`",
            as_json=as_json,
        )


def _check_kept(result: FleetCommandResult, read: list[BotAnswer], as_json: bool) -> None:
    """One line when a stored command's answers were deleted (after FLEET_COMMAND_ANSWERS_DAYS)
    or are in another database."""
    if result.answers_ref is not None and result.answer_count and not read:
        fail(
            f"the answers of command {result.command_id} are not in this database (kept "
            "FLEET_COMMAND_ANSWERS_DAYS days, in the workers' FLEET_DATABASE_URL)",
            as_json=as_json,
        )


def _emit(result: FleetCommandResult, answers: list[BotAnswer]) -> None:
    body = result.model_dump(mode="json")
    body["answers"] = [answer.model_dump(mode="json") for answer in answers]
    emit_json({"ok": True, **body})


def _print_summary(result: FleetCommandResult) -> None:
    summary = result.summary
    console.print(
        f"[bold]{result.skill.value}[/] to {escape(result.targets)}: {summary.ok} ok, "
        f"{summary.failed} failed, {summary.skipped} skipped, {summary.unknown} unknown "
        f"in {result.elapsed_s:.2f} s [dim](command {escape(result.command_id)})[/]",
        highlight=False,
    )
    forecast = summary.forecast
    if forecast is not None:
        lead = forecast.direction.value if forecast.direction else "no majority"
        console.print(
            f"forecasts: {forecast.count}  mean {forecast.mean:,.4f}  median "
            f"{forecast.median:,.4f}  min {forecast.min:,.4f}  max {forecast.max:,.4f}  spread "
            f"{forecast.spread:,.4f}  stdev {forecast.stdev:,.4f}  agreement "
            f"{forecast.agreement:.0%} {lead} ({forecast.up} up, {forecast.down} down, "
            f"{forecast.flat} flat)",
            highlight=False,
        )
    performance = summary.performance
    if performance is not None:
        hit = "-" if performance.hit_rate is None else f"{performance.hit_rate:.0%}"
        mae = "-" if performance.mean_abs_error is None else f"{performance.mean_abs_error:,.4f}"
        console.print(
            f"performance: {performance.bots} bots, {performance.forecasts} forecasts, "
            f"mean hit rate {hit}, mean MAE {mae}",
            highlight=False,
        )
    for failure in result.failed_batches:
        console.print(
            f"[red]{failure.bots} bots ({escape(failure.first)} to {escape(failure.last)}) have "
            f"no answer: {escape(failure.reason)}[/]",
            highlight=False,
        )


def _print_answers(result: FleetCommandResult, answers: list[BotAnswer]) -> None:
    from agentfleet.bots.commands import AnswerOutcome, describe_answer

    if not answers:
        if not result.answer_count and not result.failed_batches:
            console.print("no bot matched the targets")
        return
    table = Table("bot", "kind", "status", "answer", "ms", box=None, header_style="bold")
    for answer in answers:
        if answer.ok:
            shown = escape(describe_answer(result.skill, answer.data))
        else:
            colour = "red" if answer.outcome is AnswerOutcome.FAILED else "yellow"
            shown = f"[{colour}]{escape(answer.error or answer.outcome.value)}[/]"
        table.add_row(
            answer.name,
            answer.kind.value if answer.kind else "-",
            answer.status,
            shown,
            f"{answer.elapsed_ms:.0f}" if answer.elapsed_ms else "",
        )
    console.print(table)


@app.command("answers")
def answers(
    command_id: Annotated[str, typer.Argument(help="The command's id (shown with its answer).")],
    page: Annotated[int, typer.Option("--page", help="Which page, from 1.", min=1)] = 1,
    size: Annotated[
        int, typer.Option("--size", help="Answers per page.", min=1, max=1000)
    ] = PAGE_SIZE,
    as_json: JsonOpt = False,
) -> None:
    """Show a command's answers, one page at a time (waits while the command runs)."""
    from agentfleet.bots.commands import COMMAND_ID_PATTERN
    from clients.commands import answers_page, finished_command

    if not re.match(COMMAND_ID_PATTERN, command_id):
        fail(f"{command_id!r} is not a command id", 2, as_json=as_json)
    settings = load_settings(as_json)
    result = run_or_fail(settings, lambda client: finished_command(client, command_id), as_json)
    count = result.answer_count
    pages = max(1, math.ceil(count / size))
    if page > pages:
        fail(
            f"page {page} is past the last one, {pages} ({size} answers a page)",
            2,
            as_json=as_json,
        )
    url = settings.effective_database_url
    shown = _read(result, lambda: answers_page(url, result, (page - 1) * size, size), as_json)
    _check_kept(result, shown, as_json)
    if as_json:
        emit_json(
            {
                "ok": True,
                "command_id": result.command_id,
                "skill": result.skill.value,
                "page": page,
                "pages": pages,
                "size": size,
                "count": count,
                "answers": [answer.model_dump(mode="json") for answer in shown],
            }
        )
        return
    _print_answers(result, shown)
    console.print(
        f"page {page} of {pages} ({count} answers, {size} a page; command "
        f"{escape(result.command_id)})",
        highlight=False,
    )


@app.command("forecast")
def forecast(
    symbol: Annotated[str, typer.Argument(help="Symbol, e.g. BTCUSDT.")],
    horizon: Annotated[str, typer.Argument(help="Horizon: 15m, 1h, 1d ...")] = "1h",
    all_bots: AllOpt = False,
    kind: KindOpt = None,
    bot: BotOpt = None,
    query: QueryOpt = None,
    timeout: TimeoutOpt = 3.0,
    concurrency: ConcurrencyOpt = 50,
    command_id: IdOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Ask the bots for a forecast; summary: mean, median, spread and agreement.

    Paused, retired and other bots that take no commands are reported, never called; a bot that
    does not answer within --timeout is reported as failed.
    """
    try:
        request = ForecastRequest(symbol=symbol, horizon=horizon)
    except ValidationError as exc:
        field = str(exc.errors()[0]["loc"][0])
        shown = symbol if field == "symbol" else horizon
        hint = "like BTCUSDT (A-Z, 0-9)" if field == "symbol" else "like 15m, 1h or 1d"
        fail(f"{field} {shown!r} is not valid: use one {hint}", 2, as_json=as_json)
    targets = _targets(all_bots, kind, bot, query, default_all=False, as_json=as_json)
    settings = load_settings(as_json)
    command = _command(
        Skill.FORECAST, request.model_dump(), targets, timeout, concurrency, command_id, as_json
    )
    _run(settings, command, as_json)


@app.command("status")
def status(
    all_bots: AllOpt = False,
    kind: KindOpt = None,
    bot: BotOpt = None,
    query: QueryOpt = None,
    timeout: TimeoutOpt = 3.0,
    concurrency: ConcurrencyOpt = 50,
    command_id: IdOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Ask the bots for their status (all bots unless targets are given)."""
    targets = _targets(all_bots, kind, bot, query, default_all=True, as_json=as_json)
    settings = load_settings(as_json)
    command = _command(Skill.STATUS, {}, targets, timeout, concurrency, command_id, as_json)
    _run(settings, command, as_json)


@app.command("performance")
def performance(
    all_bots: AllOpt = False,
    kind: KindOpt = None,
    bot: BotOpt = None,
    query: QueryOpt = None,
    window: Annotated[str, typer.Option("--window", help="Look-back: 12h, 7d ...")] = "7d",
    timeout: TimeoutOpt = 3.0,
    concurrency: ConcurrencyOpt = 50,
    command_id: IdOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Ask the bots how their forecasts did over --window (all bots unless targets are given)."""
    if not WINDOW.match(window):
        fail(f"window {window!r} is not valid: use one like 12h or 7d", 2, as_json=as_json)
    targets = _targets(all_bots, kind, bot, query, default_all=True, as_json=as_json)
    settings = load_settings(as_json)
    command = _command(
        Skill.PERFORMANCE, {"window": window}, targets, timeout, concurrency, command_id, as_json
    )
    _run(settings, command, as_json)


@app.command("tune")
def tune(
    all_bots: AllOpt = False,
    kind: KindOpt = None,
    bot: BotOpt = None,
    query: QueryOpt = None,
    param: Annotated[
        list[str] | None,
        typer.Option(
            "--param", help="Score these parameters (key=value, repeat); default: a grid of alpha."
        ),
    ] = None,
    timeout: TimeoutOpt = 3.0,
    concurrency: ConcurrencyOpt = 50,
    command_id: IdOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Ask the bots to suggest better parameters, scored by backtest error (all bots unless
    targets are given). Nothing is applied: `fleet bot configure` does that."""
    from agentfleet.bots.model import coerce_cli_params

    try:
        asked = coerce_cli_params(param or [])
    except ValueError as exc:
        fail(str(exc), 2, as_json=as_json)
    targets = _targets(all_bots, kind, bot, query, default_all=True, as_json=as_json)
    settings = load_settings(as_json)
    args = {"params": asked} if asked else {}
    command = _command(Skill.TUNE, args, targets, timeout, concurrency, command_id, as_json)
    _run(settings, command, as_json)
