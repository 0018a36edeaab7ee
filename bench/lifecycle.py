"""Bot lifecycle benchmark: creation, fleet commands and idle cost, vs same-shape skeletons.

    python bench/lifecycle.py [--create 10] [--command-sizes 10,100,1000] [--inline-sizes 1000]
                              [--idle 1000] [--create-runs 3] [--command-runs 10]
                              [--command-burst 5] [--idle-window 10] [--quick] [--json]

Everything runs on a private dev server (set up as ``fleet up`` sets one up), a private anvil and a
SQLite database in a temporary folder, with the fleet's workers in this process; all of it is
stopped and removed at the end. Each part is measured against a skeleton on the same server in
the same run (docs/architecture.md, "Measuring"); benchmarks report, they never assert timings:

- **Fleet command**: ``forecast`` to all bots, with exactly N forecaster rows in the ``bots`` table
  (inserted directly: a command reads rows and runs batched skill activities, it needs no entity;
  their ``alpha`` cycles through ``tune``'s grid, as in a tuned fleet).
  The skeleton is a custom fan-out workflow of the same shape: one activity (the plan) then one
  activity per batch in parallel, all no-ops. Up to ``FLEET_COMMAND_INLINE_ANSWERS`` (100) bots
  the answers are inline and a batch holds 50 bots; beyond, they are stored and a batch holds
  ``agentfleet.bots.command_batches.batch_size`` bots (500 to 1,000). ``page ms`` is one read
  of the first 50 answers after the command, as ``fleet command`` does (not in p50 / p95).
  Issue 20's aims: 10,000 bots within 1 s p50, 1,000 within 1.5x the skeleton.
- **The alternative** (``--inline-sizes``): the same command with every answer in its result, as
  fleet commands answered before issue 20 (workers with ``FLEET_COMMAND_INLINE_ANSWERS`` raised
  past every size; batches of 50), against its own skeleton. A size whose result is over
  Temporal's 2 MB payload limit never answers: it is reported as failed after one try.
- **Bot creation**: ``create_bot`` then wait until the ``bots`` row reads ``active`` (wallet, two
  funding transactions, ERC-8004 registration). ``--create`` bots at once give bots/s and the
  time-to-active inside the burst; ``--create-runs`` bots one at a time give a lone bot's. The
  skeleton has as many sequential regular activities as one bot's creation ran (counted from the
  histories of the bot and of its child ``TransactionWorkflow``s; the children themselves, their
  signals and anvil are what the skeleton does not have).
- **Idle cost**: RSS and CPU of the dev server and of this process (the worker) before and after
  starting ``--idle`` idle bot entities. Each is a real ``BotLifecycleWorkflow`` started from the
  state an active bot carries across continue-as-new (status active, wallet and agent id set), so
  it writes its row once (one ``record_bot`` activity) and then waits: an idle active bot, without
  a wallet, chain or registration to pay for. Its history is shorter than a bot's first run, which
  the server keeps on disk, not in memory.

Defaults take about 90 s on a 2-core machine. ``--idle 10000`` works but is not the default: its
idle part alone takes minutes (docs/benchmarks.md, Bots, has the figures), so run it on its own,
e.g. ``--create 0 --command-sizes '' --inline-sizes '' --idle 10000``.
"""

from __future__ import annotations

import sys
from pathlib import Path

# `python bench/lifecycle.py` puts bench/ on the path, not the repository root.
sys.path.insert(1, str(Path(__file__).resolve().parent.parent))

import argparse
import asyncio
import gc
import math
import time
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import psutil
from rich.console import Console
from sqlmodel import col, delete, func, select
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client

