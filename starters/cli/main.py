"""The ``fleet`` command line (Typer + Rich). Every command takes ``--json``."""

from __future__ import annotations

from typing import Annotated

import typer

from agentfleet.errors import FleetError
from starters.cli import (
    agent,
    alerts,
    bot,
    chain,
    channel,
    codec,
    command,
    content,
    data,
    facilitator,
    learn,
    payments,
    policy,
    report,
    schedule,
    stack,
    telegram,
)
from starters.cli.output import console, emit_json, fail
from starters.cli.settings_arg import load_settings

app = typer.Typer(
    name="fleet",
    help="agentfleet: durable orchestration for fleets of AI agents on Temporal.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
config_app = typer.Typer(
    help="Effective settings (FLEET_* variables and .env).", no_args_is_help=True
)
app.add_typer(config_app, name="config")
app.add_typer(bot.app, name="bot")
app.add_typer(agent.app, name="agent")
app.add_typer(chain.app, name="chain")
app.add_typer(codec.app, name="codec")
app.add_typer(data.app, name="data")
app.add_typer(command.app, name="command")
app.add_typer(schedule.app, name="schedule")
app.add_typer(payments.app, name="payments")
app.add_typer(payments.skills_app, name="skills")
app.add_typer(facilitator.app, name="facilitator")
app.add_typer(content.app, name="content")
app.add_typer(channel.app, name="channel")
app.add_typer(policy.app, name="policy")
app.add_typer(learn.app, name="learn")
app.add_typer(alerts.app, name="alerts")
app.add_typer(telegram.app, name="telegram")
app.command("pay")(payments.pay)
app.command("report")(report.report)

app.command()(stack.up)
app.command()(stack.down)
app.command()(stack.status)


@config_app.command("show")
def config_show(
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Print the effective settings; secrets are masked."""
    settings = load_settings(as_json)
    data = settings.masked()
    if as_json:
        emit_json(data)
        return
    from rich.table import Table

    table = Table("setting", "value", box=None, header_style="bold")
    for name, value in data.items():
        shown = "" if value is None else str(value)
        table.add_row(f"FLEET_{name.upper()}", shown)
    console.print(table)


@app.command()
def setup(
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Prepare a database and a Temporal namespace you run yourself (idempotent).

    Applies the database migrations to FLEET_DATABASE_URL and registers agentfleet's search
    attributes on the configured namespace. `fleet up` does both for the embedded stack.
    """
    import asyncio

    from agentfleet import db
    from agentfleet.temporal import connect, connect_options, ensure_search_attributes

    settings = load_settings(as_json)

    async def register() -> list[str]:
        client = await connect(settings)
        return await ensure_search_attributes(client, connect_options(settings)["namespace"])

    try:
        db.validate_database_url(settings.effective_database_url)
        revision = db.upgrade_database(settings.effective_database_url)
        added = asyncio.run(register())
    except FleetError as exc:
        fail(str(exc), exc.exit_code, as_json=as_json)
    if as_json:
        emit_json({"ok": True, "database_revision": revision, "search_attributes_added": added})
        return
    console.print(f"database at revision {revision}")
    console.print(
        f"search attributes added: {', '.join(added)}" if added else "search attributes present"
    )


@app.command()
def worker(
    queue: Annotated[
        list[str] | None, typer.Option("--queue", help="Poll only this task queue (repeat).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Errors as JSON.")] = False,
) -> None:
    """Run a worker in the foreground (what `fleet up` supervises; for extra worker machines)."""
    from workers.main import main as worker_main

    argv: list[str] = []
    for name in queue or []:
        argv += ["--queue", name]
    code = worker_main(argv)
    if code:
        raise typer.Exit(code)


def main() -> None:
    """Console-script entry point: user-facing errors become one line and a non-zero exit."""
    from agentfleet.redaction import redact_uncaught_exceptions

    redact_uncaught_exceptions()
    try:
        app()
    except FleetError as exc:
        try:
            fail(str(exc), exc.exit_code)
        except typer.Exit as exit_:
            raise SystemExit(exit_.exit_code) from None


if __name__ == "__main__":
    main()
