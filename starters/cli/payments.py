"""``fleet pay``, ``fleet payments ...`` and ``fleet skills list``: bots buying and selling skills
with x402, and the ledger of what was paid."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Annotated, Any

import typer
from rich.table import Table

from agentfleet.errors import FleetError
from starters.cli.client import run_or_fail, run_with_client
from starters.cli.output import JsonOpt, console, emit_json, err_console, fail, read_database
from starters.cli.settings_arg import load_settings

app = typer.Typer(help="The payments ledger: list, show, reconcile with the chain.")
skills_app = typer.Typer(help="Skills bots sell over HTTP with x402, and their prices.")

PURCHASE_WAIT_S = 600


def _fusd(units: int | str | None) -> str:
    if units is None:
        return "-"
    return f"{Decimal(int(units)) / 10**6:f}".rstrip("0").rstrip(".") or "0"


def pay(
    buyer: Annotated[str, typer.Option("--from", help="The bot that pays (it must be active).")],
    seller: Annotated[str, typer.Option("--to", help="The bot that sells the skill.")],
    skill: Annotated[str, typer.Option("--skill", help="The skill to buy, e.g. forecast.")],
    params: Annotated[
        str,
        typer.Option("--params", help='The skill\'s args as JSON, e.g. \'{"symbol":"ETHUSDT"}\'.'),
    ] = "{}",
    validator: Annotated[
        str | None,
        typer.Option(
            "--validator",
            help="A bot that scores the delivery (ERC-8004 validation); under --min-score the "
            "seller refunds the payment.",
        ),
    ] = None,
    min_score: Annotated[
        int, typer.Option("--min-score", min=0, max=100, help="Least validation score (0-100).")
    ] = 50,
    purchase_id: Annotated[
        str | None,
        typer.Option(
            "--purchase-id",
            help="Business key (purchase-...); the same id again is the same purchase, never a "
            "second payment. Default: a new one.",
        ),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """A bot buys one skill call from another: checks the seller on ERC-8004 and the buyer's
    spending policy, signs an EIP-3009 authorization, pays through the seller's x402 gateway,
    checks the settlement on chain, and leaves a review."""
    from agentfleet.bots.model import Skill, check_name
    from agentfleet.payments.purchases import (
        PURCHASE_ID,
        PurchaseRequest,
        PurchaseStatus,
        PurchaseView,
        new_purchase_id,
    )
    from clients.purchases import follow_purchase, start_purchase

    settings = load_settings(as_json)
    try:
        args = json.loads(params)
    except ValueError:
        fail(f"--params is not JSON: {params!r}", as_json=as_json)
    if not isinstance(args, dict):
        fail("--params must be a JSON object of the skill's args", as_json=as_json)
    try:
        chosen = Skill(skill)
    except ValueError:
        known = ", ".join(s.value for s in Skill)
        fail(f"unknown skill {skill!r}; skills are: {known}", as_json=as_json)
    if purchase_id is not None and not PURCHASE_ID.match(purchase_id):
        fail(f"--purchase-id {purchase_id!r} must match {PURCHASE_ID.pattern}", as_json=as_json)
    for flag, name in (("--from", buyer), ("--to", seller), ("--validator", validator)):
        if name is None:
            continue
        try:
            check_name(name)
        except ValueError as exc:
            fail(f"{flag}: {exc}", as_json=as_json)
    _check_bots_exist(settings, [buyer, seller, *([validator] if validator else [])], as_json)
    try:
        request = PurchaseRequest(
            purchase_id=purchase_id or new_purchase_id(buyer),
            buyer=buyer,
            seller=seller,
            skill=chosen,
            args=args,
            validator=validator,
            min_score=min_score,
        )
    except ValueError as exc:
        fail(str(exc).splitlines()[0], as_json=as_json)

    shown = 0

    def show_steps(view: PurchaseView) -> None:
        nonlocal shown
        for step in view.steps[shown:]:
            if not as_json:
                err_console.print(f"[green]✓[/] {step}")
        shown = len(view.steps)

    async def work(client: Any) -> PurchaseView:
        try:
            handle = await start_purchase(client, request)
        except ValueError as exc:
            raise FleetError(str(exc)) from None
        with err_console.status(f"{request.purchase_id}: starting") as status:

            def show(view: PurchaseView) -> None:
                show_steps(view)
                status.update(f"{request.purchase_id}: {', '.join(view.steps) or 'starting'}")

            view = await follow_purchase(handle, PURCHASE_WAIT_S, show)
        show_steps(view)
        return view

    view = run_or_fail(settings, work, as_json)
    ok = view.status in (PurchaseStatus.DONE, PurchaseStatus.REFUNDED)
    if as_json:
        emit_json({"ok": ok, **view.model_dump(mode="json")})
    else:
        table = Table(show_header=False, box=None)
        table.add_row("purchase", view.purchase_id)
        table.add_row("status", view.status.value)
        table.add_row("paid", f"{_fusd(view.amount)} fUSD to {view.pay_to or '-'}")
        if view.tx_hash:
            table.add_row("settlement", view.tx_hash)
        if view.validation is not None:
            table.add_row("validation", f"{view.validation.score}/100 ({view.validation.scorer})")
        if view.refund_tx_hash:
            table.add_row("refund", view.refund_tx_hash)
        if view.feedback_tx_hash:
            table.add_row("review", view.feedback_tx_hash)
        if view.reason:
            table.add_row("note", view.reason)
        if view.result is not None:
            table.add_row("result", json.dumps(view.result, default=str)[:400])
        console.print(table)
    if not ok:
        if not as_json:
            err_console.print(f"[bold red]error:[/] {view.reason}", highlight=False)
        raise typer.Exit(1)


@app.command("list")
def list_payments(
    status: Annotated[
        str | None, typer.Option(help="Only this status (settled, skill_failed, failed ...).")
    ] = None,
    limit: Annotated[int, typer.Option(min=1, max=10_000, help="At most this many rows.")] = 50,
    as_json: JsonOpt = False,
) -> None:
    """The newest payments in the ledger (one row per payment that passed verification)."""
    from agentfleet.payments import ledger

    settings = load_settings(as_json)
    rows = read_database(
        "the payments ledger",
        lambda: ledger.list_payments(settings.effective_database_url, limit=limit, status=status),
        as_json=as_json,
    )
    if as_json:
        emit_json([row.model_dump(mode="json") for row in rows])
        return
    if not rows:
        console.print("no payments yet (`fleet pay` makes one)")
        return
    table = Table("when", "payer", "seller", "skill", "fUSD", "status", "tx")
    for row in rows:
        table.add_row(
            f"{row.created_at:%Y-%m-%d %H:%M:%S}",
            row.buyer or row.payer[:12] + "…",
            row.seller or row.pay_to[:12] + "…",
            row.skill or "-",
            _fusd(row.amount),
            row.status,
            (row.tx_hash or "-")[:14],
        )
    console.print(table)


@app.command("show")
def show_payment(
    payment_id: Annotated[str, typer.Argument(help="payment-{chain}-{asset}-{from}-{nonce}")],
    as_json: JsonOpt = False,
) -> None:
    """One payment: its ledger row and, while it runs, its saga's steps."""
    from agentfleet.payments import ledger

    settings = load_settings(as_json)
    row = read_database(
        "the payments ledger",
        lambda: ledger.get_payment(settings.effective_database_url, payment_id),
        as_json=as_json,
    )
    saga: dict[str, Any] | None = None

    async def work(client: Any) -> dict[str, Any] | None:
        from clients.payments import saga_view

        view = await saga_view(client, payment_id)
        return None if view is None else view.model_dump(mode="json")

    try:
        saga = run_with_client(settings, work)
    except FleetError:
        saga = None  # the ledger alone still answers
    if row is None and saga is None:
        fail(f"no payment {payment_id}; `fleet payments list` shows the ledger", as_json=as_json)
    data = {"ledger": row.model_dump(mode="json") if row else None, "saga": saga}
    if as_json:
        emit_json(data)
        return
    table = Table(show_header=False, box=None)
    for key, value in (data["ledger"] or {}).items():
        if value not in (None, ""):
            table.add_row(key, str(value))
    if saga:
        table.add_row("saga", f"{saga['status']}: {', '.join(saga['steps']) or 'starting'}")
    console.print(table)