from agentfleet import db
from agentfleet.bots.command_batches import batch_size
from agentfleet.bots.commands import (
    FleetCommand,
    FleetCommandResult,
    Targets,
    command_workflow_id,
)
from agentfleet.bots.kinds.forecaster import TUNE_ALPHAS
from agentfleet.bots.model import BotKind, BotSpec, BotStatus, Skill, bot_workflow_id
from agentfleet.models import BotRecord
from agentfleet.settings import Settings
from bench.harness import (
    BurstClock,
    Figures,
    Options,
    Run,
    Sizes,
    add_bots,
    int_list,
    measure,
    milliseconds,
    print_columns,
    print_part,
    report_console,
    scratch_fleet,
    start_idle_bot,
)
from bench.shapes import (
    counts_by_type,
    event_time,
    fan_out,
    history_counts,
    history_events,
    measure_skeleton,
    steps_skeleton,
)
from clients.bots import create_bot
from clients.commands import answers_page, run_command
from starters.stack.devchain import prepare_fleet
from workers.main import running_workers

TARGET_MS = 500.0
"""The seed blueprint's target for a cross-bot operation."""
CONCURRENCY = FleetCommand.model_fields["concurrency"].default
PARALLEL_BATCHES = FleetCommand.model_fields["parallel_batches"].default
IDLE_STARTS_IN_FLIGHT = 100
WORKER_CACHE = 1000
"""``max_cached_workflows`` of the fleet's workers (the SDK default; workers/main.py keeps it)."""
POLL_S = 0.02
INLINE_TIMEOUT_S = 30.0
"""How long the alternative's one try waits for a result it may never return."""
PAGE_SIZE = 50
"""Answers ``fleet command`` shows after the summary (``starters.cli.command.PAGE_SIZE``)."""
QUICK: dict[str, Any] = {
    "create": 1,
    "create_runs": 1,
    "command_sizes": [5],
    "inline_sizes": [],
    "command_runs": 2,
    "command_burst": 1,
    "idle": 5,
    "idle_window": 0.5,
}

OPTIONS = Options(__file__, __doc__, quick=QUICK)
OPTIONS.count("--create", 10, "bots created at once (0: skip)", low=0)
OPTIONS.count("--create-runs", 3, "bots created one at a time")
OPTIONS.add_argument(
    "--command-sizes",
    type=int_list("command sizes", 1, 100_000, allow_empty=True, unique=False),
    default=[10, 100, 1000],
    metavar="N,N,...",
    help="forecaster bots a command goes to ('' to skip)",
)
OPTIONS.add_argument(
    "--inline-sizes",
    type=int_list("inline sizes", 1, 100_000, allow_empty=True, unique=False),
    default=[1000],
    metavar="N,N,...",
    help="forecaster bots a command goes to with every answer in its result (the alternative; "
    "'' to skip)",
)
OPTIONS.count("--command-runs", 10, "sequential commands")
OPTIONS.count("--command-burst", 5, "commands at once", low=0)
OPTIONS.count("--idle", 1000, "idle bots (0: skip)", low=0)
OPTIONS.add_argument(
    "--idle-window", type=float, default=10.0, help="seconds of idleness CPU is measured over"
)


def dev_server_process() -> psutil.Process | None:
    """The ``temporal server start-dev`` child that the scratch fleet started."""
    for child in psutil.Process().children(recursive=True):
        try:
            if "start-dev" in child.cmdline():
                return child
        except psutil.Error:
            continue
    return None


class ActiveWatcher:
    """Waits for bots' rows to read ``active`` (``failed`` raises), one database poll for every
    waiting bot, so that waiting costs the server nothing."""

    def __init__(self, url: str) -> None:
        self._url = url
        self._waiting: dict[str, asyncio.Future[None]] = {}
        self._poller: asyncio.Task[None] | None = None

    async def wait(self, name: str) -> None:
        self._waiting[name] = asyncio.get_running_loop().create_future()
        if self._poller is None or self._poller.done():
            self._poller = asyncio.create_task(self._poll())
        await self._waiting[name]

    def _read(self, names: list[str]) -> list[tuple[str, str, str | None]]:
        with db.session_scope(self._url) as session:
            rows = session.exec(select(BotRecord).where(col(BotRecord.name).in_(names))).all()
            return [(row.name, row.status, row.reason) for row in rows]

    async def _poll(self) -> None:
        while self._waiting:
            for name, status, reason in await asyncio.to_thread(self._read, list(self._waiting)):
                if status not in (BotStatus.ACTIVE, BotStatus.FAILED):
                    continue
                future = self._waiting.pop(name)
                if future.done():
                    continue
                if status == BotStatus.FAILED:
                    future.set_exception(RuntimeError(f"bot {name} failed: {reason}"))
                else:
                    future.set_result(None)
            await asyncio.sleep(POLL_S)


