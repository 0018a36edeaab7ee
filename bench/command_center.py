"""Command center benchmark: Telegram round trips of a fleet command and of a bot query, vs the
same calls made directly (the CLI's path) and vs a same-shape skeleton.

    python bench/command_center.py [--sizes 10,100] [--runs 20] [--burst 5] [--warmup 2]
                                   [--quick] [--json]

Everything runs in this process: a private dev server (set up as ``fleet up`` sets one up), a
SQLite database in a temporary folder, the fleet's workers, the sandbox Bot API and the command
center itself (``starters.telegram.bot.serve``: python-telegram-bot long polling the sandbox), all
stopped and removed at the end. The operator is one admin (``FLEET_TELEGRAM_USERS=2004:admin:
adam``) writing in their private chat. Pacing is not what is measured: the sandbox allows that
chat 50 messages a second (burst 10) and the command center's own pace per chat is 0 s
(``serve(chat_interval_s=0.0)``; ``fleet up`` uses 1 s, Telegram's limit). Benchmarks report;
they never assert timings. For each ``--sizes`` N, with exactly N forecaster rows in the
``bots`` table (inserted directly, as ``bench/lifecycle.py`` does; built-in forecasters answer
inside batched skill activities, no entity or chain):

- **Telegram** ``/forecast all BTCUSDT 1h``: from pushing the user's message into the sandbox
  (``POST /sandbox/telegram/updates``) until the whole reply has arrived there: the poller's
  ``getUpdates``, the command center's parsing, the ``FleetCommandWorkflow``, the reply's
  ``sendMessage`` and, past 20 answers, the ``sendDocument`` of the full table as CSV.
- **CLI path**: the same command through ``clients.commands.run_command``, what ``fleet
  command forecast --all`` calls. Telegram minus this is the command center's own cost.
- **skeleton**: a fan-out skeleton (``bench.shapes.fan_out``) of the command's shape, read
  from a probe command's history: one activity (``resolve_targets``), then the
  ``run_skill_batch`` activities scheduled together (``ceil(N / 50)``), all no-ops. A
  sequential ``SkeletonWorkflow`` with as many activities would put the batches one after the
  other, which the command does not.
- **/status NAME** (the ``status`` query of one idle ``BotLifecycleWorkflow``, started as
  ``bench/lifecycle.py``'s idle part starts its bots) through Telegram, vs ``fleet.show_bot``
  directly, the CLI's call: a query runs no activity, so its floor is the direct query.

``--runs`` one at a time give p50 / p95, ``--burst`` at once give commands/s (replies in the
one chat are matched to messages by count: the k-th message of a burst waits for the k-th
reply). The phases are medians over the one-at-a-time runs, from the command's history and the
sandbox's arrival times: before the workflow starts (Telegram: ``getUpdates`` picks the message
up, the sandbox answers a long poll within 5 ms of a push; parsing; the start call), the
workflow, and after it closes (the result back to the caller; Telegram: the reply's sends).

Defaults take about 16-26 s on a 2-core machine (``--quick``: about 12 s). Its figures, and what
the first runs found (the sandbox's pick-up, not the handling, was the command center's cost),
are in docs/benchmarks.md, quoted from the kept output ``docs/benchmarks/command_center.json``
(``python bench/keep.py command_center``).
"""

from __future__ import annotations

import sys
from pathlib import Path

# `python bench/command_center.py` puts bench/ on the path, not the repository root.
sys.path.insert(1, str(Path(__file__).resolve().parent.parent))

import argparse
import asyncio
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx
from rich.console import Console
from rich.table import Table
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client

from agentfleet.bots.commands import FleetCommand, Targets, command_workflow_id
from agentfleet.bots.model import BotKind, BotStatus, ForecastRequest, Skill
from agentfleet.content.model import RateLimit
from agentfleet.settings import Settings
from bench.harness import (
    Figures,
    Options,
    Run,
    Scratch,
    Sizes,
    add_bots,
    fmt,
    int_list,
    measure,
    medians,
    print_part,
    ratio,
    report_console,
    scratch_fleet,
    start_idle_bot,
    times,
)
from bench.shapes import activity_steps, fan_out, history_events, steps_skeleton, steps_text
from clients.bots import show_bot
from clients.commands import run_command
from sandbox.app import Sandbox
from sandbox.buckets import TelegramLimits
from starters.stack.components import TELEGRAM_READY_FILE
from starters.telegram import bot as telegram
from workers.main import running_workers

