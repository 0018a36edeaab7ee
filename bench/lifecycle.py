"""Bot lifecycle benchmark: creation, fleet commands and idle cost, vs same-shape skeletons.

    python bench/lifecycle.py [--json] [--create 10] [--command-sizes 10,100,1000] [--idle 1000]
                              [--create-runs 3] [--command-runs 10] [--command-burst 5]
                              [--idle-window 10]

Everything runs on a private dev server (set up as ``fleet up`` sets one up), a private anvil and a
SQLite database in a temporary folder, with the fleet's workers in this process; all of it is
stopped and removed at the end. Three parts, each measured against a skeleton on the same server in
the same run (ARCHITECTURE.md, "Measuring speed"); benchmarks report, they never assert timings:

- **Bot creation**: ``create_bot`` then wait until the ``bots`` row reads ``active`` (wallet, two
  funding transactions, ERC-8004 registration). ``--create`` bots at once give bots/s and the
  time-to-active inside the burst; ``--create-runs`` bots one at a time give a lone bot's. The
  skeleton has as many sequential regular activities as one bot's creation ran (counted from the
  histories of the bot and of its child ``TransactionWorkflow``s; the children themselves, their
  signals and anvil are what the skeleton does not have).
- **Fleet command**: ``forecast`` to all bots, with exactly N forecaster rows in the ``bots`` table
  (inserted directly: a command reads rows and runs batched skill activities, it needs no entity).
  The skeleton is a custom fan-out workflow of the same shape: one activity (resolve) then
  ``ceil(N / 50)`` activities in parallel (the batches), all no-ops.
- **Idle cost**: RSS and CPU of the dev server and of this process (the worker) before and after
  starting ``--idle`` idle bot entities. Each is a real ``BotLifecycleWorkflow`` started from the
  state an active bot carries across continue-as-new (status active, wallet and agent id set), so
  it writes its row once (one ``record_bot`` activity) and then waits: an idle active bot, without
  a wallet, chain or registration to pay for. Its history is shorter than a bot's first run, which
  the server keeps on disk, not in memory.

Defaults take about 80 s on a 2-core machine. ``--idle 10000`` works but is not the default: its
idle part alone took about 4.5 minutes here (50 s of start calls, 260 s until every row was
written: about 40 ms of CPU per bot between the server and the worker), so run it on its own,
e.g. ``--create 0 --command-sizes '' --idle 10000``.
"""

from __future__ import annotations

import sys
from pathlib import Path

# `python bench/lifecycle.py` puts bench/ on the path, not the repository root.
sys.path.insert(1, str(Path(__file__).resolve().parent.parent))

import argparse
import asyncio
import gc
import json
import math
import time
import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import psutil
from pydantic import BaseModel, SecretStr
from rich.console import Console
from rich.table import Table
from sqlmodel import col, func, select
from temporalio import workflow
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client
from temporalio.worker import Worker
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

from activities.skeleton import noop
from agentfleet import db, taskqueues
from agentfleet.bots.commands import FleetCommand, Targets, command_workflow_id
from agentfleet.bots.model import (
    BotKind,
    BotLifecycleInput,
    BotSpec,
    BotState,
    BotStatus,
    Skill,
    bot_workflow_id,
)
from agentfleet.messages import NoopInput, NoopResult
from agentfleet.models import BotRecord
from agentfleet.settings import Settings
from bench.cli import at_least, finish, int_list, scratch_home
from bench.skeleton import (
    Figures,
    bench_server,
    dump_json,
    figures_from,
    measure,
    measure_skeleton,
    print_table,
    skeleton_worker,
)
from clients.bots import create_bot, search_attributes_for
from clients.commands import run_command
from starters.stack.devchain import funded_account, prepare_fleet, private_anvil
from workers.main import running_workers
from workflows.bot_lifecycle import BotLifecycleWorkflow