async def command_phases(client: Client, workflow_id: str) -> dict[str, float]:
    """Where a finished command's time went, in ms, from its history's timestamps: until the
    resolve activity is scheduled (first workflow task), resolving, the batches (resolve done to
    last batch done), and finishing (last batch done to the result)."""
    events = await history_events(client, workflow_id)
    at = [event_time(event) for event in events]
    scheduled = [
        index
        for index, event in enumerate(events)
        if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
    ]
    done = [
        index
        for index, event in enumerate(events)
        if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED
    ]
    marks = [at[0], at[scheduled[0]], at[done[0]], at[done[-1]], at[-1]]
    names = ("to_resolve_ms", "resolve_ms", "batches_ms", "finish_ms")
    return {
        name: milliseconds(start, end)
        for name, start, end in zip(names, marks, marks[1:], strict=False)
    }


# -- the three parts ------------------------------------------------------------------------------


async def creation_part(
    client: Client, settings: Settings, args: argparse.Namespace, err: Console
) -> dict[str, Any]:
    tag = uuid.uuid4().hex[:6]
    watcher = ActiveWatcher(settings.effective_database_url)

    async def create_one(key: str) -> None:
        name = f"bench-{tag}-{key}"
        await create_bot(client, BotSpec(name=name, kind=BotKind.FORECASTER, owner="bench"))
        await watcher.wait(name)

    err.print(f"creating 1 + {args.create} at once + {args.create_runs} one at a time bots")
    sizes = Sizes(args.create_runs, args.create, warmup=1)
    clock = BurstClock(sizes)
    bots = await measure(
        "bot creation", create_one, shape="regular", activities=0, sizes=sizes, on_done=clock
    )
    last = bot_workflow_id(f"bench-{tag}-r{args.create_runs - 1}")
    shape = counts_by_type(await history_counts(client, last))
    activities = shape["activities"]
    bots = bots.model_copy(update={"activities": activities})
    err.print(
        f"one bot's creation: {activities} activities, {shape['child_workflows']} child "
        f"workflows, {shape['workflow_tasks']} workflow tasks, {shape['signals']} signals; "
        + ", ".join(f"{name} x{n}" for name, n in shape["activity_types"].items())
    )
    relayers = await client.count_workflows(
        'WorkflowType = "RelayerWorkflow" AND ExecutionStatus = "Running"'
    )
    created = 1 + args.create + args.create_runs
    err.print(f"{relayers.count} relayer workflows run after creating {created} bots")
    err.print(f"skeleton: {activities} sequential regular activities")
    skeleton_clock = BurstClock(sizes)
    skeleton = await measure_skeleton(
        client, activities=activities, local=False, sizes=sizes, on_done=skeleton_clock
    )
    in_burst = f"regular, {args.create} at once"
    rows = [
        skeleton,
        bots,
        skeleton_clock.row("skeleton", in_burst, skeleton),
        clock.row("bot creation", in_burst, bots),
    ]
    return {
        "bots": args.create,
        "bots_created": created,
        "relayer_workflows_running": relayers.count,
        "per_bot": shape,
        "rows": rows,
        "baseline": rows[::2],
    }