USER = 2004
ACCESS = f"{USER}:admin:adam"
FORECAST = ForecastRequest(symbol="BTCUSDT", horizon="1h")
FORECAST_TEXT = f"/forecast all {FORECAST.symbol} {FORECAST.horizon}"
CHAT_LIMIT = RateLimit(rate_per_s=50.0, burst=10)
LIMITS = TelegramLimits(private_chat=CHAT_LIMIT)
CHAT_INTERVAL_S = 0.0
POLL_S = 0.002
"""How often the sandbox's count of accepted messages is read while a reply is awaited."""
REPLY_TIMEOUT_S = 60.0
READY_TIMEOUT_S = 30.0
QUICK = {"runs": 3, "burst": 2, "warmup": 1}
SHORT = {"resolve_targets": "resolve", "run_skill_batch": "batch"}

OPTIONS = Options(__file__, __doc__, quick=QUICK)
OPTIONS.add_argument(
    "--sizes",
    type=int_list("sizes", 1, 10_000),
    default=[10, 100],
    metavar="N,N,...",
    help="forecaster bots",
)
OPTIONS.count("--runs", 20, "commands one at a time")
OPTIONS.count("--burst", 5, "commands at once", low=0)
OPTIONS.count("--warmup", 2, "discarded commands per row", low=0)


# -- the operator's chat --------------------------------------------------------------------------


@dataclass
class Sent:
    """One message pushed into the chat: when, the update the sandbox queued, and which of the
    bot's messages (1-based count in the chat) completes its reply."""

    pushed_at: float
    update: dict[str, Any]
    last_reply: int


@dataclass
class Chat:
    """The admin's private chat with the command center, through the sandbox."""

    sandbox: Sandbox
    http: httpx.AsyncClient
    poller: asyncio.Task[None]
    expected: int = 0
    sent: dict[str, Sent] = field(default_factory=dict)

    def accepted(self) -> int:
        """Messages the sandbox accepted from the bot (all of them are in this chat)."""
        return self.sandbox.store.telegram_counters()["accepted"]

    async def say(self, key: str, text: str, messages: int = 1) -> None:
        """Push ``text`` as the admin's message; return when ``messages`` more of the bot's
        messages have arrived than every earlier message's reply needed."""
        self.expected += messages
        last = self.expected
        pushed_at = time.time()
        pushed = await self.http.post(
            "/sandbox/telegram/updates", json={"chat_id": USER, "text": text}
        )
        pushed.raise_for_status()
        self.sent[key] = Sent(pushed_at, pushed.json(), last)
        deadline = time.monotonic() + REPLY_TIMEOUT_S
        while self.accepted() < last:
            if self.poller.done():
                self.poller.result()
                raise RuntimeError("the command center stopped polling")
            if time.monotonic() > deadline:
                raise RuntimeError(f"no reply to {text!r} within {REPLY_TIMEOUT_S:g} s")
            await asyncio.sleep(POLL_S)

    def replies(self) -> list[str]:
        return [message.text for message in self.sandbox.store.telegram_messages(str(USER))]

    def arrived_at(self, key: str) -> float:
        """Wall time the last message of ``key``'s reply was accepted."""
        messages = self.sandbox.store.telegram_messages(str(USER))
        return messages[self.sent[key].last_reply - 1].received_at.timestamp()

    def command_id(self, key: str, skill: Skill) -> str:
        """The command id the command center gave ``key``'s message (``tg-{skill}-{chat}-
        {message id}-{date}``, see ``starters/telegram/bot.py``)."""
        message = self.sent[key].update["message"]
        return f"tg-{skill.value}-{USER}-{message['message_id']}-{message['date']}"


# -- a command's shape and phases, from its history -----------------------------------------------


