"""Every command of the Telegram command center. Each validates its words first (``Usage``: one
line of help, nothing changed), then calls what the CLI calls."""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from pydantic import ValidationError

from agentfleet.bots.model import NAME_PATTERN, BotKind, ForecastRequest, Skill, coerce_cli_params
from agentfleet.bots.params import guarded_params, parse_params
from agentfleet.errors import FleetError, first_line
from agentfleet.netguard import UrlRule
from agentfleet.operations.operators import Operator, Permission
from starters.telegram import views
from starters.telegram.replies import (
    DISCLOSURE,
    FIRST_ROWS,
    FollowRun,
    NotAllowed,
    Reply,
    Usage,
    answers_page_reply,
    pending_replies,
    result_reply,
    table_reply,
)

if TYPE_CHECKING:
    from temporalio.client import Client

    from agentfleet.bots.commands import FleetCommandResult, Targets
    from agentfleet.settings import Settings


class CommandCenter(Protocol):
    """What a handler uses of the command center (``starters.telegram.center``, which holds the
    handlers: a protocol here instead of an import back)."""

    client: Client
    settings: Settings
    url: str

    async def fleet_command(
        self, skill: Skill, targets: Targets, args: dict[str, Any], key: str
    ) -> FleetCommandResult: ...

    async def approve(self, operator: Operator, content_id: str, note: str) -> Reply: ...

    async def reject(self, operator: Operator, content_id: str, reason: str) -> Reply: ...


log = logging.getLogger("agentfleet.telegram")
WINDOW = re.compile(r"^[1-9][0-9]*[mhd]$")


@dataclass(frozen=True)
class Command:
    name: str
    permission: Permission
    usage: str
    summary: str
    run: Callable[[CommandCenter, Operator, list[str], str], Awaitable[list[Reply]]]


def _bot_name(word: str) -> str:
    if not NAME_PATTERN.match(word):
        raise Usage(f"{word!r} is not a bot name.")
    return word


def _targets(word: str) -> Targets:
    from agentfleet.bots.commands import Targets

    return Targets(all=True) if word.lower() == "all" else Targets(names=[_bot_name(word)])


async def _answer_reply(center: CommandCenter, result: FleetCommandResult) -> Reply:
    """The reply to a fleet command: its summary and first answers (a large command's are read
    from the database; when they cannot be, the summary says where they are)."""
    if result.answers_ref is None:
        return result_reply(result, center.settings.telegram_max_rows)
    from clients.commands import answers_page

    try:
        first = await asyncio.to_thread(answers_page, center.url, result, 0, FIRST_ROWS)
    except Exception:  # noqa: BLE001 - the summary is the answer; the rows are a courtesy
        log.warning("could not read the answers of command %s", result.command_id)
        first = []
    return result_reply(result, center.settings.telegram_max_rows, first)


