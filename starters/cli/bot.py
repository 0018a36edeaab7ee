"""``fleet bot ...``: create, list, show and steer bots (each a BotLifecycleWorkflow)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from agentfleet.bots.model import BotKind, BotSpec, BotStatus, BotView, coerce_cli_params
from agentfleet.bots.params import parse_params
from agentfleet.errors import FleetError
from starters.cli.client import run_or_fail
from starters.cli.output import JsonOpt, console, emit_json, err_console, fail, read_database
from starters.cli.settings_arg import load_settings

app = typer.Typer(help="Bots: create, list, show, pause, resume, configure, retire.")

NameArg = Annotated[str, typer.Argument(help="The bot's name (a slug).")]
CREATE_WAIT_S = 120


def _print_view(view: BotView, as_json: bool) -> None:
    if as_json:
        emit_json(view.model_dump(mode="json"))
        return
    table = Table(show_header=False, box=None)
    for key, value in view.model_dump(mode="json").items():
        if value not in (None, "", {}):
            table.add_row(key, str(value))
    console.print(table)


@app.command("create")
def create(
    name: NameArg,
    kind: Annotated[BotKind, typer.Option("--kind", "-k", help="What the bot is.")],
    param: Annotated[
        list[str] | None, typer.Option("--param", "-p", help="k=v parameter (repeat).")
    ] = None,
    owner: Annotated[str, typer.Option(help="Who operates it (in its disclosure).")] = "fleet",
    description: Annotated[str, typer.Option(help="One line about the bot.")] = "",
    wait: Annotated[
        bool, typer.Option("--wait/--no-wait", help="Wait until it is active (or failed).")
    ] = True,
    import_key: Annotated[
        Path | None,
        typer.Option(
            "--import-key",
            help="Use this keystore file as the bot's wallet (password from "
            "FLEET_IMPORT_KEY_PASSWORD, else asked for).",
        ),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Create a bot: wallet, funds (dev chain), ERC-8004 registration, then active."""
    from agentfleet.netguard import UrlRule

    settings = load_settings(as_json)
    urls = UrlRule.of(settings)
    try:
        params = coerce_cli_params(param or [])
        parse_params(kind, params, urls=urls)
    except ValueError as exc:
        fail(str(exc), as_json=as_json)
    if import_key is not None:
        _import_wallet(settings, name, import_key, as_json)
    spec = BotSpec(name=name, kind=kind, owner=owner, description=description, params=params)

    async def work(client: Any) -> BotView:
        from clients.bots import create_bot, settle_bot

        view = await create_bot(client, spec, urls)
        with err_console.status(f"{name}: {view.status.value}") as status:
            return await settle_bot(
                client,
                view,
                CREATE_WAIT_S if wait else 0,
                lambda seen: status.update(f"{name}: {seen.status.value}"),
            )

    view = run_or_fail(settings, work, as_json)
    _print_view(view, as_json)
    if view.status is BotStatus.FAILED:
        raise typer.Exit(1)


def _import_wallet(settings: Any, name: str, path: Path, as_json: bool) -> None:
    """Store the keystore under the bot's label before its entity starts: provisioning then
    finds it and generates nothing."""
    import os

    from activities.identity import wallet_label
    from agentfleet import db, keystore

    password = os.environ.get("FLEET_IMPORT_KEY_PASSWORD")
    if password is None:
        if as_json:
            fail("set FLEET_IMPORT_KEY_PASSWORD to import a keystore with --json", as_json=True)
        password = typer.prompt(f"password of {path}", hide_input=True)
    try:
        db.upgrade_database(settings.effective_database_url)
        existing = keystore.address_of(settings, wallet_label(name))
        if existing is not None:
            fail(f"bot {name} already has a wallet ({existing}); nothing imported", as_json=as_json)
        address = keystore.import_keystore(settings, wallet_label(name), path, password)
    except FleetError as exc:
        fail(str(exc), as_json=as_json)
    if not as_json:
        err_console.print(f"imported wallet {address} for {name}")


@app.command("list")
def list_bots(
    kind: Annotated[BotKind | None, typer.Option(help="Only this kind.")] = None,
    status: Annotated[BotStatus | None, typer.Option(help="Only this status.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """The fleet as the database records it (works without Temporal)."""
    from clients.bots import bot_rows

    settings = load_settings(as_json)
    rows = read_database(
        "the bots table", lambda: bot_rows(settings.effective_database_url), as_json=as_json
    )
    rows = [
        r
        for r in rows
        if (kind is None or r.kind == kind.value) and (status is None or r.status == status.value)
    ]
    if as_json:
        emit_json([r.model_dump(mode="json") for r in rows])
        return
    table = Table("name", "kind", "status", "owner", "address", "agent", "reason")
    for r in rows:
        table.add_row(
            r.name,
            r.kind,
            r.status,
            r.owner,
            r.address or "",
            "" if r.agent_id is None else str(r.agent_id),
            r.reason or "",
        )
    console.print(table)


@app.command("show")
def show(name: NameArg, as_json: JsonOpt = False) -> None:
    """A bot's state, parameters, wallet, agent id and recent history."""
    settings = load_settings(as_json)

    async def work(client: Any) -> tuple[BotView, Any]:
        from clients.bots import bot_history, show_bot

        return await show_bot(client, name), await bot_history(client, name)

    view, history = run_or_fail(settings, work, as_json)
    if as_json:
        emit_json({**view.model_dump(mode="json"), "history": history.model_dump(mode="json")})
        return
    _print_view(view, False)
    for event in history.events[-10:]:
        console.print(f"[dim]{event.at:%Y-%m-%d %H:%M:%S}[/] {event.event} {event.detail}")


def _steer(name: str, action: str, as_json: bool, *args: Any) -> None:
    settings = load_settings(as_json)

    async def work(client: Any) -> BotView:
        from clients import bots as fleet

        result: BotView = await getattr(fleet, f"{action}_bot")(client, name, *args)
        return result

    view = run_or_fail(settings, work, as_json)
    _print_view(view, as_json)


@app.command("pause")
def pause(name: NameArg, as_json: JsonOpt = False) -> None:
    """Pause an active bot (it answers nothing but status while paused)."""
    _steer(name, "pause", as_json)


@app.command("resume")
def resume(name: NameArg, as_json: JsonOpt = False) -> None:
    """Resume a paused bot."""
    _steer(name, "resume", as_json)


@app.command("retry")
def retry(name: NameArg, as_json: JsonOpt = False) -> None:
    """Retry a failed bot from the step that failed."""
    _steer(name, "retry", as_json)


@app.command("retire")
def retire(
    name: NameArg,
    reason: Annotated[str, typer.Option(help="Why (kept in its history).")] = "retired by operator",
    as_json: JsonOpt = False,
) -> None:
    """Retire a bot for good: its schedules are deleted, its records and history kept."""
    _steer(name, "retire", as_json, reason)


@app.command("configure")
def configure(
    name: NameArg,
    params: Annotated[list[str], typer.Argument(help="k=v parameters.")],
    as_json: JsonOpt = False,
) -> None:
    """Change parameters (validated against the bot kind's model; bad ones change nothing)."""
    from agentfleet.netguard import UrlRule

    try:
        parsed = coerce_cli_params(params)
    except ValueError as exc:
        fail(str(exc), as_json=as_json)
    _steer(name, "configure", as_json, parsed, UrlRule.of(load_settings(as_json)))