async def command_shape(client: Client, command_id: str) -> dict[str, Any]:
    """Activities of one finished command grouped by the workflow task that scheduled them
    (one group ran at once), and its workflow tasks and events."""
    events = await history_events(client, command_workflow_id(command_id))
    groups = activity_steps(events)
    return {
        "activities": sum(len(group) for group in groups),
        "steps": [len(group) for group in groups],
        "shape": steps_text(groups, SHORT),
        "workflow_tasks": sum(
            event.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED for event in events
        ),
        "history_events": len(events),
    }


async def phases(
    client: Client, command_id: str, asked_at: float, answered_at: float
) -> dict[str, float]:
    """ms from ``asked_at`` to the workflow's start, of the workflow, and from its close to
    ``answered_at`` (wall-clock seconds; the server runs on this machine)."""
    events = await history_events(client, command_workflow_id(command_id))
    started = events[0].event_time.ToMicroseconds() / 1e6
    closed = events[-1].event_time.ToMicroseconds() / 1e6
    return {
        "to_start_ms": (started - asked_at) * 1000,
        "workflow_ms": (closed - started) * 1000,
        "after_close_ms": (answered_at - closed) * 1000,
    }


# -- the parts ------------------------------------------------------------------------------------


def compare(direct: Figures, via_telegram: Figures) -> dict[str, Any]:
    """What the command center adds to a direct call."""
    return {
        "added_p50_ms": via_telegram.p50_ms - direct.p50_ms,
        "added_p95_ms": via_telegram.p95_ms - direct.p95_ms,
        "telegram_vs_direct_p50": ratio(via_telegram.p50_ms, direct.p50_ms),
        "telegram_vs_direct_p95": ratio(via_telegram.p95_ms, direct.p95_ms),
        "telegram_vs_direct_throughput": ratio(
            via_telegram.throughput_per_s, direct.throughput_per_s
        ),
    }


def check_replies(replies: Sequence[str], expected: str, count: int, what: str) -> None:
    """``count`` of ``replies`` start with ``expected``: a benchmark measures what works."""
    found = sum(1 for text in replies if text.startswith(expected))
    if found != count:
        wrong = next((text for text in replies if not text.startswith(expected)), "")
        raise RuntimeError(f"{what}: {found} of {count} replies read {expected!r}; e.g. {wrong!r}")


