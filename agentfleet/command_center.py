"""The Telegram command center's brain, free of Telegram: parse a command, check who may run it,
run it through the same calls the CLI makes, and say the answer as a :class:`Reply`.

``starters/telegram.py`` moves updates and replies between the Bot API and :meth:`CommandCenter.
handle_text` / :meth:`CommandCenter.handle_button`. Every command is validated by the same
validators as the CLI before anything is asked of Temporal, so a bad command gets one line of
help and changes nothing. Long answers (a fleet forecast over 100 bots) are summarised in the
message with the full table as a CSV file.
"""

from __future__ import annotations

import asyncio
import csv
import io
import logging
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from pydantic import BaseModel, Field, ValidationError

from agentfleet import command_views as views
from agentfleet.bots import (
    NAME_PATTERN,
    BotStatus,
    ForecastRequest,
    Skill,
    coerce_cli_params,
    parse_params,
)
from agentfleet.errors import FleetError, first_line
from agentfleet.operators import Operator, Permission

if TYPE_CHECKING:
    from temporalio.client import Client

    from agentfleet.commands import FleetCommandResult, Targets
    from agentfleet.settings import Settings

log = logging.getLogger("agentfleet.telegram")

DISCLOSURE = (
    "This is agentfleet's command center, an automated bot: it answers commands from its "
    "operators and never pretends to be a person."
)
MAX_ROWS = 20
"""Answers with more rows than this are summarised, with the full table as a file."""
MAX_TEXT = 3800
"""Stay under Telegram's 4096 characters per message."""
WINDOW = re.compile(r"^[1-9][0-9]*[mhd]$")
BUTTON = re.compile(r"^([are]):([A-Za-z0-9._-]{1,62})$")


class Button(BaseModel):
    text: str
    data: str
    """``callback_data`` (at most 64 bytes)."""


class Attachment(BaseModel):
    filename: str
    content: str


class Reply(BaseModel):
    """One message back to the chat: text, optional inline buttons (rows), optional file."""

    text: str
    buttons: list[list[Button]] = Field(default_factory=list)
    attachment: Attachment | None = None


@dataclass(frozen=True)
class Command:
    name: str
    permission: Permission
    usage: str
    summary: str
    run: Callable[[CommandCenter, Operator, list[str], str], Awaitable[list[Reply]]]


class Usage(Exception):
    """A malformed command: the reply is its one line of help."""