async def command_part(
    client: Client, settings: Settings, args: argparse.Namespace, err: Console
) -> dict[str, Any]:
    """``forecast`` to all bots at each of ``--command-sizes``, against its skeleton."""
    tag = uuid.uuid4().hex[:6]
    rows: list[Figures] = []
    baseline: list[Figures] = []
    sizes: list[dict[str, Any]] = []
    result_bytes: dict[str, int] = {}
    results: dict[str, FleetCommandResult] = {}
    present = 0
    async with steps_skeleton(client, "bench-fan-out") as skeleton:
        for size in sorted(args.command_sizes):
            names = [f"cmd-{tag}-{index:06d}" for index in range(present, size)]
            url = settings.effective_database_url
            await asyncio.to_thread(add_tuned_forecasters, url, names)
            present = size
            stored = size > settings.command_inline_answers
            per_batch = batch_size(size, PARALLEL_BATCHES) if stored else CONCURRENCY
            batches = math.ceil(size / per_batch)
            shape = f"1 + {batches} parallel"
            common: dict[str, Any] = {
                "shape": shape,
                "activities": 1 + batches,
                "sizes": Sizes(args.command_runs, args.command_burst, warmup=2),
            }

            async def forecast(key: str, size: int = size) -> None:
                command_id = f"bench-{tag}-{size}-{key}"
                command = FleetCommand(
                    command_id=command_id, skill=Skill.FORECAST, targets=Targets(all=True)
                )
                result = await run_command(client, command)
                if result.summary.ok != size:
                    reasons = sorted({failure.reason for failure in result.failed_batches})
                    raise RuntimeError(
                        f"{command_id}: {result.summary.ok} of {size} answered; "
                        f"{len(result.failed_batches)} batches failed: {'; '.join(reasons)}"
                    )
                result_bytes[command_id] = len(result.model_dump_json())
                results[command_id] = result

            err.print(f"fleet command to {size} bots: skeleton with {shape} activities")
            fan_out_once = skeleton.runner(fan_out(batches), str(size))
            baseline.append(await measure(f"skeleton ({size})", fan_out_once, **common))
            err.print(f"fleet command to {size} bots: forecast to all")
            row = await measure(f"forecast to {size}", forecast, **common)
            rows.append(row)
            last = f"bench-{tag}-{size}-r{args.command_runs - 1}"
            counts = await history_counts(client, command_workflow_id(last))
            started = time.perf_counter()
            first = await asyncio.to_thread(answers_page, url, results[last], 0, PAGE_SIZE)
            page_ms = (time.perf_counter() - started) * 1000
            if len(first) != min(size, PAGE_SIZE):
                raise RuntimeError(f"{last}: the first page has {len(first)} answers")
            sizes.append(
                {
                    "bots": size,
                    "answers": "stored" if stored else "inline",
                    "page_ms": page_ms,
                    "batches": batches,
                    "activities": counts["activities"],
                    "workflow_tasks": counts["workflow_tasks"],
                    "history_events": counts["events"],
                    "result_kb": result_bytes[last] / 1024,
                    **await command_phases(client, command_workflow_id(last)),
                    "p50_ms": row.p50_ms,
                    "p95_ms": row.p95_ms,
                    "p95_vs_target": row.p95_ms / TARGET_MS,
                }
            )
    await asyncio.to_thread(delete_bots, settings.effective_database_url, f"cmd-{tag}-")
    return {"target_ms": TARGET_MS, "sizes": sizes, "rows": rows, "baseline": baseline}


def add_tuned_forecasters(url: str, names: Sequence[str]) -> None:
    """Forecaster rows whose ``alpha`` cycles through ``fleet command tune``'s grid, as in a
    tuned fleet: bots that share a series and parameters give one answer, computed once
    (``Forecaster``), and a fleet of identical bots would flatter that."""
    for offset, alpha in enumerate(TUNE_ALPHAS):
        chosen = names[offset :: len(TUNE_ALPHAS)]
        add_bots(url, chosen, BotKind.FORECASTER, params={"alpha": alpha})


