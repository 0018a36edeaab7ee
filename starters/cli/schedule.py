"""``fleet schedule ...``: the fleet's Temporal Schedules (the health check every few minutes).

``ensure`` creates (or updates) the health schedule; ``list`` shows every schedule of the
namespace; ``pause``, ``resume`` and ``trigger`` act on one by id. Unknown ids and an unreachable
server are one-line errors.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Annotated, Any, TypeVar

import typer
from rich.table import Table

from starters.cli.client import run_or_fail
from starters.cli.output import JsonOpt, console, emit_json, fail
from starters.cli.settings_arg import load_settings

app = typer.Typer(
    help="Temporal Schedules: the fleet health check; list, pause, resume, trigger.",
    no_args_is_help=True,
)

IdArg = Annotated[str, typer.Argument(help="The schedule's id (`fleet schedule list`).")]
T = TypeVar("T")


def _call(as_json: bool, work: Callable[[Any], Awaitable[T]]) -> T:
    return run_or_fail(load_settings(as_json), work, as_json)


def _when(moment: datetime | None) -> str:
    return "" if moment is None else f"{moment:%Y-%m-%d %H:%M:%S}"


def _print(views: list[Any], as_json: bool) -> None:
    if as_json:
        emit_json([view.model_dump(mode="json") for view in views])
        return
    table = Table()
    table.add_column("id", no_wrap=True)  # an id is what people copy: never cut it
    for name in ("state", "every", "next run", "last run", "result", "note"):
        table.add_column(name)
    for view in views:
        table.add_row(
            view.id,
            view.state,
            view.every or "",
            _when(view.next_run),
            _when(view.last_run),
            view.last_result or "",
            view.note or "",
        )
    console.print(table)


def _one(view: Any, as_json: bool) -> None:
    if as_json:
        emit_json(view.model_dump(mode="json"))
        return
    _print([view], False)


@app.command("list")
def list_schedules(as_json: JsonOpt = False) -> None:
    """Every schedule: paused or active, interval, next run, how the last run ended."""
    from clients import schedules

    _print(_call(as_json, schedules.list_schedules), as_json)


@app.command("ensure")
def ensure(
    every: Annotated[
        str, typer.Option("--every", help="How often the health check runs (30s, 5m, 1h).")
    ] = "5m",
    as_json: JsonOpt = False,
) -> None:
    """Create the health-check schedule `fleet-health` (or set its interval); idempotent."""
    from agentfleet.bots.market.feed import parse_interval
    from clients import schedules

    try:
        interval = parse_interval(every)
    except ValueError:
        fail(f"--every {every!r} is not like 30s, 5m or 1h", 2, as_json=as_json)

    async def work(client: Any) -> Any:
        return await schedules.ensure_health_schedule(client, every=interval)

    _one(_call(as_json, work), as_json)


@app.command("pause")
def pause(
    schedule_id: IdArg,
    note: Annotated[str | None, typer.Option("--note", help="Why (shown in the list).")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Pause a schedule: no run starts until it is resumed."""
    from clients import schedules

    async def work(client: Any) -> Any:
        return await schedules.pause_schedule(client, schedule_id, note)

    _one(_call(as_json, work), as_json)


@app.command("resume")
def resume(
    schedule_id: IdArg,
    note: Annotated[str | None, typer.Option("--note", help="Why (shown in the list).")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Resume a paused schedule."""
    from clients import schedules

    async def work(client: Any) -> Any:
        return await schedules.unpause_schedule(client, schedule_id, note)

    _one(_call(as_json, work), as_json)


@app.command("trigger")
def trigger(schedule_id: IdArg, as_json: JsonOpt = False) -> None:
    """Start one run now (also while paused)."""
    from clients import schedules

    async def work(client: Any) -> Any:
        return await schedules.trigger_schedule(client, schedule_id)

    _one(_call(as_json, work), as_json)
