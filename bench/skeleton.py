"""The skeleton benchmark: the floor every benchmark under ``bench/`` compares its workflows with.

    python bench/skeleton.py [--activities 0,1,3] [--runs 20] [--burst 50] [--warmup 3]
                             [--address HOST:PORT | --dynamic-config KEY=VALUE ...]
                             [--quick] [--json]

A skeleton is :class:`workflows.skeleton.SkeletonWorkflow` with N sequential do-nothing activities,
regular or local. Whatever a real workflow of the same shape costs beyond it is our code; the rest
is Temporal (docs/architecture.md, "Measuring"). Other benchmarks measure theirs in the same run
(:mod:`bench.shapes`); this one measures the floor alone, for every N asked, as regular and as
local activities. Benchmarks report; they never assert timings.

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
import uuid
from collections.abc import Sequence

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from agentfleet.errors import FleetError
from bench.harness import Figures, Options, Run, Sizes, bench_server, int_list, print_table
from bench.shapes import measure_skeleton, skeleton_shape, skeleton_worker

DEFAULT_ACTIVITIES = (0, 1, 3)
QUICK = {"runs": 3, "burst": 5, "warmup": 1}

OPTIONS = Options(__file__, __doc__, quick=QUICK)
OPTIONS.add_argument(
    "--activities",
    type=int_list("activity counts", 0, 1000, unique=False),
    default=list(DEFAULT_ACTIVITIES),
    metavar="N,N,...",
    help="activity counts to measure, each as regular and as local activities "
    f"(default: {','.join(map(str, DEFAULT_ACTIVITIES))})",
)
OPTIONS.count("--runs", 20, "sequential runs per shape")
OPTIONS.count("--burst", 50, "workflows started at once")
OPTIONS.count("--warmup", 3, "discarded runs per shape", low=0)
OPTIONS.add_argument(
    "--address",
    metavar="HOST:PORT",
    help="measure on this Temporal server (default: a private dev server set up like fleet up)",
)
OPTIONS.add_argument(
    "--dynamic-config",
    action="append",
    default=[],
    metavar="KEY=VALUE",
    help="dynamic config of the private dev server, repeatable; e.g. "
    "history.transferProcessorMaxPollRPS=1000 shows what the default 20 reads/s costs",
)


def _shapes(counts: Sequence[int]) -> list[tuple[int, bool]]:
    shapes: list[tuple[int, bool]] = []
    for count in counts:
        for local in (False, True) if count else (False,):
            if (count, local) not in shapes:
                shapes.append((count, local))
    return shapes


async def measure_all(args: argparse.Namespace, run: Run) -> list[Figures]:
    """Every shape asked for, on one worker; progress bars on stderr."""
    if args.address and args.dynamic_config:
        raise FleetError("--dynamic-config applies only to the private dev server, not --address")
    extra = [arg for pair in args.dynamic_config for arg in ("--dynamic-config-value", pair)]
    queue = f"bench-skeleton-{uuid.uuid4().hex[:8]}"
    sizes = Sizes(args.runs, args.burst, args.warmup)
    rows: list[Figures] = []
    async with (
        bench_server(args.address, extra_server_args=extra) as client,
        skeleton_worker(client, queue),
    ):
        run.report["server"] = client.service_client.config.target_host
        with Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=run.err,
            transient=True,
            disable=run.err.quiet,
        ) as progress:
            for activities, local in _shapes(args.activities):
                shape = skeleton_shape(activities, local)
                task = progress.add_task(f"skeleton {shape} x{activities}", total=sizes.total)
                row = await measure_skeleton(
                    client,
                    activities=activities,
                    local=local,
                    sizes=sizes,
                    task_queue=queue,
                    on_done=functools.partial(progress.advance, task),
                )
                rows.append(row)
                run.err.print(
                    f"skeleton {shape} x{activities}: p50 {row.p50_ms:.1f} ms, "
                    f"burst {row.throughput_per_s:.1f} wf/s"
                )
    return rows


async def amain(argv: Sequence[str] | None = None) -> int:
    """The CLI in a running event loop; returns the exit status."""
    args = OPTIONS.read(argv)
    run = Run("skeleton", args, quiet=args.json)
    try:
        rows = await measure_all(args, run)
    except FleetError as exc:
        run.err.quiet = False
        run.err.print(f"error: {exc}", markup=False)
        return exc.exit_code
    run.report.update(address=args.address, dynamic_config=args.dynamic_config, rows=rows)
    title = f"Skeleton workflow on {run.report['server']} (runs={args.runs}, burst={args.burst})"
    return run.finish(tables=lambda: print_table(rows, title=title))


def main(argv: Sequence[str] | None = None) -> int:
    """``python bench/skeleton.py``: measure and print; returns the exit status."""
    return asyncio.run(amain(argv))


if __name__ == "__main__":
    sys.exit(main())
