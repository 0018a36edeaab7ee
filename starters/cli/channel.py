"""``fleet channel ...``: where content is published (Telegram chats, email, webhooks), their
rate limits, and what the local sandbox received on each."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Annotated, Any

import typer
from rich.table import Table

from agentfleet.content.model import (
    MAX_LENGTH,
    ChannelConfig,
    ChannelKind,
    RateLimit,
    default_limit,
)
from agentfleet.errors import FleetError
from starters.cli.client import run_with_client
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

app = typer.Typer(help="Publishing channels (Telegram chats, email, webhooks).")

TARGETS = {
    ChannelKind.TELEGRAM: (
        re.compile(r"^(-?\d{1,20}|@[A-Za-z][A-Za-z0-9_]{4,31})$"),
        "a Telegram chat id or @channelusername",
    ),
    ChannelKind.EMAIL: (re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$"), "an email address"),
    ChannelKind.WEBHOOK: (re.compile(r"^https?://\S+$"), "an http(s) URL"),
}
"""What ``--target`` must look like for each kind."""


@app.command("add")
def add(
    name: Annotated[str, typer.Argument(help="A slug, e.g. announcements.")],
    kind: Annotated[ChannelKind, typer.Option("--kind", help="telegram, email or webhook.")],
    target: Annotated[
        str,
        typer.Option(
            "--target", help="Telegram chat id or @channel, email address, or webhook URL."
        ),
    ],
    rate: Annotated[
        float | None,
        typer.Option("--rate", help="Messages per second (default: the published limit).", min=0),
    ] = None,
    burst: Annotated[int | None, typer.Option("--burst", min=1, max=1000)] = None,
    max_length: Annotated[int | None, typer.Option("--max-length", min=1)] = None,
    as_json: JsonOpt = False,
) -> None:
    """Add a channel, or change one (its publisher picks up the new limit)."""
    from agentfleet.content import store as content_store

    settings = load_settings(as_json)
    try:
        limit = default_limit(kind, target)
        if rate is not None or burst is not None:
            limit = RateLimit(
                rate_per_s=rate if rate is not None else limit.rate_per_s,
                burst=burst if burst is not None else limit.burst,
            )
        config = ChannelConfig(
            name=name,
            kind=kind,
            target=_check_target(kind, target),
            limit=limit,
            max_length=max_length or MAX_LENGTH[kind],
        )
    except ValueError as exc:
        fail(
            str(exc).splitlines()[-1].strip() if "validation error" in str(exc) else str(exc),
            as_json=as_json,
        )
    url = settings.effective_database_url
    created = read_database(
        "channels", lambda: content_store.save_channel(url, config), as_json=as_json
    )
    if not created:
        _tell_publisher(settings, config)
    if as_json:
        emit_json(config.model_dump(mode="json") | {"created": created})
        return
    verb = "added" if created else "changed"
    console.print(
        f"{verb} channel {name}: {kind.value} -> {config.target} "
        f"({config.limit.rate_per_s:g}/s, burst {config.limit.burst})"
    )


def _check_target(kind: ChannelKind, target: str) -> str:
    pattern, what = TARGETS[kind]
    if not pattern.match(target):
        raise ValueError(f"--target {target!r} is not {what}")
    return target


def _tell_publisher(settings: Any, config: ChannelConfig) -> None:
    """Signal a running publisher the new limit (none running: it reads it when it starts)."""
    from clients.content import tell_publisher

    try:
        run_with_client(settings, lambda client: tell_publisher(client, config))
    except FleetError:
        err_console.print("note: Temporal is not reachable; a running publisher keeps its limit")


@app.command("list")
def list_channels(as_json: JsonOpt = False) -> None:
    """Channels and their rate limits."""
    from agentfleet.content import store as content_store

    settings = load_settings(as_json)
    url = settings.effective_database_url
    rows = read_database("channels", lambda: content_store.list_channels(url), as_json=as_json)
    print_rows(
        rows,
        as_json,
        _channels_table,
        "no channels yet: `fleet channel add NAME --kind K --target T`",
    )


def _channels_table(rows: Sequence[ChannelConfig]) -> Table:
    table = Table("channel", "kind", "target", "rate/s", "burst", "max length")
    for row in rows:
        table.add_row(
            row.name,
            row.kind.value,
            row.target,
            f"{row.limit.rate_per_s:g}",
            str(row.limit.burst),
            str(row.max_length),
        )
    return table


def _inbox_target(config: ChannelConfig) -> str:
    """The sandbox files webhooks under the receiver's name (the URL's last segment)."""
    if config.kind is ChannelKind.WEBHOOK:
        return config.target.rstrip("/").rsplit("/", 1)[-1]
    return config.target


@app.command("inbox")
def inbox(
    name: Annotated[str, typer.Argument(help="The channel.")],
    limit: Annotated[int, typer.Option("--limit", min=1, max=1000)] = 20,
    as_json: JsonOpt = False,
) -> None:
    """What the local sandbox received on a channel (the `fleet up` demo's Telegram chat,
    mailbox or webhook receiver)."""
    import httpx

    from agentfleet.content import store as content_store

    settings = load_settings(as_json)
    url = settings.effective_database_url
    config = read_database(
        "channels", lambda: content_store.get_channel(url, name), as_json=as_json
    )
    if config is None:
        fail(f"no channel named {name}; `fleet channel list` shows them", as_json=as_json)
    try:
        response = httpx.get(
            f"{settings.sandbox_url}/sandbox/inbox",
            params={"kind": config.kind.value, "target": _inbox_target(config)},
            timeout=5,
        )
        response.raise_for_status()
    except httpx.HTTPError:
        fail(
            f"the channel sandbox at {settings.sandbox_url} does not answer; it runs with "
            "`fleet up` (FLEET_CHANNEL_SANDBOX=true); a real channel's messages are in the "
            "channel itself",
            as_json=as_json,
        )
    messages = response.json()[-limit:]
    if as_json:
        emit_json(messages)
        return
    if not messages:
        err_console.print(f"nothing received on {name} yet")
        return
    for message in messages:
        console.rule(f"{message.get('received_at', '')} · {message.get('message_id', '')}")
        if message.get("subject"):
            console.print(f"Subject: {message['subject']}", highlight=False, markup=False)
        console.print(message.get("text", ""), highlight=False, markup=False)