def delete_bots(url: str, prefix: str) -> None:
    """The rows a part added, so that the next part's ``--all`` reaches its own bots only."""
    with db.session_scope(url) as session:
        session.execute(delete(BotRecord).where(col(BotRecord.name).startswith(prefix)))


async def inline_part(
    client: Client, settings: Settings, args: argparse.Namespace, err: Console
) -> dict[str, Any]:
    """The alternative: every answer in the command's result (``FLEET_COMMAND_INLINE_ANSWERS``
    raised past every size), against its skeleton; a size whose result cannot be returned
    (Temporal's payload limit) is reported with the reason after one try."""
    tag = uuid.uuid4().hex[:6]
    url = settings.effective_database_url
    rows: list[Figures] = []
    baseline: list[Figures] = []
    failures: list[dict[str, Any]] = []
    present = 0
    async with steps_skeleton(client, "bench-fan-out-inline") as skeleton:
        for size in sorted(args.inline_sizes):
            names = [f"inl-{tag}-{index:06d}" for index in range(present, size)]
            await asyncio.to_thread(add_tuned_forecasters, url, names)
            present = size
            batches = math.ceil(size / CONCURRENCY)
            common: dict[str, Any] = {
                "shape": f"1 + {batches} parallel",
                "activities": 1 + batches,
                "sizes": Sizes(args.command_runs, 0, warmup=1),
            }

            async def forecast(key: str, size: int = size) -> None:
                command_id = f"bench-inline-{tag}-{size}-{key}"
                command = FleetCommand(
                    command_id=command_id, skill=Skill.FORECAST, targets=Targets(all=True)
                )
                try:
                    result = await asyncio.wait_for(run_command(client, command), INLINE_TIMEOUT_S)
                except TimeoutError:
                    handle = client.get_workflow_handle(command_workflow_id(command_id))
                    await handle.terminate("the benchmark stopped waiting")
                    raise RuntimeError(
                        f"no result within {INLINE_TIMEOUT_S:g} s (a result over Temporal's "
                        "2 MB payload limit is never uploaded: the workflow task fails and "
                        "retries)"
                    ) from None
                if len(result.answers) != size:
                    raise RuntimeError(f"{command_id}: {len(result.answers)} of {size} answers")

            err.print(f"answers inline, {size} bots: one try")
            try:
                await forecast("try")
            except Exception as exc:  # noqa: BLE001 - reported: this is the alternative's limit
                reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                err.print(f"answers inline, {size} bots: failed: {reason}")
                failures.append({"bots": size, "error": reason})
                continue
            err.print(f"answers inline, {size} bots: skeleton and forecast to all")
            fan_out_once = skeleton.runner(fan_out(batches), f"inline-{size}")
            baseline.append(await measure(f"skeleton ({size})", fan_out_once, **common))
            rows.append(await measure(f"inline, forecast to {size}", forecast, **common))
    await asyncio.to_thread(delete_bots, url, f"inl-{tag}-")
    return {"rows": rows, "baseline": baseline, "failures": failures}


def _cpu_s(process: psutil.Process) -> float:
    times = process.cpu_times()
    return float(times.user + times.system)


async def _cpu_percent(processes: Sequence[psutil.Process], window_s: float) -> list[float]:
    """CPU of each process over ``window_s`` of idleness (100 = one core busy)."""
    before = [_cpu_s(process) for process in processes]
    started = time.perf_counter()
    await asyncio.sleep(window_s)
    wall = time.perf_counter() - started
    return [100 * (_cpu_s(p) - b) / wall for p, b in zip(processes, before, strict=True)]


def _rss_mb(process: psutil.Process) -> float:
    return float(process.memory_info().rss) / 2**20


def _idle_count(url: str, prefix: str) -> int:
    with db.session_scope(url) as session:
        statement = select(func.count()).where(
            col(BotRecord.name).startswith(prefix), col(BotRecord.status) == "active"
        )
        return int(session.exec(statement).one())


