"""``fleet facilitator key add|list|revoke``: who may use the x402 facilitator (``/verify``,
``/settle``), where their payments may go."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer
from rich.table import Table

from agentfleet.errors import FleetError
from starters.cli.output import JsonOpt, console, emit_json, fail, read_database
from starters.cli.settings_arg import load_settings

if TYPE_CHECKING:
    from agentfleet.models import FacilitatorKey

app = typer.Typer(
    help="The x402 facilitator (/verify, /settle) and its API keys.", no_args_is_help=True
)
key_app = typer.Typer(
    help="API keys of the facilitator: the relayers pay the gas, so strangers get a 401.",
    no_args_is_help=True,
)
app.add_typer(key_app, name="key")

T = TypeVar("T")
FLEET_WALLETS = "the fleet's own wallets"


def _checked(read: Callable[[], T], as_json: bool) -> T:
    """``read()`` against the keys table: a refusal of ours as it is, a database that cannot be
    read as what to do next."""
    failure: list[FleetError] = []

    def attempt() -> T | None:
        try:
            return read()
        except FleetError as exc:  # ours: say it as it is, not as a database problem
            failure.append(exc)
            return None

    result = read_database("the facilitator keys", attempt, as_json=as_json)
    if failure:
        fail(str(failure[0]), as_json=as_json)
    assert result is not None  # noqa: S101 - no failure means a result
    return result


def keys() -> Any:
    """The key store (imported by the commands that use it: it loads every table)."""
    from agentfleet.payments import facilitator_keys

    return facilitator_keys


def _row(key: FacilitatorKey) -> dict[str, Any]:
    return {
        "key_id": key.key_id,
        "name": key.name,
        "pay_to": key.pay_to or FLEET_WALLETS,
        "created_at": key.created_at.isoformat(),
        "revoked_at": key.revoked_at.isoformat() if key.revoked_at else None,
    }


@key_app.command("add")
def add(
    name: Annotated[str, typer.Argument(help="Who the key is for, e.g. merchant-a.")],
    pay_to: Annotated[
        list[str] | None,
        typer.Option(
            "--pay-to",
            help="An address this key's payments may pay (repeat; '*' for any). Default: the "
            "fleet's own wallets.",
        ),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Make a key. It is shown once: only its SHA-256 is stored."""
    settings = load_settings(as_json)
    key, row = _checked(
        lambda: keys().add_key(settings.effective_database_url, name, pay_to), as_json
    )
    if as_json:
        emit_json({"ok": True, "key": key, **_row(row)})
        return
    console.print(f"facilitator key [bold]{row.key_id}[/] for {row.name}:")
    console.print(key, highlight=False, soft_wrap=True)
    console.print(
        "Shown once; send it as `Authorization: Bearer <key>` to /verify and /settle. "
        f"It may pay: {', '.join(row.pay_to) if row.pay_to else FLEET_WALLETS}."
    )


@key_app.command("list")
def list_keys(as_json: JsonOpt = False) -> None:
    """The keys (ids, names, payTo allow-lists, revocations); never the keys themselves."""
    settings = load_settings(as_json)
    rows = _checked(lambda: keys().list_keys(settings.effective_database_url), as_json)
    if as_json:
        emit_json([_row(row) for row in rows])
        return
    if not rows:
        console.print("no facilitator keys; `fleet facilitator key add NAME` makes one")
        return
    table = Table("id", "name", "may pay", "created", "revoked", box=None, header_style="bold")
    for row in rows:
        data = _row(row)
        pay = data["pay_to"]
        table.add_row(
            row.key_id,
            row.name,
            ", ".join(pay) if isinstance(pay, list) else pay,
            data["created_at"][:19],
            (data["revoked_at"] or "")[:19],
        )
    console.print(table)


@key_app.command("revoke")
def revoke(
    which: Annotated[str, typer.Argument(help="The key's id (or its name, if unique).")],
    as_json: JsonOpt = False,
) -> None:
    """Revoke a key: requests with it get 401 within a few seconds."""
    settings = load_settings(as_json)
    row = _checked(lambda: keys().revoke_key(settings.effective_database_url, which), as_json)
    if as_json:
        emit_json({"ok": True, **_row(row)})
        return
    console.print(f"revoked facilitator key {row.key_id} ({row.name})")