class CommandCenter:
    """Commands for the fleet, answered for one operator at a time."""

    def __init__(self, client: Client, settings: Settings, operators: dict[int, Operator]):
        self.client = client
        self.settings = settings
        self.operators = operators
        self.url = settings.effective_database_url

    async def handle_text(
        self, user_id: int, username: str | None, text: str, key: str = ""
    ) -> list[Reply]:
        """The replies to one message. ``key`` (chat, message id and date) keys fleet commands,
        so a message handled again after a crash gets the first run's answer, not a second
        run; without one each message runs afresh."""
        words = text.strip().split()
        if not words or not words[0].startswith("/"):
            return [Reply(text="Commands start with /. Send /help for the list.")]
        name = words[0][1:].split("@", 1)[0].lower()
        operator = self.operators.get(user_id)
        if operator is None:
            return [await self._refuse(user_id, username, f"/{name}")]
        command = COMMANDS.get(name)
        if command is None:
            return [Reply(text=f"Unknown command /{name}. Send /help for the list.")]
        if not operator.may(command.permission):
            return [await self._refuse(user_id, username, f"/{name}", operator)]
        try:
            return await command.run(self, operator, words[1:], key)
        except Usage as exc:
            return [Reply(text=f"{exc} Usage: {command.usage}")]
        except FleetError as exc:
            return [Reply(text=f"Nothing changed: {exc.message}")]

    async def handle_button(self, user_id: int, username: str | None, data: str) -> Reply:
        """An inline button of a content item: ``a:ID`` approve, ``r:ID`` reject, ``e:ID``
        edit (asks for the new text)."""
        operator = self.operators.get(user_id)
        match = BUTTON.match(data)
        if operator is None or not operator.may(Permission.DECIDE):
            return await self._refuse(user_id, username, "a content decision", operator)
        if match is None:
            return Reply(text="That button is not one of mine; nothing changed.")
        action, content_id = match.groups()
        if action == "e":
            return Reply(text=f"Send the new text as: /edit {content_id} <text>")
        try:
            if action == "a":
                return await self._approve(operator, content_id, "")
            return await self._reject(
                operator, content_id, f"rejected in Telegram by {operator.name}"
            )
        except FleetError as exc:
            return Reply(text=f"Nothing changed: {exc.message}")

    async def _refuse(
        self, user_id: int, username: str | None, what: str, operator: Operator | None = None
    ) -> Reply:
        who = f"{user_id}" + (f" (@{username})" if username else "")
        if operator is None:
            log.warning("refused Telegram user %s: not on the access list (%s)", who, what)
            text = (
                "Sorry, this automated bot only answers its fleet's operators. Ask an admin to "
                f"add your Telegram id {user_id} to FLEET_TELEGRAM_USERS."
            )
        else:
            log.warning("refused Telegram user %s (%s): %s needs more", who, operator.role, what)
            text = (
                f"Sorry, your role ({operator.role.value}) does not allow {what}. "
                "Send /help for what you can do."
            )
        detail = {"role": _role(operator), "username": username}
        await asyncio.to_thread(
            views.audit, self.url, "telegram.refused", str(user_id), what, detail
        )
        return Reply(text=text)

    async def fleet_command(
        self, skill: Skill, targets: Targets, args: dict[str, Any], key: str
    ) -> FleetCommandResult:
        from agentfleet.commands import FleetCommand, run_command  # noqa: PLC0415

        command = FleetCommand(
            command_id=f"tg-{skill.value}-{key}" if key else views.fresh_command_id(skill),
            skill=skill,
            args=args,
            targets=targets,
        )
        return await run_command(self.client, command)

    async def _approve(self, operator: Operator, content_id: str, note: str) -> Reply:
        from agentfleet import content_ops  # noqa: PLC0415
        from agentfleet.content import ApproveInput  # noqa: PLC0415

        view = await content_ops.steer(
            self.client,
            self.url,
            content_id,
            "approve",
            ApproveInput(approver=operator.name, note=note),
        )
        return Reply(text=f"Approved {content_id} as {operator.name}: {view.state.value}.")

    async def _reject(self, operator: Operator, content_id: str, reason: str) -> Reply:
        from agentfleet import content_ops  # noqa: PLC0415
        from agentfleet.content import RejectInput  # noqa: PLC0415

        view = await content_ops.steer(
            self.client,
            self.url,
            content_id,
            "reject",
            RejectInput(approver=operator.name, reason=reason),
        )
        return Reply(text=f"Rejected {content_id} as {operator.name}: {view.state.value}.")


def _role(operator: Operator | None) -> str:
    return operator.role.value if operator else "none"


def _bot_name(word: str) -> str:
    if not NAME_PATTERN.match(word):
        raise Usage(f"{word!r} is not a bot name.")
    return word


def _targets(word: str) -> Targets:
    from agentfleet.commands import Targets  # noqa: PLC0415

    return Targets(all=True) if word.lower() == "all" else Targets(names=[_bot_name(word)])


def _table_reply(headline: str, rows: list[list[str]], header: list[str], stem: str) -> Reply:
    """The headline and the table in the message, or, past :data:`MAX_ROWS`, the headline with
    the first rows and the whole table as ``stem.csv``."""
    lines = [headline]
    shown = rows if len(rows) <= MAX_ROWS else rows[:5]
    lines += ["  ".join(row) for row in shown]
    attachment = None
    if len(rows) > MAX_ROWS:
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        writer.writerow(header)
        writer.writerows(rows)
        attachment = Attachment(filename=f"{stem}.csv", content=buffer.getvalue())
        lines.append(f"... and {len(rows) - len(shown)} more: the full table is attached.")
    text = "\n".join(lines)
    if len(text) > MAX_TEXT:
        text = text[: MAX_TEXT - 3] + "..."
    return Reply(text=text, attachment=attachment)