async def idle_part(
    client: Client, settings: Settings, args: argparse.Namespace, err: Console
) -> dict[str, Any]:
    server = dev_server_process()
    if server is None:
        raise RuntimeError("cannot find the dev server process (temporal server start-dev)")
    me = psutil.Process()
    processes = {"dev server": server, "worker (this process)": me}
    gc.collect()
    err.print(f"idle: CPU of the server and the worker over {args.idle_window:g} s, no idle bots")
    rss_before = [_rss_mb(process) for process in processes.values()]
    cpu_before = await _cpu_percent(list(processes.values()), args.idle_window)

    tag = uuid.uuid4().hex[:6]
    prefix = f"idle-{tag}-"
    gate = asyncio.Semaphore(IDLE_STARTS_IN_FLIGHT)
    now = datetime.now(UTC)

    async def start(index: int) -> None:
        async with gate:
            await start_idle_bot(client, f"{prefix}{index:06d}", index, now)

    err.print(f"idle: starting {args.idle} idle bot entities")
    cpu_at_start = [_cpu_s(process) for process in processes.values()]
    started = time.perf_counter()
    await asyncio.gather(*(start(index) for index in range(args.idle)))
    start_s = time.perf_counter() - started
    url = settings.effective_database_url
    deadline = time.monotonic() + 120 + args.idle * 0.1
    while (active := await asyncio.to_thread(_idle_count, url, prefix)) < args.idle:
        if time.monotonic() > deadline:
            raise RuntimeError(f"only {active} of {args.idle} idle bots wrote their row")
        await asyncio.sleep(0.25)
    settle_s = time.perf_counter() - started
    cpu_starting = [
        _cpu_s(process) - before
        for process, before in zip(processes.values(), cpu_at_start, strict=True)
    ]
    err.print(f"idle: {args.idle} bots started in {start_s:.1f} s, all rows in {settle_s:.1f} s")
    await asyncio.sleep(3)
    gc.collect()
    rss_after = [_rss_mb(process) for process in processes.values()]
    err.print(f"idle: CPU over {args.idle_window:g} s with {args.idle} idle bots")
    cpu_after = await _cpu_percent(list(processes.values()), args.idle_window)
    return {
        "entities": args.idle,
        "mode": "active BotLifecycleWorkflow entities started from a continue-as-new state "
        "(one record_bot activity each, no chain), then idle",
        "start_s": start_s,
        "settle_s": settle_s,
        "window_s": args.idle_window,
        "worker_cache": WORKER_CACHE,
        "processes": [
            {
                "process": label,
                "pid": process.pid,
                "rss_before_mb": rss_before[index],
                "rss_after_mb": rss_after[index],
                "rss_per_bot_kb": (rss_after[index] - rss_before[index]) * 1024 / args.idle,
                "cpu_starting_pct": 100 * cpu_starting[index] / settle_s,
                "cpu_ms_per_bot_starting": 1000 * cpu_starting[index] / args.idle,
                "cpu_before_pct": cpu_before[index],
                "cpu_after_pct": cpu_after[index],
            }
            for index, (label, process) in enumerate(processes.items())
        ],
    }


# -- report ---------------------------------------------------------------------------------------


COMMAND_COLUMNS = (
    ("bots", "bots", "{}"),
    ("answers", "answers", "{}"),
    ("batches", "batches", "{}"),
    ("activities", "activities", "{}"),
    ("workflow tasks", "workflow_tasks", "{}"),
    ("events", "history_events", "{}"),
    ("result KB", "result_kb", "{:.0f}"),
    ("to resolve ms", "to_resolve_ms", "{:.0f}"),
    ("resolve ms", "resolve_ms", "{:.0f}"),
    ("batches ms", "batches_ms", "{:.0f}"),
    ("finish ms", "finish_ms", "{:.0f}"),
    ("p50 ms", "p50_ms", "{:.0f}"),
    ("p95 ms", "p95_ms", "{:.0f}"),
    ("p95 / target", "p95_vs_target", "{:.2f}"),
    ("page ms", "page_ms", "{:.0f}"),
)
IDLE_COLUMNS = (
    ("process", "process", "{}"),
    ("RSS before MB", "rss_before_mb", "{:.0f}"),
    ("RSS after MB", "rss_after_mb", "{:.0f}"),
    ("KB / bot", "rss_per_bot_kb", "{:.1f}"),
    ("CPU % idle before", "cpu_before_pct", "{:.1f}"),
    ("CPU ms / bot to start", "cpu_ms_per_bot_starting", "{:.1f}"),
    ("CPU % idle after", "cpu_after_pct", "{:.1f}"),
)