async def _answers(
    center: CommandCenter, operator: Operator, words: list[str], _k: str
) -> list[Reply]:
    from agentfleet.bots.commands import COMMAND_ID_PATTERN
    from clients.commands import answered_command, answers_page

    if not 1 <= len(words) <= 2 or not re.match(COMMAND_ID_PATTERN, words[0]):
        raise Usage("Give a command's id and, optionally, a page number.")
    if len(words) == 2 and not (words[1].isdigit() and 1 <= int(words[1]) <= 1_000_000):
        raise Usage(f"{words[1][:20]!r} is not a page number (1, 2 ...).")
    page = int(words[1]) if len(words) == 2 else 1
    size = center.settings.telegram_max_rows
    try:
        result = await answered_command(center.client, words[0])
    except FleetError as exc:
        return [Reply(text=f"{exc}.")]
    pages = max(1, -(-result.answer_count // size))
    if page > pages:
        return [Reply(text=f"Page {page} is past the last one, {pages} ({size} answers a page).")]
    try:
        shown = await asyncio.to_thread(answers_page, center.url, result, (page - 1) * size, size)
    except Exception:  # noqa: BLE001 - the database is the operators' to fix; say so in one line
        log.warning("could not read the answers of command %s", result.command_id)
        return [Reply(text=f"The answers of {result.command_id} cannot be read now.")]
    if result.answer_count and not shown:
        return [Reply(text=f"The answers of {result.command_id} are no longer stored.")]
    return [answers_page_reply(result, page, size, shown)]


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
    return [await _answer_reply(center, result)]


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
    return [await _answer_reply(center, result)]


async def _status(
    center: CommandCenter, operator: Operator, words: list[str], key: str
) -> list[Reply]:
    if len(words) > 1:
        raise Usage("Give one bot name, or none for the fleet.")
    if words:
        from clients.bots import show_bot

        view = await show_bot(center.client, _bot_name(words[0]))
        return [Reply(text=views.bot_text(view))]
    from agentfleet.bots.commands import Targets

    result = await center.fleet_command(Skill.STATUS, Targets(all=True), {}, key)
    return [await _answer_reply(center, result)]


def _report(
    name: str, text_of: Callable[[str], str]
) -> Callable[[CommandCenter, Operator, list[str], str], Awaitable[list[Reply]]]:
    """A command without arguments that answers ``text_of(database_url)`` (read in a thread)."""

    async def run(
        center: CommandCenter, operator: Operator, words: list[str], _k: str
    ) -> list[Reply]:
        if words:
            raise Usage(f"/{name} takes no arguments.")
        return [Reply(text=await asyncio.to_thread(text_of, center.url))]

    return run


async def _performance(
    center: CommandCenter, operator: Operator, words: list[str], key: str
) -> list[Reply]:
    from agentfleet.bots.commands import Targets

    if len(words) > 1 or (words and not WINDOW.match(words[0].lower())):
        raise Usage("The window is like 7d, 24h or 90m.")
    args = {"window": words[0].lower() if words else "7d"}
    result = await center.fleet_command(Skill.PERFORMANCE, Targets(all=True), args, key)
    return [await _answer_reply(center, result)]


async def _dashboard(
    center: CommandCenter, operator: Operator, words: list[str], _k: str
) -> list[Reply]:
    if words:
        raise Usage("/dashboard takes no arguments.")
    return [Reply(text=views.dashboard_text(center.settings))]


async def _config(
    center: CommandCenter, operator: Operator, words: list[str], _k: str
) -> list[Reply]:
    from clients.bots import configure_bot, show_bot

    if len(words) < 3:
        raise Usage("Give the bot, a parameter and its value.")
    name, key, value = _bot_name(words[0]), words[1], " ".join(words[2:])
    try:
        change = coerce_cli_params([f"{key}={value}"])
    except ValueError as exc:
        raise Usage(f"{exc}.") from None
    # Guarded in any kind counts, so the check needs nothing read from the fleet first.
    guarded = {k: v for kind in BotKind for k, v in guarded_params(kind).items()}
    touched = sorted(k for k in change if k in guarded)
    if touched and not operator.may(Permission.MONEY_AND_URLS):
        kinds = " and ".join(sorted({guarded[k] for k in touched}))
        raise NotAllowed(f"/config {', '.join(touched)} ({kinds} settings need an admin)")
    view = await show_bot(center.client, name)
    urls = UrlRule.of(center.settings)
    try:
        parse_params(view.kind, {**view.params, **change}, urls=urls)
    except ValueError as exc:
        return [Reply(text=f"Nothing changed: {exc}")]
    await asyncio.to_thread(views.audit, center.url, "telegram.config", operator.name, name, change)
    view = await configure_bot(center.client, name, change, urls)
    return [Reply(text=f"{name} configured by {operator.name}: {key}={view.params.get(key)}")]


def _lifecycle(
    update: str,
) -> Callable[[CommandCenter, Operator, list[str], str], Awaitable[list[Reply]]]:
    async def run(
        center: CommandCenter, operator: Operator, words: list[str], _k: str
    ) -> list[Reply]:
        from clients import bots as fleet

        if len(words) != 1:
            raise Usage("Give one bot name.")
        name = _bot_name(words[0])
        await asyncio.to_thread(
            views.audit, center.url, f"telegram.{update}", operator.name, name, {}
        )
        view = await getattr(fleet, f"{update}_bot")(center.client, name)
        return [Reply(text=f"{name} is {view.status.value} ({update} by {operator.name}).")]

    return run


async def _pending(
    center: CommandCenter, operator: Operator, words: list[str], _k: str
) -> list[Reply]:
    if words:
        raise Usage("/pending takes no arguments.")
    items = await asyncio.to_thread(views.awaiting_approval, center.url)
    return pending_replies(items, center.settings.telegram_max_rows)


async def _approve(
    center: CommandCenter, operator: Operator, words: list[str], _k: str
) -> list[Reply]:
    if not words:
        raise Usage("Give the content id.")
    return [await center.approve(operator, words[0], " ".join(words[1:]))]


async def _reject(
    center: CommandCenter, operator: Operator, words: list[str], _k: str
) -> list[Reply]:
    if len(words) < 2:
        raise Usage("Give the content id and a reason.")
    return [await center.reject(operator, words[0], " ".join(words[1:]))]


async def _edit(
    center: CommandCenter, operator: Operator, words: list[str], _k: str
) -> list[Reply]:
    from agentfleet.content.model import EditInput
    from clients import content

    if len(words) < 2:
        raise Usage("Give the content id and the new text.")
    edit = EditInput(approver=operator.name, text=" ".join(words[1:]))
    view = await content.steer(center.client, center.url, words[0], "edit", edit)
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
    stem = f"payments-{bot or 'fleet'}"
    max_rows = center.settings.telegram_max_rows
    return [table_reply(headline, rows, views.PAYMENT_COLUMNS, stem, max_rows)]


async def _balance(
    center: CommandCenter, operator: Operator, words: list[str], _k: str
) -> list[Reply]:
    from clients.bots import show_bot

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


async def _ask(
    center: CommandCenter, operator: Operator, words: list[str], key: str
) -> list[Reply]:
    from agentfleet.agents.model import RunSource
    from clients import agents

    if len(words) < 2:
        raise Usage("Give the agent and the task.")
    bot = _bot_name(words[0])
    # The message's key keys the run too: a message handled again attaches to its first run.
    run_id = await agents.ask(
        center.client,
        center.settings,
        bot,
        " ".join(words[1:]),
        source=RunSource.TELEGRAM,
        requested_by=operator.name,
        key=f"telegram-{key}" if key else None,
    )
    detail = {"bot": bot, "run_id": run_id}
    await asyncio.to_thread(views.audit, center.url, "telegram.ask", operator.name, run_id, detail)
    return [
        Reply(
            text=f"Run {run_id} started: {bot} works on it. Its answer, or a tool call that "
            "waits for approval, follows here.",
            follow=FollowRun(run_id=run_id),
        )
    ]


async def _usage(
    center: CommandCenter, operator: Operator, words: list[str], _k: str
) -> list[Reply]:
    if len(words) > 1:
        raise Usage("Give one agent's name, or none for every agent.")
    bot = _bot_name(words[0]) if words else None
    headline, rows = await asyncio.to_thread(views.usage_table, center.settings, bot)
    stem = f"usage-{bot or 'agents'}"
    return [
        table_reply(headline, rows, views.USAGE_COLUMNS, stem, center.settings.telegram_max_rows)
    ]


COMMANDS: dict[str, Command] = {
    c.name: c
    for c in (
        Command("start", Permission.READ, "/start", "who I am", _help),
        Command("help", Permission.READ, "/help", "this list", _help),
        Command("status", Permission.READ, "/status [NAME]", "fleet or bot status", _status),
        Command(
            "health",
            Permission.READ,
            "/health",
            "bots by status, degraded ones",
            _report("health", views.health_text),
        ),
        Command(
            "forecast",
            Permission.READ,
            "/forecast all|NAME SYMBOL TIMEFRAME",
            "forecasts with a summary",
            _forecast,
        ),
        Command(
            "answers",
            Permission.READ,
            "/answers COMMAND_ID [PAGE]",
            "a fleet command's answers, a page at a time",
            _answers,
        ),
        Command(
            "performance",
            Permission.READ,
            "/performance [7d]",
            "how forecasts did (default 7d)",
            _performance,
        ),
        Command(
            "alerts",
            Permission.READ,
            "/alerts",
            "the newest grouped alerts",
            _report("alerts", views.alerts_text),
        ),
        Command(
            "intelligence",
            Permission.READ,
            "/intelligence",
            "shared patterns",
            _report("intelligence", views.patterns_text),
        ),
        Command("dashboard", Permission.READ, "/dashboard", "Web UI and Grafana links", _dashboard),
        Command("payments", Permission.READ, "/payments [NAME]", "recent payments", _payments),
        Command("balance", Permission.READ, "/balance NAME", "a bot's wallet", _balance),
        Command("pending", Permission.READ, "/pending", "content awaiting approval", _pending),
        Command(
            "usage",
            Permission.READ,
            "/usage [AGENT]",
            "agents' model calls, tokens and spending today",
            _usage,
        ),
        Command("tune", Permission.STEER, "/tune all|NAME [k=v ...]", "suggest parameters", _tune),
        Command(
            "config",
            Permission.STEER,
            "/config NAME KEY VALUE",
            "set a parameter (prices, spending, url: admin)",
            _config,
        ),
        Command("ask", Permission.STEER, "/ask AGENT TASK", "give an agent a task", _ask),
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