@app.command("reconcile")
def reconcile(as_json: JsonOpt = False) -> None:
    """Compare the ledger with the token's AuthorizationUsed and Transfer events now; exit 1
    when something differs (each finding is also an audit event for a human)."""
    from clients.reconcile import run_reconciliation

    settings = load_settings(as_json)

    async def work(client: Any) -> Any:
        return await run_reconciliation(client, settings)

    report = run_or_fail(settings, work, as_json)
    data = report.model_dump(mode="json")
    findings = data.get("findings") or []
    if as_json:
        emit_json({"ok": not findings, **data})
    else:
        console.print(
            f"blocks {data.get('from_block')}..{data.get('to_block')}: {len(findings)} finding(s)",
            highlight=False,
        )
        for finding in findings:
            console.print(f"[yellow]![/] {finding.get('kind')}: {finding.get('detail')}")
    if findings:
        raise typer.Exit(1)


@skills_app.command("list")
def list_skills(
    bot: Annotated[str | None, typer.Option("--bot", help="Only this bot.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """What each bot sells over HTTP (x402) and at what price in fUSD (0: free)."""
    from agentfleet import db
    from agentfleet.bots.model import BotKind
    from agentfleet.models import BotRecord
    from agentfleet.payments.terms import SELLABLE, price_of
    from clients.bots import bot_rows

    settings = load_settings(as_json)

    def read() -> list[BotRecord | None]:
        if not bot:
            return list(bot_rows(settings.effective_database_url))
        with db.session_scope(settings.effective_database_url) as session:
            return [session.get(BotRecord, bot)]

    rows = read_database("the bots table", read, as_json=as_json)
    if bot and rows == [None]:
        fail(f"no bot named {bot}; `fleet bot list` shows the fleet", as_json=as_json)
    offers: list[dict[str, Any]] = []
    for row in rows:
        if row is None:
            continue
        kind = BotKind(row.kind)
        for skill in SELLABLE[kind]:
            units = price_of(kind, dict(row.params), skill)
            offers.append(
                {
                    "bot": row.name,
                    "status": row.status,
                    "skill": skill.value,
                    "price_fusd": _fusd(units),
                    "endpoint": f"{settings.http_url}/bots/{row.name}/skills/{skill.value}",
                }
            )
    if as_json:
        emit_json(offers)
        return
    if not offers:
        console.print("no skills on sale (`fleet bot create NAME --kind forecaster` adds a seller)")
        return
    table = Table("bot", "status", "skill", "fUSD", "endpoint")
    for offer in offers:
        table.add_row(
            offer["bot"], offer["status"], offer["skill"], offer["price_fusd"], offer["endpoint"]
        )
    console.print(table)


def _check_bots_exist(settings: Any, names: list[str], as_json: bool) -> None:
    """Unknown bots are refused here, before any workflow starts."""
    from agentfleet import db
    from agentfleet.models import BotRecord

    def read() -> list[str]:
        with db.session_scope(settings.effective_database_url) as session:
            return [name for name in names if session.get(BotRecord, name) is None]

    missing = read_database("the bots table", read, as_json=as_json)
    if missing:
        fail(
            f"no bot named {', '.join(missing)}; `fleet bot list` shows the fleet",
            as_json=as_json,
        )