def print_report(report: dict[str, Any]) -> None:
    console = report_console()
    creation = report.get("creation")
    if creation:
        per_bot = creation["per_bot"]
        print_part(
            creation,
            console,
            title=f"Bot creation to active vs a skeleton of {per_bot['activities']} sequential "
            f"regular activities (a bot also runs {per_bot['child_workflows']} child workflows, "
            f"{per_bot['signals']} signals, {per_bot['workflow_tasks']} workflow tasks; "
            f"{creation['relayer_workflows_running']} relayer workflows run after creating "
            f"{creation['bots_created']} bots)",
        )
    commands = report.get("commands")
    if commands:
        print_part(
            commands,
            console,
            title="Fleet command `forecast` to all vs a fan-out skeleton (1 activity, then "
            "one per batch in parallel; no-ops)",
        )
        print_columns(
            f"What bounds a fleet command (target: p95 under {TARGET_MS:g} ms; the phases "
            "are the last run's, from its history)",
            COMMAND_COLUMNS,
            commands["sizes"],
            console,
        )
    inline = report.get("inline")
    if inline:
        if inline["rows"]:
            print_part(
                inline,
                console,
                title="The alternative: every answer in the result (FLEET_COMMAND_INLINE_ANSWERS "
                "raised), vs its fan-out skeleton (1 activity, then one per 50 bots)",
            )
        for failure in inline["failures"]:
            console.print(
                f"answers inline to {failure['bots']} bots: failed: {failure['error']}",
                highlight=False,
            )
    idle = report.get("idle")
    if idle:
        print_columns(
            f"Idle cost of {idle['entities']} bots ({idle['mode']}; started in "
            f"{idle['start_s']:.1f} s, settled in {idle['settle_s']:.1f} s; the worker caches "
            f"{idle['worker_cache']} workflows)",
            IDLE_COLUMNS,
            idle["processes"],
            console,
            labels=1,
        )


async def amain(argv: Sequence[str] | None = None) -> int:
    """The benchmark in a running event loop; progress on stderr, the report on stdout."""
    args = OPTIONS.read(argv)
    run = Run("lifecycle", args)
    report, err = run.report, run.err
    async with scratch_fleet("lifecycle", anvil=True) as fleet:
        client, settings = fleet.client, fleet.settings(deployer_key=fleet.funded_key())
        report["server"] = fleet.server
        async with running_workers(client, settings):
            if args.command_sizes:
                report["commands"] = await command_part(client, settings, args, err)
        if args.inline_sizes:
            inline = settings.model_copy(update={"command_inline_answers": 10**9})
            async with running_workers(client, inline):
                report["inline"] = await inline_part(client, inline, args, err)
        async with running_workers(client, settings):
            if args.create:
                err.print("deploying the contracts, funding a relayer with ETH and fUSD")
                await prepare_fleet(client, settings, fleet.anvil_url)
                report["creation"] = await creation_part(client, settings, args, err)
            if args.idle:
                report["idle"] = await idle_part(client, settings, args, err)
    return run.finish(tables=lambda: print_report(report))


def main(argv: Sequence[str] | None = None) -> int:
    """``python bench/lifecycle.py``: measure and print; returns the exit status."""
    return asyncio.run(amain(argv))


if __name__ == "__main__":
    sys.exit(main())