TARGET_MS = 500.0
"""The seed blueprint's target for a cross-bot operation."""
BATCH_SIZE = FleetCommand.model_fields["concurrency"].default
IDLE_STARTS_IN_FLIGHT = 100
WORKER_CACHE = 1000
"""``max_cached_workflows`` of the fleet's workers (the SDK default; workers/main.py keeps it)."""
POLL_S = 0.02


# -- the fan-out skeleton (same shape as a fleet command) -----------------------------------------


class FanOutInput(BaseModel):
    parallel: int
    task_queue: str


@workflow.defn(name="BenchFanOutSkeleton")
class FanOutSkeletonWorkflow:
    """One no-op activity, then ``parallel`` no-op activities at once: resolve, then batches."""

    @workflow.run
    async def run(self, shape: FanOutInput) -> int:
        options: dict[str, Any] = {
            "result_type": NoopResult,
            "task_queue": shape.task_queue,
            "start_to_close_timeout": timedelta(seconds=10),
        }
        await workflow.execute_activity("noop", NoopInput(step=0), **options)
        await asyncio.gather(
            *(
                workflow.execute_activity("noop", NoopInput(step=step + 1), **options)
                for step in range(shape.parallel)
            )
        )
        return 1 + shape.parallel


FAN_OUT_RUNNER = SandboxedWorkflowRunner(
    restrictions=SandboxRestrictions.default.with_passthrough_modules(
        "agentfleet", "pydantic", "pydantic_core", "annotated_types", "bench"
    )
)
"""The fleet worker's sandbox, plus this module passed through (not re-imported per run, as the
fleet's own small workflow modules are cheap to re-import)."""


# -- set-up ---------------------------------------------------------------------------------------


def dev_server_process() -> psutil.Process | None:
    """The ``temporal server start-dev`` child that :func:`bench_server` started."""
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


@dataclass
class BurstClock:
    """Time-to-done of each workflow of :func:`measure`'s burst, from its ``on_done`` calls:
    the burst starts when the last warm-up ends, and all its workflows start together."""

    warmup: int
    """At least 1: the end of the last warm-up is the burst's start."""
    burst: int
    calls: list[float] = field(default_factory=list)

    def __call__(self) -> None:
        self.calls.append(time.perf_counter())

    def latencies(self) -> list[float]:
        start = self.calls[self.warmup - 1]
        return [done - start for done in self.calls[self.warmup : self.warmup + self.burst]]


def burst_row(name: str, shape: str, row: Figures, clock: BurstClock) -> Figures:
    return figures_from(
        name,
        shape=shape,
        activities=row.activities,
        latencies_s=clock.latencies(),
        burst=row.burst,
        burst_wall_s=row.burst / row.throughput_per_s if row.throughput_per_s else 0.0,
    )


async def history_counts(client: Client, workflow_id: str) -> Counter[str]:
    """Activities, local activities, workflow tasks, signals, child workflows and events of one
    workflow and its children; ``activity.<type>`` counts each (regular) activity type."""
    history = await client.get_workflow_handle(workflow_id).fetch_history()
    counts: Counter[str] = Counter(events=len(history.events))
    for event in history.events:
        kind = event.event_type
        if kind == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
            counts["activities"] += 1
            counts[
                f"activity.{event.activity_task_scheduled_event_attributes.activity_type.name}"
            ] += 1
        elif (
            kind == EventType.EVENT_TYPE_MARKER_RECORDED
            and event.marker_recorded_event_attributes.marker_name == "core_local_activity"
        ):
            counts["local_activities"] += 1
        elif kind == EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED:
            counts["workflow_tasks"] += 1
        elif kind in (
            EventType.EVENT_TYPE_SIGNAL_EXTERNAL_WORKFLOW_EXECUTION_INITIATED,
            EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED,
        ):
            counts["signals"] += 1
        elif kind == EventType.EVENT_TYPE_START_CHILD_WORKFLOW_EXECUTION_INITIATED:
            counts["child_workflows"] += 1
            child = event.start_child_workflow_execution_initiated_event_attributes.workflow_id
            counts.update(await history_counts(client, child))
    return counts


