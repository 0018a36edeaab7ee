"""``fleet content ...``: the content pipeline from a terminal.

Each item is a ``ContentPipelineWorkflow`` (``content-{id}``); decisions are its updates, so a
refused one (unknown approver, already decided, expired) is one line and changes nothing.
"""

from __future__ import annotations

import getpass
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table

from agentfleet.content.model import (
    ApproveInput,
    CancelInput,
    ContentOrder,
    ContentState,
    ContentView,
    EditInput,
    RejectInput,
    ResolveInput,
    ResolveOutcome,
)
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
    from agentfleet.models import ContentItem

app = typer.Typer(help="Content items: submit, list, show, audit, approve, reject, edit, cancel.")

IdArg = Annotated[str, typer.Argument(help="The content id (`fleet content list`).")]
ApproverOpt = Annotated[
    str | None,
    typer.Option("--approver", help="Who decides (default: your OS user name)."),
]
SHOWN_WAIT_S = 60
HIDDEN_IN_AUDIT = {"text", "check", "hard", "detail"}
"""Left out of the audit table (the step names the check; texts are in ``--json``)."""


def _approver(name: str | None) -> str:
    return name or getpass.getuser()


def _print_view(view: ContentView, as_json: bool) -> None:
    if as_json:
        emit_json(view.model_dump(mode="json"))
        return
    table = Table(show_header=False, box=None)
    table.add_row("content", view.content_id)
    table.add_row("state", f"[bold]{view.state.value}[/]")
    table.add_row("bot / channel", f"{view.bot} -> {view.channel}")
    table.add_row("submitted by", view.submitted_by)
    if view.publish_at:
        table.add_row("publish at", view.publish_at.isoformat())
    if view.policy:
        table.add_row("policy", view.policy)
    if view.scores:
        s = view.scores
        judge = f", judge {s.judge:.0f}" if s.judge is not None else ""
        table.add_row(
            "scores",
            f"readability {s.readability:.0f}, sentiment {s.sentiment:+.2f}, "
            f"toxicity {s.toxicity:.2f}, length {s.length}{judge}",
        )
    for check in view.checks:
        colour = {"pass": "green", "fail": "red"}.get(check.outcome.value, "yellow")
        reason = f" ({check.reason})" if check.reason else ""
        table.add_row(f"check {check.check}", f"[{colour}]{check.outcome.value}[/]{reason}")
    if view.decided_by:
        table.add_row("decided by", view.decided_by)
    if view.receipt:
        table.add_row("message id", view.receipt.message_id)
    if view.reason:
        table.add_row("reason", view.reason)
    console.print(table)
    if view.text:
        console.rule("text")
        console.print(view.text, highlight=False, markup=False)


@app.command("submit")
def submit(
    bot: Annotated[str, typer.Option("--bot", help="The publisher bot that owns the item.")],
    channel: Annotated[str, typer.Option("--channel", help="Where it is published.")],
    brief: Annotated[str, typer.Option("--brief", help="What the post is about.")],
    at: Annotated[
        str | None,
        typer.Option("--at", help="Publish at this time (ISO 8601, or +15m from now)."),
    ] = None,
    content_id: Annotated[
        str | None,
        typer.Option("--id", help="Business key (a slug); the same id again is the same item."),
    ] = None,
    submitted_by: Annotated[
        str | None, typer.Option("--by", help="Who submits (default: your OS user name).")
    ] = None,
    wait: Annotated[
        bool,
        typer.Option("--wait/--no-wait", help="Wait until it needs a human or is finished."),
    ] = True,
    as_json: JsonOpt = False,
) -> None:
    """Submit a brief: the pipeline drafts, scores and checks it, then waits for approval
    (or auto-approves where the policy says so) and publishes. Prints the content id."""
    from agentfleet.content import store as content_store
    from clients import content

    settings = load_settings(as_json)
    now = datetime.now(UTC)
    try:
        publish_at = content_store.parse_when(at, now) if at else None
        order = ContentOrder(
            content_id=content_id or content.new_content_id(bot),
            bot=bot,
            channel=channel,
            brief=brief,
            submitted_by=submitted_by or getpass.getuser(),
            publish_at=publish_at,
        )
    except ValueError as exc:
        fail(str(exc).splitlines()[0], as_json=as_json)
    url = settings.effective_database_url
    read_database("bots and channels", lambda: content_store.list_channels(url), as_json=as_json)

    async def work(client: Any) -> ContentView:
        await content.submit(client, url, order, now)
        view = await content.show(client, url, order.content_id)
        with err_console.status(f"{order.content_id}: {view.state.value}") as status:
            return await content.settle(
                client,
                url,
                view,
                SHOWN_WAIT_S if wait else 0,
                lambda seen: status.update(f"{seen.content_id}: {seen.state.value}"),
            )

    view = run_or_fail(settings, work, as_json)
    if as_json:
        emit_json(view.model_dump(mode="json"))
        return
    console.print(view.content_id)
    err_console.print(f"state: {view.state.value}" + (f" ({view.reason})" if view.reason else ""))
    if view.state is ContentState.AWAITING_APPROVAL:
        err_console.print(f"next: fleet content show {view.content_id}, then approve or reject")