def _result_reply(result: FleetCommandResult) -> Reply:
    from agentfleet.commands import describe_answer  # noqa: PLC0415

    summary = result.summary
    headline = (
        f"{result.skill.value} to {result.targets}: {summary.ok} ok, {summary.failed} failed, "
        f"{summary.skipped} skipped in {result.elapsed_s:.2f} s"
    )
    forecast = summary.forecast
    if forecast is not None:
        lead = forecast.direction.value if forecast.direction else "no majority"
        headline += (
            f"\nmean {forecast.mean:,.4f}, median {forecast.median:,.4f}, spread "
            f"{forecast.spread:,.4f}; agreement {forecast.agreement:.0%} {lead} "
            f"({forecast.up} up, {forecast.down} down, {forecast.flat} flat)"
        )
    performance = summary.performance
    if performance is not None and performance.hit_rate is not None:
        headline += f"\nmean hit rate {performance.hit_rate:.0%} over {performance.bots} bots"
    rows = [
        [
            answer.name,
            answer.status,
            describe_answer(result.skill, answer.data)
            if answer.ok
            else (answer.error or answer.outcome.value),
        ]
        for answer in result.answers
    ]
    if not rows:
        headline += "\nno bot matched"
    return _table_reply(headline, rows, ["bot", "status", "answer"], result.command_id)


# Commands. Each validates its words first (Usage: one line of help), then calls what the CLI
# calls.


async def _help(
    center: CommandCenter, operator: Operator, words: list[str], _k: str
) -> list[Reply]:
    allowed = [c for c in COMMANDS.values() if operator.may(c.permission) and c.name != "start"]
    lines = [DISCLOSURE, f"You are {operator.name} ({operator.role.value}). Commands:"]
    lines += [f"{c.usage} - {c.summary}" for c in allowed]
    return [Reply(text="\n".join(lines))]


async def _forecast(
    center: CommandCenter, operator: Operator, words: list[str], key: str
) -> list[Reply]:
    if len(words) != 3:
        raise Usage("Say which bots, the symbol and the timeframe.")
    targets = _targets(words[0])
    try:
        request = ForecastRequest(symbol=words[1].upper(), horizon=words[2].lower())
    except ValidationError:
        raise Usage(
            f"{words[1]!r} {words[2]!r} is not a symbol (BTCUSDT) and timeframe (1h)."
        ) from None
    result = await center.fleet_command(Skill.FORECAST, targets, request.model_dump(), key)
    return [_result_reply(result)]


async def _tune(
    center: CommandCenter, operator: Operator, words: list[str], key: str
) -> list[Reply]:
    if not words:
        raise Usage("Say which bots.")
    targets = _targets(words[0])
    if targets.all and len(words) > 1:
        raise Usage("/tune all takes no parameters.")
    try:
        asked = coerce_cli_params(words[1:])
    except ValueError as exc:
        raise Usage(f"{exc}.") from None
    args = {"params": asked} if asked else {}
    result = await center.fleet_command(Skill.TUNE, targets, args, key)
    return [_result_reply(result)]


async def _status(
    center: CommandCenter, operator: Operator, words: list[str], key: str
) -> list[Reply]:
    if len(words) > 1:
        raise Usage("Give one bot name, or none for the fleet.")
    if words:
        from agentfleet.fleet import show_bot  # noqa: PLC0415

        view = await show_bot(center.client, _bot_name(words[0]))
        return [Reply(text=views.bot_text(view))]
    from agentfleet.commands import Targets  # noqa: PLC0415

    result = await center.fleet_command(Skill.STATUS, Targets(all=True), {}, key)
    return [_result_reply(result)]


async def _health(
    center: CommandCenter, operator: Operator, words: list[str], _k: str
) -> list[Reply]:
    if words:
        raise Usage("/health takes no arguments.")
    return [Reply(text=await asyncio.to_thread(views.health_text, center.url))]


async def _performance(
    center: CommandCenter, operator: Operator, words: list[str], key: str
) -> list[Reply]:
    from agentfleet.commands import Targets  # noqa: PLC0415

    if len(words) > 1 or (words and not WINDOW.match(words[0].lower())):
        raise Usage("The window is like 7d, 24h or 90m.")
    args = {"window": words[0].lower() if words else "7d"}
    result = await center.fleet_command(Skill.PERFORMANCE, Targets(all=True), args, key)
    return [_result_reply(result)]