async def command_phases(client: Client, workflow_id: str) -> dict[str, float]:
    """Where a finished command's time went, in ms, from its history's timestamps: until the
    resolve activity is scheduled (first workflow task), resolving, the batches (resolve done to
    last batch done), and finishing (last batch done to the result)."""
    history = await client.get_workflow_handle(workflow_id).fetch_history()
    events = history.events
    at = [event.event_time.ToDatetime() for event in events]
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
        name: (end - start).total_seconds() * 1000
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
    clock = BurstClock(warmup=1, burst=args.create)
    bots = await measure(
        "bot creation",
        create_one,
        shape="regular",
        activities=0,
        runs=args.create_runs,
        burst=args.create,
        warmup=1,
        on_done=clock,
    )
    counts = await history_counts(client, bot_workflow_id(f"bench-{tag}-r{args.create_runs - 1}"))
    types = {
        key.removeprefix("activity."): value
        for key, value in sorted(counts.items())
        if key.startswith("activity.")
    }
    shape: dict[str, Any] = {
        **{key: value for key, value in counts.items() if not key.startswith("activity.")},
        "activity_types": types,
    }
    activities = shape["activities"]
    bots = bots.model_copy(update={"activities": activities})
    err.print(
        f"one bot's creation: {activities} activities, {shape['child_workflows']} child "
        f"workflows, {shape['workflow_tasks']} workflow tasks, {shape['signals']} signals; "
        + ", ".join(f"{name} x{n}" for name, n in types.items())
    )
    relayers = await client.count_workflows(
        'WorkflowType = "RelayerWorkflow" AND ExecutionStatus = "Running"'
    )
    created = 1 + args.create + args.create_runs
    err.print(f"{relayers.count} relayer workflows run after creating {created} bots")
    err.print(f"skeleton: {activities} sequential regular activities")
    queue = f"bench-skeleton-{tag}"
    skeleton_clock = BurstClock(warmup=1, burst=args.create)
    async with skeleton_worker(client, queue):
        skeleton = await measure_skeleton(
            client,
            activities=activities,
            local=False,
            runs=args.create_runs,
            burst=args.create,
            task_queue=queue,
            warmup=1,
            on_done=skeleton_clock,
        )
    in_burst = f"regular, {args.create} at once"
    rows = [
        skeleton,
        bots,
        burst_row("skeleton", in_burst, skeleton, skeleton_clock),
        burst_row("bot creation", in_burst, bots, clock),
    ]
    return {
        "bots": args.create,
        "bots_created": created,
        "relayer_workflows_running": relayers.count,
        "per_bot": shape,
        "rows": rows,
        "baseline": rows[::2],
    }


def insert_forecasters(url: str, names: Sequence[str]) -> None:
    with db.session_scope(url) as session:
        for name in names:
            session.add(
                BotRecord(name=name, kind="forecaster", owner="bench", status="active", params={})
            )