async def forecast_part(
    client: Client, settings: Settings, chat: Chat, args: argparse.Namespace, err: Console
) -> dict[str, Any]:
    tag = uuid.uuid4().hex[:6]
    url = settings.effective_database_url
    rows: list[Figures] = []
    baseline: list[Figures] = []
    sizes: list[dict[str, Any]] = []
    asked_answered: dict[str, tuple[float, float]] = {}
    """Wall times each direct command was asked and answered, by command id."""
    present = 0
    plan = Sizes(args.runs, args.burst, args.warmup)
    async with steps_skeleton(client, "bench-fan-out") as skeleton:
        for size in sorted(args.sizes):
            names = [f"cc-{tag}-{index:06d}" for index in range(present, size)]
            await asyncio.to_thread(add_bots, url, names, BotKind.FORECASTER, params={})
            present = size
            messages = 1 if size <= settings.telegram_max_rows else 2

            async def direct(key: str, size: int = size) -> None:
                command_id = f"bench-cc-{tag}-{size}-{key}"
                command = FleetCommand(
                    command_id=command_id,
                    skill=Skill.FORECAST,
                    args=FORECAST.model_dump(),
                    targets=Targets(all=True),
                )
                asked = time.time()
                result = await run_command(client, command)
                asked_answered[command_id] = (asked, time.time())
                if result.summary.ok != size:
                    raise RuntimeError(f"{command_id}: {result.summary.ok} of {size} answered")

            async def via_telegram(key: str, size: int = size, messages: int = messages) -> None:
                await chat.say(f"{size}-{key}", FORECAST_TEXT, messages)

            err.print(f"forecast to {size} bots: a probe command's shape, from its history")
            await direct("probe")
            shape = await command_shape(client, f"bench-cc-{tag}-{size}-probe")
            if len(shape["steps"]) != 2 or shape["steps"][0] != 1:
                raise RuntimeError(f"a command is not one activity then a fan-out: {shape}")
            parallel = shape["steps"][1]
            common: dict[str, Any] = {
                "shape": f"1 + {parallel} parallel",
                "activities": shape["activities"],
                "sizes": plan,
            }
            err.print(f"forecast to {size} bots: skeleton ({shape['shape']}, no-ops)")
            fan_out_once = skeleton.runner(fan_out(parallel), str(size))
            floor = await measure(f"skeleton ({size})", fan_out_once, **common)
            err.print(f"forecast to {size} bots: run_command (the CLI's path)")
            cli = await measure(f"CLI path ({size})", direct, **common)
            err.print(f"forecast to {size} bots: {FORECAST_TEXT} through Telegram")
            before = len(chat.replies())
            tg = await measure(f"Telegram ({size})", via_telegram, **common)
            commands = plan.total
            replies = chat.replies()[before:]
            if len(replies) != commands * messages:
                raise RuntimeError(f"{commands} commands got {len(replies)} messages back")
            headline = f"{Skill.FORECAST.value} to all bots: {size} ok, 0 failed"
            check_replies(replies, headline, commands, "forecast")
            baseline.append(floor)
            rows += [floor, cli, tg]

            sequential = [f"r{index}" for index in range(args.runs)]
            cli_phases = [
                await phases(client, command_id, *asked_answered[command_id])
                for command_id in (f"bench-cc-{tag}-{size}-{key}" for key in sequential)
            ]
            tg_phases = [
                await phases(
                    client,
                    chat.command_id(f"{size}-{key}", Skill.FORECAST),
                    chat.sent[f"{size}-{key}"].pushed_at,
                    chat.arrived_at(f"{size}-{key}"),
                )
                for key in sequential
            ]
            sizes.append(
                {
                    "bots": size,
                    **shape,
                    "messages_per_reply": messages,
                    "cli_phases_ms": medians(cli_phases),
                    "telegram_phases_ms": medians(tg_phases),
                    "cli_vs_skeleton_p50": ratio(cli.p50_ms, floor.p50_ms),
                    "telegram_vs_skeleton_p50": ratio(tg.p50_ms, floor.p50_ms),
                    **compare(cli, tg),
                }
            )
    return {"command": FORECAST_TEXT, "sizes": sizes, "rows": rows, "baseline": baseline}


async def status_part(
    client: Client, chat: Chat, args: argparse.Namespace, err: Console
) -> dict[str, Any]:
    name = f"cc-status-{uuid.uuid4().hex[:6]}"
    err.print(f"/status {name}: starting one idle active bot entity")
    await start_idle_bot(client, name, 0, datetime.now(UTC))
    deadline = time.monotonic() + REPLY_TIMEOUT_S
    while (await show_bot(client, name)).status is not BotStatus.ACTIVE:
        if time.monotonic() > deadline:
            raise RuntimeError(f"bot {name} did not become active")
        await asyncio.sleep(0.05)

    async def direct(key: str) -> None:
        await show_bot(client, name)

    async def via_telegram(key: str) -> None:
        await chat.say(f"status-{key}", f"/status {name}")

    common: dict[str, Any] = {
        "shape": "query",
        "activities": 0,
        "sizes": Sizes(args.runs, args.burst, args.warmup),
    }
    err.print(f"/status {name}: show_bot (the CLI's query), then through Telegram")
    shown = await measure("show_bot", direct, **common)
    before = len(chat.replies())
    tg = await measure(f"Telegram /status {name}", via_telegram, **common)
    check_replies(chat.replies()[before:], f"{name} (forecaster", common["sizes"].total, "/status")
    return {"bot": name, **compare(shown, tg), "rows": [shown, tg], "baseline": [shown]}


# -- report ---------------------------------------------------------------------------------------