async def _intelligence(
    center: CommandCenter, operator: Operator, words: list[str], _k: str
) -> list[Reply]:
    if words:
        raise Usage("/intelligence takes no arguments.")
    return [Reply(text=await asyncio.to_thread(views.patterns_text, center.url))]


async def _dashboard(
    center: CommandCenter, operator: Operator, words: list[str], _k: str
) -> list[Reply]:
    settings = center.settings
    ui = f"{settings.ui_url}/namespaces/{settings.temporal_namespace or 'default'}/workflows"
    views_list = [
        ("Bots by status", 'WorkflowType = "BotLifecycleWorkflow" AND BotStatus = "degraded"'),
        (
            "Payments pending",
            'WorkflowType = "PaymentSagaWorkflow" AND ExecutionStatus = "Running"',
        ),
        ("Content awaiting approval", 'ContentState = "awaiting_approval"'),
    ]
    lines = [f"Temporal Web UI: {ui}"]
    lines += [f"{title}: {ui}?query={quote(query)}" for title, query in views_list]
    lines += [
        f"Grafana: {settings.grafana_url}",
        "Offline snapshot: fleet report --html report.html",
    ]
    return [Reply(text="\n".join(lines))]


async def _config(
    center: CommandCenter, operator: Operator, words: list[str], _k: str
) -> list[Reply]:
    from agentfleet.fleet import configure_bot, show_bot  # noqa: PLC0415

    if len(words) < 3:
        raise Usage("Give the bot, a parameter and its value.")
    name, key, value = _bot_name(words[0]), words[1], " ".join(words[2:])
    try:
        change = coerce_cli_params([f"{key}={value}"])
    except ValueError as exc:
        raise Usage(f"{exc}.") from None
    view = await show_bot(center.client, name)
    try:
        parse_params(view.kind, {**view.params, **change})
    except ValueError as exc:
        return [Reply(text=f"Nothing changed: {exc}")]
    await asyncio.to_thread(views.audit, center.url, "telegram.config", operator.name, name, change)
    view = await configure_bot(center.client, name, change)
    return [Reply(text=f"{name} configured by {operator.name}: {key}={view.params.get(key)}")]


def _lifecycle(
    update: str,
) -> Callable[[CommandCenter, Operator, list[str], str], Awaitable[list[Reply]]]:
    async def run(
        center: CommandCenter, operator: Operator, words: list[str], _k: str
    ) -> list[Reply]:
        from agentfleet import fleet  # noqa: PLC0415

        if len(words) != 1:
            raise Usage("Give one bot name.")
        name = _bot_name(words[0])
        await asyncio.to_thread(
            views.audit, center.url, f"telegram.{update}", operator.name, name, {}
        )
        if update == "restart":
            view = await fleet.show_bot(center.client, name)
            if view.status is BotStatus.FAILED:
                view = await fleet.retry_bot(center.client, name)
            else:
                await fleet.pause_bot(center.client, name)
                view = await fleet.resume_bot(center.client, name)
        else:
            view = await getattr(fleet, f"{update}_bot")(center.client, name)
        return [Reply(text=f"{name} is {view.status.value} ({update} by {operator.name}).")]

    return run


async def _pending(
    center: CommandCenter, operator: Operator, words: list[str], _k: str
) -> list[Reply]:
    if words:
        raise Usage("/pending takes no arguments.")
    items = await asyncio.to_thread(views.awaiting_approval, center.url)
    if not items:
        return [Reply(text="Nothing awaits approval.")]
    replies = [Reply(text=f"{len(items)} item(s) await approval:")]
    for item in items[:MAX_ROWS]:
        buttons = [
            Button(text="Approve", data=f"a:{item.content_id}"),
            Button(text="Reject", data=f"r:{item.content_id}"),
            Button(text="Edit", data=f"e:{item.content_id}"),
        ]
        text = f"{item.content_id} by {item.bot} to {item.channel}:\n\n{item.text or item.brief}"
        replies.append(Reply(text=text[:MAX_TEXT], buttons=[buttons]))
    return replies


async def _approve(
    center: CommandCenter, operator: Operator, words: list[str], _k: str
) -> list[Reply]:
    if not words:
        raise Usage("Give the content id.")
    return [await center._approve(operator, words[0], " ".join(words[1:]))]