async def command_part(
    client: Client, settings: Settings, args: argparse.Namespace, err: Console
) -> dict[str, Any]:
    tag = uuid.uuid4().hex[:6]
    queue = f"bench-fan-out-{tag}"
    rows: list[Figures] = []
    baseline: list[Figures] = []
    sizes: list[dict[str, Any]] = []
    result_bytes: dict[str, int] = {}
    present = 0
    async with Worker(
        client,
        task_queue=queue,
        workflows=[FanOutSkeletonWorkflow],
        activities=[noop],
        workflow_runner=FAN_OUT_RUNNER,
    ):
        for size in sorted(args.command_sizes):
            names = [f"cmd-{tag}-{index:06d}" for index in range(present, size)]
            await asyncio.to_thread(insert_forecasters, settings.effective_database_url, names)
            present = size
            batches = math.ceil(size / BATCH_SIZE)
            shape = f"1 + {batches} parallel"
            common: dict[str, Any] = {
                "shape": shape,
                "activities": 1 + batches,
                "runs": args.command_runs,
                "burst": args.command_burst,
                "warmup": 2,
            }

            async def fan_out(key: str, batches: int = batches, size: int = size) -> None:
                await client.execute_workflow(
                    FanOutSkeletonWorkflow.run,
                    FanOutInput(parallel=batches, task_queue=queue),
                    id=f"bench-fan-out-{tag}-{size}-{key}",
                    task_queue=queue,
                )

            async def forecast(key: str, size: int = size) -> None:
                command_id = f"bench-{tag}-{size}-{key}"
                command = FleetCommand(
                    command_id=command_id, skill=Skill.FORECAST, targets=Targets(all=True)
                )
                result = await run_command(client, command)
                if result.summary.ok != size:
                    raise RuntimeError(f"{command_id}: {result.summary.ok} of {size} answered")
                result_bytes[command_id] = len(result.model_dump_json())

            err.print(f"fleet command to {size} bots: skeleton with {shape} activities")
            baseline.append(await measure(f"skeleton ({size})", fan_out, **common))
            err.print(f"fleet command to {size} bots: forecast to all")
            row = await measure(f"forecast to {size}", forecast, **common)
            rows.append(row)
            last = f"bench-{tag}-{size}-r{args.command_runs - 1}"
            counts = await history_counts(client, command_workflow_id(last))
            sizes.append(
                {
                    "bots": size,
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
    return {"target_ms": TARGET_MS, "sizes": sizes, "rows": rows, "baseline": baseline}


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


async def start_idle_bot(client: Client, name: str, index: int, now: datetime) -> None:
    """Start forecaster ``name`` as an idle active bot: a real ``BotLifecycleWorkflow`` started
    from the state an active bot carries across continue-as-new (wallet ``index + 1``, agent id
    ``index + 1``), so it writes its row once (one ``record_bot`` activity) and waits for
    commands and queries, with no wallet, chain or registration to pay for."""
    spec = BotSpec(name=name, kind=BotKind.FORECASTER, owner="bench")
    state = BotState(
        spec=spec,
        status=BotStatus.ACTIVE,
        address=f"0x{index + 1:040x}",
        agent_id=index + 1,
        created_at=now,
    )
    await client.start_workflow(
        BotLifecycleWorkflow.run,
        BotLifecycleInput(spec=spec, state=state),
        id=bot_workflow_id(spec.name),
        task_queue=taskqueues.WORKFLOWS,
        search_attributes=search_attributes_for(spec),
    )


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


def _print_report(report: dict[str, Any]) -> None:
    console = Console(width=None if sys.stdout.isatty() else 160)
    creation = report.get("creation")
    if creation:
        per_bot = creation["per_bot"]
        print_table(
            creation["rows"],
            baseline=creation["baseline"],
            console=console,
            title=f"Bot creation to active vs a skeleton of {per_bot['activities']} sequential "
            f"regular activities (a bot also runs {per_bot['child_workflows']} child workflows, "
            f"{per_bot['signals']} signals, {per_bot['workflow_tasks']} workflow tasks; "
            f"{creation['relayer_workflows_running']} relayer workflows run after creating "
            f"{creation['bots_created']} bots)",
        )
    commands = report.get("commands")
    if commands:
        print_table(
            commands["rows"],
            baseline=commands["baseline"],
            console=console,
            title=f"Fleet command `forecast` to all vs a fan-out skeleton (1 activity, then "
            f"ceil(N/{BATCH_SIZE}) in parallel; no-ops)",
        )
        table = Table(
            title=f"What bounds a fleet command (target: p95 under {TARGET_MS:g} ms; the phases "
            "are the last run's, from its history)"
        )
        columns = [
            ("bots", "bots", "{}"),
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
        ]
        for header, _, _ in columns:
            table.add_column(header, justify="right")
        for size in commands["sizes"]:
            table.add_row(*(form.format(size[key]) for _, key, form in columns))
        console.print(table)
    idle = report.get("idle")
    if idle:
        table = Table(
            title=f"Idle cost of {idle['entities']} bots ({idle['mode']}; started in "
            f"{idle['start_s']:.1f} s, settled in {idle['settle_s']:.1f} s; the worker caches "
            f"{idle['worker_cache']} workflows)"
        )
        table.add_column("process")
        for column in ("RSS before MB", "RSS after MB", "KB / bot"):
            table.add_column(column, justify="right")
        for column in ("CPU % idle before", "CPU ms / bot to start", "CPU % idle after"):
            table.add_column(column, justify="right")
        for row in idle["processes"]:
            table.add_row(
                row["process"],
                f"{row['rss_before_mb']:.0f}",
                f"{row['rss_after_mb']:.0f}",
                f"{row['rss_per_bot_kb']:.1f}",
                f"{row['cpu_before_pct']:.1f}",
                f"{row['cpu_ms_per_bot_starting']:.1f}",
                f"{row['cpu_after_pct']:.1f}",
            )
        console.print(table)


def _json(report: dict[str, Any]) -> str:
    out: dict[str, Any] = {}
    for key, value in report.items():
        if isinstance(value, dict) and "rows" in value:
            value = dict(value)
            rows = json.loads(dump_json(value.pop("rows"), baseline=value.pop("baseline")))
            value["rows"] = rows["rows"]
        out[key] = value
    return json.dumps(out, indent=2)


# -- CLI ------------------------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python bench/lifecycle.py", description=(__doc__ or "").splitlines()[0]
    )
    parser.add_argument(
        "--create", type=at_least(0), default=10, help="bots created at once (0: skip)"
    )
    parser.add_argument(
        "--create-runs", type=at_least(1), default=3, help="bots created one at a time"
    )
    parser.add_argument(
        "--command-sizes",
        type=int_list("command sizes", 1, 100_000, allow_empty=True, unique=False),
        default=[10, 100, 1000],
        metavar="N,N,...",
        help="forecaster bots a command goes to ('' to skip)",
    )
    parser.add_argument("--command-runs", type=at_least(1), default=10, help="sequential commands")
    parser.add_argument("--command-burst", type=at_least(0), default=5, help="commands at once")
    parser.add_argument("--idle", type=at_least(0), default=1000, help="idle bots (0: skip)")
    parser.add_argument(
        "--idle-window", type=float, default=10.0, help="seconds of idleness CPU is measured over"
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of tables")
    return parser


async def amain(argv: Sequence[str] | None = None) -> int:
    """The benchmark in a running event loop; progress on stderr, the report on stdout."""
    args = _parser().parse_args(argv)
    err = Console(stderr=True, highlight=False)
    report: dict[str, Any] = {"benchmark": "lifecycle"}
    started = time.perf_counter()
    with scratch_home("lifecycle") as (home, url), private_anvil() as rpc_url:
        settings = Settings(
            home=home,
            database_url=url,
            rpc_url=rpc_url,
            deployer_key=SecretStr(funded_account(rpc_url).key.hex()),
        )
        await asyncio.to_thread(db.upgrade_database, settings.effective_database_url)
        async with bench_server() as client:
            report["server"] = client.service_client.config.target_host
            async with running_workers(client, settings):
                if args.create:
                    err.print("deploying the contracts, funding a relayer with ETH and fUSD")
                    await prepare_fleet(client, settings, rpc_url)
                if args.command_sizes:
                    report["commands"] = await command_part(client, settings, args, err)
                if args.create:
                    report["creation"] = await creation_part(client, settings, args, err)
                if args.idle:
                    report["idle"] = await idle_part(client, settings, args, err)
    return finish(
        report,
        started,
        err,
        as_json=args.json,
        json_text=lambda: _json(report),
        tables=lambda: _print_report(report),
    )


def main(argv: Sequence[str] | None = None) -> int:
    """``python bench/lifecycle.py``: measure and print; returns the exit status."""
    return asyncio.run(amain(argv))


if __name__ == "__main__":
    # Run as bench.lifecycle, not __main__, so the fan-out skeleton's workflow module is importable.
    from bench.lifecycle import main as _main

    sys.exit(_main())
