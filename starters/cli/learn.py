"""``fleet learn ...``: federated learning rounds across the fleet's bots.

``run`` starts a ``LearningCampaignWorkflow`` (rounds as child ``LearningRoundWorkflow``s) and
draws its progress; ``status``, ``models`` and ``rollback`` read and steer the model registry.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from agentfleet.errors import FleetError
from starters.cli import learn_views as views
from starters.cli.client import run_or_fail, run_with_client
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

app = typer.Typer(help="Learning rounds: run, status, models, rollback.")

TaskOpt = Annotated[str, typer.Option("--task", "-t", help="The learning task: digits, forecast.")]
CAMPAIGN_WAIT_S = 3600
PROGRESS_COLUMNS = (
    TextColumn("{task.description}"),
    BarColumn(),
    MofNCompleteColumn(),
    TimeElapsedColumn(),
)


def _check_task(task: str, as_json: bool) -> None:
    from agentfleet.learning.tasks.builtin import task_named

    try:
        task_named(task)
    except ValueError as exc:
        fail(str(exc), as_json=as_json)


@app.command("run")
def run(
    task: TaskOpt,
    rounds: Annotated[int, typer.Option("--rounds", min=1, max=1000)] = 10,
    strategy: Annotated[
        str, typer.Option("--strategy", help="fedavg, median or trimmed_mean.")
    ] = "fedavg",
    participants: Annotated[
        int | None, typer.Option("--participants", min=1, help="At most this many bots a round.")
    ] = None,
    min_participants: Annotated[int, typer.Option("--min-participants", min=1)] = 2,
    margin: Annotated[
        float, typer.Option("--margin", min=0, help="How much a candidate must win by.")
    ] = 0.0,
    target: Annotated[
        float | None, typer.Option("--target", help="Stop once the champion reaches this.")
    ] = None,
    patience: Annotated[
        int | None,
        typer.Option("--patience", min=1, help="Stop after this many rounds without promotion."),
    ] = None,
    seed: Annotated[int, typer.Option("--seed", min=0)] = 0,
    train_from: Annotated[
        str,
        typer.Option("--train-from", help="candidate (the latest, promoted or not) or champion."),
    ] = "candidate",
    drift_correction: Annotated[
        bool,
        typer.Option(
            "--drift-correction/--no-drift-correction",
            help="Control variates that keep non-IID bots on course.",
        ),
    ] = True,
    wait: Annotated[bool, typer.Option("--wait/--no-wait", help="Follow it to the end.")] = True,
    as_json: JsonOpt = False,
) -> None:
    """Run learning rounds: each bot trains on its own data, the fleet aggregates, evaluates,
    promotes the better model or keeps the champion."""
    from agentfleet.learning import registry
    from agentfleet.learning.rounds import (
        CampaignOrder,
        CampaignView,
        RoundOrder,
        TrainFrom,
        campaign_workflow_id,
    )
    from agentfleet.learning.strategies import strategy_named
    from clients import learning

    settings = load_settings(as_json)
    _check_task(task, as_json)
    if train_from not in {choice.value for choice in TrainFrom}:
        fail(f"--train-from must be candidate or champion, not {train_from!r}", as_json=as_json)
    try:
        strategy_named(strategy)
    except ValueError as exc:
        fail(str(exc), as_json=as_json)
    url = settings.effective_database_url
    first = read_database(
        "learning rounds", lambda: registry.next_round(url, task), as_json=as_json
    )
    order = CampaignOrder(
        task=task,
        rounds=rounds,
        first_round=first,
        target=target,
        patience=patience,
        round=RoundOrder(
            task=task,
            round=first,
            strategy=strategy,
            max_participants=participants,
            min_participants=min_participants,
            margin=margin,
            seed=seed,
            train_from=TrainFrom(train_from),
            drift_correction=drift_correction,
        ),
    )

    async def work(client: Any) -> CampaignView:
        handle = await learning.start_campaign(client, order)
        if not wait:
            return CampaignView(task=task, rounds_planned=rounds)
        with Progress(*PROGRESS_COLUMNS, console=err_console, transient=True) as progress:
            bar = progress.add_task(f"{task} rounds", total=rounds)

            def show(view: CampaignView) -> None:
                last = view.rounds[-1]
                shown = "" if last.metric is None else f" {view.primary} {last.metric:.4f}"
                description = f"{task} round {last.round}{shown}"
                progress.update(bar, completed=len(view.rounds), description=description)

            result = await learning.follow_campaign(handle, CAMPAIGN_WAIT_S, show)
        if result is None:
            raise FleetError(
                f"{handle.id} still runs; `fleet learn status --task {task}` follows it"
            )
        return result

    view = run_or_fail(settings, work, as_json)
    if as_json:
        emit_json(view.model_dump(mode="json") | {"campaign": campaign_workflow_id(task, first)})
        return
    if not wait:
        console.print(f"started {campaign_workflow_id(task, first)}")
        return
    console.print(views.campaign_table(view))
    console.print(f"champion: {view.champion} ({view.stopped})")


@app.command("status")
def status(
    task: Annotated[str | None, typer.Option("--task", "-t")] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, max=1000)] = 20,
    as_json: JsonOpt = False,
) -> None:
    """Recent rounds: who took part, who was dropped or excluded, what was decided."""
    from agentfleet.learning import registry

    settings = load_settings(as_json)
    url = settings.effective_database_url
    rows = read_database(
        "learning rounds", lambda: registry.list_rounds(url, task, limit), as_json=as_json
    )
    print_rows(
        rows,
        as_json,
        views.rounds_table,
        "no rounds yet: `fleet learn run --task digits --rounds 5`",
    )


@app.command("models")
def models(task: TaskOpt, as_json: JsonOpt = False) -> None:
    """The registry of a task: every version, its parent, metrics and status."""
    from agentfleet.learning import registry

    settings = load_settings(as_json)
    _check_task(task, as_json)
    url = settings.effective_database_url
    rows = read_database(
        "the model registry", lambda: registry.list_versions(url, task), as_json=as_json
    )
    print_rows(
        rows,
        as_json,
        views.versions_table,
        f"no {task} models yet: `fleet learn run --task {task}`",
    )


@app.command("rollback")
def rollback(
    task: TaskOpt,
    to: Annotated[str, typer.Option("--to", help="The version to serve again, e.g. digits-v3.")],
    as_json: JsonOpt = False,
) -> None:
    """Make an earlier version the champion again; every bot serving the task is told."""
    from agentfleet.learning import registry
    from clients import learning

    settings = load_settings(as_json)
    _check_task(task, as_json)
    url = settings.effective_database_url
    try:
        target, bots = read_database(
            "the model registry", lambda: registry.rollback(url, task, to), as_json=as_json
        )
    except ValueError as exc:
        fail(str(exc), as_json=as_json)

    async def work(client: Any) -> list[str]:
        return await learning.announce_model(client, bots, target.version_id)

    try:
        told = run_with_client(settings, work)
    except FleetError as exc:
        fail(f"{target.version_id} is the champion again, but {exc}", as_json=as_json)
    if as_json:
        emit_json({"champion": target.version_id, "bots": bots, "told": told})
        return
    console.print(f"{target.version_id} is the {task} champion again; {len(told)} bots told")


@app.command("schedule")
def schedule(
    task: TaskOpt,
    every: Annotated[str, typer.Option("--every", help="How often: 90s, 15m, 1h, 1d.")] = "1h",
    strategy: Annotated[str, typer.Option("--strategy")] = "fedavg",
    participants: Annotated[int | None, typer.Option("--participants", min=1)] = None,
    as_json: JsonOpt = False,
) -> None:
    """A Temporal Schedule (``learning-{task}``) that runs one round every ``--every``; pause,
    resume or trigger it with ``fleet schedule``."""
    from agentfleet.content.model import parse_duration
    from agentfleet.learning.rounds import CampaignOrder, RoundOrder
    from agentfleet.learning.strategies import strategy_named
    from clients.schedules import ScheduleView, ensure_learning_schedule

    settings = load_settings(as_json)
    _check_task(task, as_json)
    try:
        strategy_named(strategy)
        interval = parse_duration(every)
    except ValueError as exc:
        fail(str(exc), as_json=as_json)
    order = CampaignOrder(
        task=task,
        rounds=1,
        first_round=0,
        round=RoundOrder(task=task, round=1, strategy=strategy, max_participants=participants),
    )

    async def work(client: Any) -> ScheduleView:
        return await ensure_learning_schedule(client, order, interval)

    view = run_or_fail(settings, work, as_json)
    if as_json:
        emit_json(view.model_dump(mode="json"))
        return
    console.print(f"schedule {view.id}: a {task} round every {view.every} ({view.state})")


@app.command("share")
def share(
    source: Annotated[str, typer.Option("--from", help="The bot that shares what it sees.")],
    symbol: Annotated[
        str | None, typer.Option("--symbol", help="Default: the bot's own symbol.")
    ] = None,
    first_wave: Annotated[int, typer.Option("--first-wave", min=1)] = 3,
    min_success: Annotated[float, typer.Option("--min-success", min=0, max=1)] = 0.5,
    as_json: JsonOpt = False,
) -> None:
    """A bot shares the pattern it sees (a regime, with its confidence); bots of its kind check
    it on their own data, and it reaches them all only if the first wave confirms it."""
    import secrets

    from agentfleet.bots.model import check_name
    from agentfleet.learning.patterns import PatternView, ShareOrder
    from clients import learning

    settings = load_settings(as_json)
    try:
        check_name(source)
    except ValueError as exc:
        fail(f"--from: {exc}", as_json=as_json)
    order = ShareOrder(
        pattern_id=f"pattern-{source}-{secrets.token_hex(4)}",
        source=source,
        symbol=symbol.upper() if symbol else None,
        first_wave=first_wave,
        min_success=min_success,
    )

    async def work(client: Any) -> PatternView:
        with err_console.status(f"{order.pattern_id}: validating"):
            return await learning.share_pattern(client, order)

    view = run_or_fail(settings, work, as_json)
    if as_json:
        emit_json(view.model_dump(mode="json"))
        return
    console.print(views.share_line(view, source))


@app.command("patterns")
def list_patterns(
    limit: Annotated[int, typer.Option("--limit", min=1, max=1000)] = 20,
    as_json: JsonOpt = False,
) -> None:
    """Shared patterns and their validated success rate across the fleet."""
    from agentfleet.learning import patterns

    settings = load_settings(as_json)
    url = settings.effective_database_url
    rows = read_database("patterns", lambda: patterns.list_patterns(url, limit), as_json=as_json)
    print_rows(
        rows,
        as_json,
        views.patterns_table,
        "no patterns yet: `fleet learn share --from forecaster-1`",
    )


@app.command("plot")
def plot(
    task: TaskOpt,
    output: Annotated[
        Path, typer.Option("--output", "-o", help="The PNG to write.", dir_okay=False)
    ] = Path("rounds.png"),
    as_json: JsonOpt = False,
) -> None:
    """Accuracy (or error) and loss per round, promoted rounds and the champion marked."""
    from agentfleet.learning import registry
    from agentfleet.learning.plot import render_rounds

    settings = load_settings(as_json)
    _check_task(task, as_json)
    url = settings.effective_database_url
    rounds = read_database(
        "learning rounds", lambda: registry.list_rounds(url, task, limit=10_000), as_json=as_json
    )
    versions = read_database(
        "the model registry", lambda: registry.list_versions(url, task), as_json=as_json
    )
    try:
        written = render_rounds(rounds, versions, output, task=task)
    except (ValueError, OSError) as exc:
        fail(str(exc).splitlines()[0], as_json=as_json)
    if as_json:
        emit_json({"task": task, "path": str(written), "rounds": len(rounds)})
        return
    console.print(f"wrote {written} ({len(rounds)} rounds of {task})")
