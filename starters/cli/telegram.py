"""``fleet telegram run|access|say|press``: the Telegram command center from the shell.

``run`` is what ``fleet up`` supervises; ``access`` shows who may do what; ``say`` types a message
into the local sandbox's Bot API as a Telegram user and prints the command center's replies, so
the command center can be tried without a real Telegram bot; ``press`` presses one of its buttons.
"""

from __future__ import annotations

import asyncio
import time
from contextlib import nullcontext, suppress
from typing import Annotated, Any

import typer
from rich.table import Table

from agentfleet.errors import FleetError
from starters.cli.output import JsonOpt, console, emit_json, err_console, fail
from starters.cli.settings_arg import load_settings

app = typer.Typer(
    help="The Telegram command center: run it, show its access list, try it in the sandbox.",
    no_args_is_help=True,
)

SANDBOX_ADMIN = 1001
POLL_S = 0.1


@app.command("run")
def run() -> None:
    """Run the command center in the foreground (long polling; Ctrl-C stops it)."""
    from starters.telegram.bot import main as center_main

    settings = load_settings(False)
    with suppress(KeyboardInterrupt):
        asyncio.run(center_main(settings))


@app.command("access")
def access(as_json: JsonOpt = False) -> None:
    """Who may use the command center (FLEET_TELEGRAM_USERS) and what each role allows."""
    from agentfleet.channels.endpoints import SANDBOX_TELEGRAM_TOKEN, telegram_endpoint
    from agentfleet.channels.errors import NotConfigured
    from starters.telegram.bot import access_list

    settings = load_settings(as_json)
    try:
        _, token = telegram_endpoint(settings)
        sandbox = token.get_secret_value() == SANDBOX_TELEGRAM_TOKEN
    except NotConfigured:
        sandbox = False
    try:
        operators = access_list(settings, sandbox)
    except FleetError as exc:
        fail(str(exc), 2, as_json=as_json)
    if as_json:
        rows = [
            {**op.model_dump(mode="json"), "may": sorted(p.value for p in op.role.permissions)}
            for op in operators.values()
        ]
        emit_json({"ok": True, "operators": rows})
        return
    if not operators:
        console.print("nobody: set FLEET_TELEGRAM_USERS, e.g. 123456789:admin:alice")
        return
    table = Table("user id", "name", "role", "may", box=None, header_style="bold")
    for op in operators.values():
        may = ", ".join(sorted(p.value for p in op.role.permissions))
        table.add_row(str(op.user_id), op.name, op.role.value, may)
    console.print(table)


UserOpt = Annotated[
    int, typer.Option("--as", help="Telegram user id to write as (the sandbox admin: 1001).")
]
WaitOpt = Annotated[
    float, typer.Option("--wait", help="Seconds to wait for the replies.", min=1, max=300)
]


@app.command("say")
def say(
    text: Annotated[str, typer.Argument(help="The message, e.g. '/status' or '/pause bot-1'.")],
    user: UserOpt = SANDBOX_ADMIN,
    wait: WaitOpt = 30.0,
    as_json: JsonOpt = False,
) -> None:
    """Write TEXT to the command center through the local sandbox and print its replies.

    Only with the sandbox as the Bot API (`fleet up` without FLEET_TELEGRAM_BOT_TOKEN); the
    message arrives from user --as in their private chat, as if typed in Telegram.
    """
    _converse(user, {"text": text}, wait, as_json)


@app.command("press")
def press(
    data: Annotated[
        str, typer.Argument(help="The button's data, as `say` prints it, e.g. a:CONTENT_ID.")
    ],
    user: UserOpt = SANDBOX_ADMIN,
    wait: WaitOpt = 30.0,
    as_json: JsonOpt = False,
) -> None:
    """Press the newest button with DATA in user --as's sandbox chat (e.g. after
    `fleet telegram say /pending`) and print the command center's replies."""
    _converse(user, {"callback_data": data}, wait, as_json)


def _converse(user: int, update: dict[str, Any], wait: float, as_json: bool) -> None:
    settings = load_settings(as_json)
    if settings.telegram_api_url or settings.telegram_bot_token or not settings.channel_sandbox:
        fail(
            "`fleet telegram say|press` needs the sandbox Bot API; use your real bot in Telegram",
            2,
            as_json=as_json,
        )
    try:
        replies = asyncio.run(_exchange(settings.sandbox_url, user, update, wait, not as_json))
    except FleetError as exc:
        fail(str(exc), exc.exit_code, as_json=as_json)
    if as_json:
        emit_json({"ok": True, "replies": replies})
        return
    for reply in replies:
        console.print(reply["text"] or "", highlight=False, markup=False)
        buttons = (reply.get("reply_markup") or {}).get("inline_keyboard") or []
        for row in buttons:
            shown = "  ".join(f"[{b['text']}: {b['callback_data']}]" for b in row)
            console.print(shown, style="cyan", highlight=False, markup=False)
        if reply.get("document"):
            doc = reply["document"]
            console.print(f"(file {doc['file_name']}, {doc['file_size']} bytes)", style="dim")


def _button_message(messages: list[dict[str, Any]], data: str) -> int | None:
    """The id of the newest message carrying a button with ``data``."""
    for message in reversed(messages):
        rows = (message.get("reply_markup") or {}).get("inline_keyboard") or []
        if any(b.get("callback_data") == data for row in rows for b in row):
            return int(message["message_id"])
    return None


async def _exchange(
    base: str, user: int, update: dict[str, Any], wait: float, live: bool
) -> list[dict[str, Any]]:
    """Push ``update`` (a text or a button press) into ``user``'s chat; the replies that follow
    (done once no new one came for 1.5 s: replies to one chat are paced at one a second)."""
    import httpx

    chat = {"chat_id": str(user)}
    async with httpx.AsyncClient(base_url=base, timeout=10) as http:
        try:
            before = (await http.get("/sandbox/telegram/messages", params=chat)).json()
            body = {"chat_id": user, **update}
            if "callback_data" in update:
                message_id = _button_message(before, update["callback_data"])
                if message_id is None:
                    raise FleetError(
                        f"no button {update['callback_data']!r} in chat {user}; "
                        "`fleet telegram say /pending` shows them",
                        exit_code=2,
                    )
                body["message_id"] = message_id
            pushed = await http.post("/sandbox/telegram/updates", json=body)
        except httpx.HTTPError:
            raise FleetError(
                f"the channel sandbox does not answer at {base}; start the stack with `fleet up`"
            ) from None
        if pushed.status_code != 200:
            raise FleetError(f"the sandbox refused the message: {pushed.text[:200]}", exit_code=2)
        deadline = time.monotonic() + wait
        settled_at: float | None = None
        count = len(before)
        waiting = err_console.status("waiting for the command center") if live else nullcontext()
        with waiting:
            while time.monotonic() < deadline:
                messages = (await http.get("/sandbox/telegram/messages", params=chat)).json()
                if len(messages) > count:
                    count, settled_at = len(messages), time.monotonic()
                if settled_at is not None and time.monotonic() - settled_at > 1.5:
                    break
                await asyncio.sleep(POLL_S)
    if count == len(before):
        raise FleetError(
            f"no reply within {wait:.0f} s: is the command center running (`fleet status`)?"
        )
    return list(messages[len(before) :])