def print_report(report: dict[str, Any]) -> None:
    console = report_console()
    forecast = report["forecast"]
    print_part(
        forecast,
        console,
        title=f"`{forecast['command']}` to N bots: through Telegram (push to reply in the "
        "sandbox), the CLI's run_command, and a fan-out skeleton of the command's shape "
        "(1 activity, then the batches at once; no-ops)",
    )
    status = report["status"]
    print_part(
        status,
        console,
        title="`/status NAME` (a workflow query) through Telegram vs show_bot directly "
        "(the ratios are to show_bot)",
    )
    table = Table(title="What the command center adds (Telegram minus the direct call)")
    for header in ("command", "added p50 ms", "added p95 ms", "Telegram / direct p50"):
        table.add_column(header, justify="right")
    table.add_column("Telegram / skeleton p50", justify="right")
    table.add_column("direct / skeleton p50", justify="right")
    for size in forecast["sizes"]:
        table.add_row(
            f"/forecast all, {size['bots']} bots",
            fmt(size["added_p50_ms"]),
            fmt(size["added_p95_ms"]),
            times(size["telegram_vs_direct_p50"]),
            times(size["telegram_vs_skeleton_p50"]),
            times(size["cli_vs_skeleton_p50"]),
        )
    table.add_row(
        "/status NAME",
        fmt(status["added_p50_ms"]),
        fmt(status["added_p95_ms"]),
        times(status["telegram_vs_direct_p50"]),
        "-",
        "-",
    )
    console.print(table)
    table = Table(
        title="Where a forecast command's time goes (medians of the one-at-a-time runs; "
        "Telegram: push to the reply's last message)"
    )
    for header in ("path", "bots", "shape", "before start ms", "workflow ms", "after close ms"):
        table.add_column(header, justify="right")
    for size in forecast["sizes"]:
        for path, key in (("CLI", "cli_phases_ms"), ("Telegram", "telegram_phases_ms")):
            measured = size[key]
            table.add_row(
                path,
                str(size["bots"]),
                size["shape"],
                fmt(measured["to_start_ms"]),
                fmt(measured["workflow_ms"]),
                fmt(measured["after_close_ms"]),
            )
    console.print(table)


async def _until_ready(ready: Path, poller: asyncio.Task[None]) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while not await asyncio.to_thread(ready.exists):
        if poller.done():
            poller.result()
            raise RuntimeError("the command center stopped before polling")
        if time.monotonic() > deadline:
            raise RuntimeError(f"the command center was not polling after {READY_TIMEOUT_S:g} s")
        await asyncio.sleep(0.05)


async def measure_all(fleet: Scratch, args: argparse.Namespace, err: Console) -> dict[str, Any]:
    """The forecast and /status parts, with the command center polling the sandbox."""
    if fleet.sandbox is None:
        raise RuntimeError("the command center needs the sandbox's Bot API")
    report: dict[str, Any] = {"server": fleet.server}
    client, settings = fleet.client, fleet.settings(openai_base_url=None, telegram_users=ACCESS)
    stop = asyncio.Event()
    async with (
        running_workers(client, settings),
        httpx.AsyncClient(base_url=fleet.sandbox.url) as http,
    ):
        poller = asyncio.create_task(
            telegram.serve(settings, client, stop, chat_interval_s=CHAT_INTERVAL_S)
        )
        try:
            await _until_ready(fleet.home / TELEGRAM_READY_FILE, poller)
            chat = Chat(fleet.sandbox, http, poller)
            report["forecast"] = await forecast_part(client, settings, chat, args, err)
            report["status"] = await status_part(client, chat, args, err)
        finally:
            stop.set()
            await asyncio.wait_for(poller, 30)
    counters = fleet.sandbox.store.telegram_counters()
    report["telegram"] = {
        "chat_limit": CHAT_LIMIT.model_dump(),
        "chat_interval_s": CHAT_INTERVAL_S,
        "messages": counters["accepted"],
        "rate_limited_429": counters["rate_limited"],
    }
    return report


async def amain(argv: Sequence[str] | None = None) -> int:
    """The benchmark in a running event loop; progress on stderr, the report on stdout."""
    args = OPTIONS.read(argv)
    run = Run("command_center", args, runs=args.runs, burst=args.burst, warmup=args.warmup)
    async with scratch_fleet("command-center", sandbox_limits=LIMITS) as fleet:
        run.report.update(await measure_all(fleet, args, run.err))
    return run.finish(tables=lambda: print_report(run.report))


def main(argv: Sequence[str] | None = None) -> int:
    """``python bench/command_center.py``: measure and print; returns the exit status."""
    return asyncio.run(amain(argv))


if __name__ == "__main__":
    sys.exit(main())