async def _reject(
    center: CommandCenter, operator: Operator, words: list[str], _k: str
) -> list[Reply]:
    if len(words) < 2:
        raise Usage("Give the content id and a reason.")
    return [await center._reject(operator, words[0], " ".join(words[1:]))]


async def _edit(
    center: CommandCenter, operator: Operator, words: list[str], _k: str
) -> list[Reply]:
    from agentfleet import content_ops  # noqa: PLC0415
    from agentfleet.content import EditInput  # noqa: PLC0415

    if len(words) < 2:
        raise Usage("Give the content id and the new text.")
    edit = EditInput(approver=operator.name, text=" ".join(words[1:]))
    view = await content_ops.steer(center.client, center.url, words[0], "edit", edit)
    return [
        Reply(
            text=f"Edited {words[0]} as {operator.name}: {view.state.value}; it is checked again."
        )
    ]


async def _payments(
    center: CommandCenter, operator: Operator, words: list[str], _k: str
) -> list[Reply]:
    if len(words) > 1:
        raise Usage("Give one bot name, or none for the whole fleet.")
    bot = _bot_name(words[0]) if words else None
    headline, rows = await asyncio.to_thread(views.payments_table, center.url, bot)
    return [_table_reply(headline, rows, views.PAYMENT_COLUMNS, f"payments-{bot or 'fleet'}")]


async def _balance(
    center: CommandCenter, operator: Operator, words: list[str], _k: str
) -> list[Reply]:
    from agentfleet.fleet import show_bot  # noqa: PLC0415

    if len(words) != 1:
        raise Usage("Give one bot name.")
    view = await show_bot(center.client, _bot_name(words[0]))
    if view.address is None:
        return [Reply(text=f"{view.name} has no wallet yet ({view.status.value}).")]
    try:
        native, fusd = await asyncio.to_thread(views.balances, center.settings, view.address)
    except Exception as exc:  # noqa: BLE001 - the chain is down or the deployment is gone
        return [Reply(text=f"Cannot read the chain now: {first_line(exc)}")]
    return [Reply(text=f"{view.name} {view.address}: {fusd} fUSD, {native} native")]


COMMANDS: dict[str, Command] = {
    c.name: c
    for c in (
        Command("start", Permission.READ, "/start", "who I am", _help),
        Command("help", Permission.READ, "/help", "this list", _help),
        Command("status", Permission.READ, "/status [NAME]", "fleet or bot status", _status),
        Command("health", Permission.READ, "/health", "bots by status, degraded ones", _health),
        Command(
            "forecast",
            Permission.READ,
            "/forecast all|NAME SYMBOL TIMEFRAME",
            "forecasts with a summary",
            _forecast,
        ),
        Command(
            "performance",
            Permission.READ,
            "/performance [7d]",
            "how forecasts did (default 7d)",
            _performance,
        ),
        Command("intelligence", Permission.READ, "/intelligence", "shared patterns", _intelligence),
        Command("dashboard", Permission.READ, "/dashboard", "Web UI and Grafana links", _dashboard),
        Command("payments", Permission.READ, "/payments [NAME]", "recent payments", _payments),
        Command("balance", Permission.READ, "/balance NAME", "a bot's wallet", _balance),
        Command("pending", Permission.READ, "/pending", "content awaiting approval", _pending),
        Command("tune", Permission.STEER, "/tune all|NAME [k=v ...]", "suggest parameters", _tune),
        Command("config", Permission.STEER, "/config NAME KEY VALUE", "set a parameter", _config),
        Command("pause", Permission.STEER, "/pause NAME", "pause a bot", _lifecycle("pause")),
        Command("resume", Permission.STEER, "/resume NAME", "resume a bot", _lifecycle("resume")),
        Command(
            "restart",
            Permission.STEER,
            "/restart NAME",
            "pause + resume (retry if failed)",
            _lifecycle("restart"),
        ),
        Command("approve", Permission.DECIDE, "/approve ID [note]", "approve content", _approve),
        Command("reject", Permission.DECIDE, "/reject ID REASON", "reject content", _reject),
        Command("edit", Permission.DECIDE, "/edit ID TEXT", "replace a draft's text", _edit),
    )
}
"""Every command, in the order /help lists them."""