@app.command("list")
def list_items(
    state: Annotated[
        ContentState | None, typer.Option("--state", help="Only items in this state.")
    ] = None,
    bot: Annotated[str | None, typer.Option("--bot", help="Only this bot's items.")] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, max=1000)] = 50,
    as_json: JsonOpt = False,
) -> None:
    """Content items, newest first (from the database the pipelines keep in step)."""
    from agentfleet.content import store as content_store

    settings = load_settings(as_json)
    url = settings.effective_database_url
    rows = read_database(
        "content items",
        lambda: content_store.list_items(url, state=state, bot=bot, limit=limit),
        as_json=as_json,
    )
    print_rows(
        rows,
        as_json,
        _items_table,
        "no content yet: `fleet content submit --bot B --channel C --brief ...`",
    )


def _items_table(rows: Sequence[ContentItem]) -> Table:
    table = Table("content", "state", "bot", "channel", "updated", "reason")
    for row in rows:
        table.add_row(
            row.content_id,
            row.state,
            row.bot,
            row.channel,
            row.updated_at.strftime("%Y-%m-%d %H:%M:%S"),
            (row.reason or "")[:60],
        )
    return table


@app.command("show")
def show(content_id: IdArg, as_json: JsonOpt = False) -> None:
    """One item: state, scores, each check, decision, receipt and the text."""
    from clients import content

    settings = load_settings(as_json)
    url = settings.effective_database_url

    async def work(client: Any) -> ContentView:
        return await content.show(client, url, content_id)

    _print_view(run_or_fail(settings, work, as_json), as_json)


@app.command("audit")
def audit(content_id: IdArg, as_json: JsonOpt = False) -> None:
    """The item's audit trail: one row per step, as stored in SQL (``audit_events``)."""
    from agentfleet.content import store as content_store

    settings = load_settings(as_json)
    url = settings.effective_database_url
    rows = read_database(
        "the audit trail", lambda: content_store.audit_trail(url, content_id), as_json=as_json
    )
    if not rows:
        fail(f"no audit trail for content {content_id}", as_json=as_json)
    if as_json:
        emit_json([row.model_dump(mode="json") for row in rows])
        return
    table = Table("when", "step", "actor", "detail", title=f"content {content_id}")
    for row in rows:
        detail = {
            k: v
            for k, v in row.detail.items()
            if k not in HIDDEN_IN_AUDIT and v not in (None, "", {})
        }
        summary = ", ".join(f"{k}={v}" for k, v in detail.items())
        table.add_row(
            row.occurred_at.strftime("%H:%M:%S"),
            row.kind.removeprefix("content."),
            row.actor,
            summary[:100],
        )
    console.print(table)
    if rows[0].workflow_id:
        err_console.print(f"workflow: {rows[0].workflow_id} (Web UI history tells the same story)")


def _decide(content_id: str, update: str, arg: Any, as_json: bool) -> None:
    from clients import content

    settings = load_settings(as_json)
    url = settings.effective_database_url

    async def work(client: Any) -> ContentView:
        return await content.steer(client, url, content_id, update, arg)

    view = run_or_fail(settings, work, as_json)
    if as_json:
        emit_json(view.model_dump(mode="json"))
        return
    reason = f" ({view.reason})" if view.reason else ""
    console.print(f"{content_id}: {view.state.value}{reason}")


@app.command("approve")
def approve(
    content_id: IdArg,
    approver: ApproverOpt = None,
    note: Annotated[str, typer.Option("--note", help="Why (kept in the audit trail).")] = "",
    as_json: JsonOpt = False,
) -> None:
    """Approve an item awaiting approval (then it is scheduled or published)."""
    _decide(content_id, "approve", ApproveInput(approver=_approver(approver), note=note), as_json)


@app.command("reject")
def reject(
    content_id: IdArg,
    reason: Annotated[str, typer.Option("--reason", help="Why (kept in the audit trail).")],
    approver: ApproverOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Reject an item awaiting approval."""
    _decide(content_id, "reject", RejectInput(approver=_approver(approver), reason=reason), as_json)


@app.command("edit")
def edit(
    content_id: IdArg,
    text: Annotated[str, typer.Option("--text", help="The new text.")],
    approver: ApproverOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Replace the text of an item awaiting approval or scheduled: it goes back through
    scoring and checks, then needs approval again."""
    _decide(content_id, "edit", EditInput(approver=_approver(approver), text=text), as_json)


@app.command("cancel")
def cancel(
    content_id: IdArg,
    reason: Annotated[str, typer.Option("--reason")] = "cancelled",
    by: Annotated[str | None, typer.Option("--by", help="Who cancels (default: you).")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Cancel an item that is not yet handed to its channel (a scheduled one included)."""
    _decide(content_id, "cancel", CancelInput(actor=_approver(by), reason=reason), as_json)


@app.command("resolve")
def resolve(
    content_id: IdArg,
    outcome: Annotated[
        ResolveOutcome,
        typer.Option(
            "--outcome",
            help="What you saw in the channel: published, not_published, or retry (send again).",
        ),
    ],
    message_id: Annotated[
        str | None, typer.Option("--message-id", help="The channel's id, if published.")
    ] = None,
    by: Annotated[str | None, typer.Option("--by", help="Who looked (default: you).")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Settle an ``unconfirmed`` send (it may or may not have reached the channel)."""
    _decide(
        content_id,
        "resolve",
        ResolveInput(actor=_approver(by), outcome=outcome, message_id=message_id),
        as_json,
    )
