"""What every benchmark under ``bench/`` shares, so that a benchmark file holds only what it
measures: the command line (``--quick``, ``--json``), a scratch fleet (``FLEET_HOME``, database,
dev server, anvil, sandbox), timing (:func:`measure`, :class:`BurstClock`), ratios and the report
(Rich tables on stdout, or JSON; progress on stderr).

A benchmark's skeleton of its own shape and the shapes read from histories live in
:mod:`bench.shapes`. The outline of a benchmark::

    OPTIONS = Options(__file__, __doc__, quick={"runs": 3, "burst": 5})
    OPTIONS.count("--runs", 20, "runs one at a time")
    ...
    async def amain(argv=None) -> int:
        args = OPTIONS.read(argv)
        run, sizes = Run("mine", args, runs=args.runs), Sizes(args.runs, args.burst)
        async with scratch_fleet("mine", anvil=True) as fleet:
            async with running_workers(fleet.client, fleet.settings()):
                floor = await measure_skeleton(..., activities=3, local=False, sizes=sizes)
                mine = await measure("mine", run_mine, shape="regular", activities=3, sizes=sizes)
        run.report["rows"], run.report["baseline"] = [floor, mine], [floor]
        return run.finish(tables=lambda: print_table([floor, mine], baseline=[floor]))

Latency is measured one workflow at a time (start to result, as a client sees it); throughput is
``burst`` workflows started at once, divided by the wall time until the last one completed.
Benchmarks report; they never assert timings.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import (
    AsyncIterator,
    Awaitable,
    Callable,
    Iterable,
    Iterator,
    Mapping,
    Sequence,
)
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, SecretStr
from rich.console import Console
from rich.table import Table
from temporalio.client import Client
from temporalio.client import Interceptor as ClientInterceptor
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from agentfleet import binaries, db, search_attributes, taskqueues
from agentfleet.bots.model import (
    BotKind,
    BotLifecycleInput,
    BotSpec,
    BotState,
    BotStatus,
    bot_workflow_id,
)
from agentfleet.models import BotRecord
from agentfleet.settings import Settings
from agentfleet.temporal import connect
from clients.bots import search_attributes_for
from sandbox.app import Sandbox
from sandbox.buckets import TelegramLimits
from starters.stack.components import DEV_SERVER_ARGS
from starters.stack.devchain import funded_account, private_anvil
from workflows.bot_lifecycle import BotLifecycleWorkflow

DEFAULT_WARMUP = 3

OnDone = Callable[[], None]
"""Called once per finished workflow (warm-up, burst and sequential): progress, burst clocks."""


# -- the command line -----------------------------------------------------------------------------


def at_least(low: int) -> Callable[[str], int]:
    """An ``argparse`` type: an integer of ``low`` or more."""

    def parse(text: str) -> int:
        value = int(text)
        if value < low:
            raise argparse.ArgumentTypeError(f"{text} is below {low}")
        return value

    return parse


def int_list(
    what: str, low: int, high: int, *, allow_empty: bool = False, unique: bool = True
) -> Callable[[str], list[int]]:
    """An ``argparse`` type: comma-separated integers between ``low`` and ``high`` (sorted and
    without repeats when ``unique``; ``''`` is an empty list when ``allow_empty``)."""

    def parse(text: str) -> list[int]:
        try:
            values = [int(part) for part in text.split(",") if part.strip()]
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list") from None
        if (not values and not allow_empty) or any(not low <= v <= high for v in values):
            raise argparse.ArgumentTypeError(f"{what} must be between {low} and {high}")
        return sorted(set(values)) if unique else values

    return parse


class Options(argparse.ArgumentParser):
    """A benchmark's command line: ``python bench/<file>``, described by the first line of its
    docstring, with ``--json`` and ``--quick`` (``quick``'s sizes replace the given ones: a smoke
    run, not figures). The benchmark adds its own options."""

    def __init__(self, file: str, doc: str | None, *, quick: Mapping[str, Any]) -> None:
        super().__init__(
            prog=f"python bench/{Path(file).name}", description=(doc or "").splitlines()[0]
        )
        self.quick = dict(quick)
        sizes = ", ".join(f"{key.replace('_', '-')} {_arg(value)}" for key, value in quick.items())
        self.add_argument(
            "--quick", action="store_true", help=f"tiny sizes ({sizes}): a smoke run, not figures"
        )
        self.add_argument("--json", action="store_true", help="print JSON instead of tables")

    def count(self, flag: str, default: int, what: str, *, low: int = 1) -> None:
        """An integer option of ``low`` or more."""
        self.add_argument(flag, type=at_least(low), default=default, help=what)

    def read(self, argv: Sequence[str] | None = None) -> argparse.Namespace:
        """The parsed arguments, ``--quick`` applied."""
        args = self.parse_args(argv)
        if args.quick:
            for key, value in self.quick.items():
                setattr(args, key, value)
        return args


def _arg(value: Any) -> str:
    return ",".join(map(str, value)) if isinstance(value, list | tuple) else str(value)


class Run:
    """One run of a benchmark: its report (``benchmark`` and ``meta`` first), a console for
    progress on stderr (``quiet``: none), and the clock :meth:`finish` reads."""

    def __init__(
        self, benchmark: str, args: argparse.Namespace, *, quiet: bool = False, **meta: Any
    ) -> None:
        self.as_json = bool(args.json)
        self.report: dict[str, Any] = {"benchmark": benchmark, **meta}
        self.err = Console(stderr=True, highlight=False, soft_wrap=True, quiet=quiet)
        self.started = time.perf_counter()

    def finish(self, *, tables: Callable[[], None]) -> int:
        """Stamp ``elapsed_s``, say so on stderr, print :func:`report_json` of the report or the
        tables; the exit status."""
        self.report["elapsed_s"] = time.perf_counter() - self.started
        self.err.print(f"done in {self.report['elapsed_s']:.0f} s")
        if self.as_json:
            print(report_json(self.report))
        else:
            tables()
        return 0


# -- a scratch fleet ------------------------------------------------------------------------------


@contextlib.contextmanager
def scratch_home(name: str) -> Iterator[tuple[Path, str]]:
    """A temporary ``FLEET_HOME`` and its SQLite URL; at the end the database's engine is
    disposed and the folder removed."""
    home = Path(tempfile.mkdtemp(prefix=f"fleet-bench-{name}-"))
    url = f"sqlite:///{home / 'fleet.db'}"
    try:
        yield home, url
    finally:
        db.dispose_engine(url)
        shutil.rmtree(home, ignore_errors=True)


@contextlib.contextmanager
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


@contextlib.asynccontextmanager
async def bench_server(
    address: str | None = None,
    *,
    extra_server_args: Sequence[str] = (),
    interceptors: Sequence[ClientInterceptor] = (),
) -> AsyncIterator[Client]:
    """A client of the server to measure on, with ``interceptors`` (the workers built on it
    pick up those that are worker interceptors too).

    With ``address``, connect to that server the way every fleet process does
    (:func:`agentfleet.temporal.connect`: pydantic payloads, and the AES-GCM codec when
    ``FLEET_PAYLOAD_KEY`` is set). Without, start a private dev server configured as ``fleet up``
    starts one (``DEV_SERVER_ARGS``: WAL pragmas, transfer-queue poll rate; our search
    attributes) with its SQLite file in a temporary folder, on a free port, and stop it and
    remove its files on exit. ``extra_server_args`` go to ``temporal server start-dev`` after
    those (experiments only).
    """
    if address is not None:
        yield _intercepted(await connect(Settings(temporal_address=address)), interceptors)
        return
    with tempfile.TemporaryDirectory(prefix="fleet-bench-") as folder:
        with _stdout_to_stderr():
            env = await WorkflowEnvironment.start_local(
                dev_server_existing_path=str(binaries.temporal_cli()),
                dev_server_database_filename=str(Path(folder) / "temporal.db"),
                dev_server_extra_args=[*DEV_SERVER_ARGS, *extra_server_args],
                dev_server_log_level="error",
                search_attributes=list(search_attributes.ALL),
                data_converter=pydantic_data_converter,
            )
        try:
            yield _intercepted(env.client, interceptors)
        finally:
            await env.shutdown()


def _intercepted(client: Client, interceptors: Sequence[ClientInterceptor]) -> Client:
    if not interceptors:
        return client
    config = client.config()
    config["interceptors"] = list(interceptors)
    return Client(**config)


@dataclass(frozen=True)
class Scratch:
    """A benchmark's own fleet: a temporary home with its SQLite database (migrated), a client
    of a private dev server, and where asked a private anvil and the channel sandbox."""

    home: Path
    url: str
    client: Client
    rpc_url: str | None = None
    sandbox: Sandbox | None = None

    @property
    def server(self) -> str:
        """The dev server's address."""
        return self.client.service_client.config.target_host

    def settings(self, **fields: Any) -> Settings:
        """Settings pointing at this fleet (home, database, server, anvil, sandbox), ``fields``
        on top."""
        base: dict[str, Any] = {
            "home": self.home,
            "database_url": self.url,
            "temporal_address": self.server,
        }
        if self.rpc_url is not None:
            base["rpc_url"] = self.rpc_url
        if self.sandbox is not None:
            base.update(self.sandbox.settings_overrides())
        return Settings(**(base | fields))

    @property
    def anvil_url(self) -> str:
        """The private anvil's RPC URL (a fleet started with ``anvil=True``)."""
        if self.rpc_url is None:
            raise RuntimeError("this scratch fleet has no anvil")
        return self.rpc_url

    def funded_key(self) -> SecretStr:
        """The key of a fresh anvil account with 100 ETH (a deployer, a facilitator)."""
        return SecretStr(funded_account(self.anvil_url).key.hex())


@contextlib.asynccontextmanager
async def scratch_fleet(
    name: str,
    *,
    anvil: bool = False,
    sandbox_limits: TelegramLimits | None = None,
    database: bool = True,
    interceptors: Sequence[ClientInterceptor] = (),
) -> AsyncIterator[Scratch]:
    """A :class:`Scratch` fleet, all of it stopped and removed at the end: the home of
    :func:`scratch_home` (its database migrated unless ``database`` is false), a private dev
    server (:func:`bench_server`), with ``anvil`` a private anvil, with ``sandbox_limits`` the
    sandbox (Bot API, SMTP, webhooks) under those Telegram limits."""
    with (
        scratch_home(name) as (home, url),
        private_anvil() if anvil else contextlib.nullcontext() as rpc_url,
    ):
        async with contextlib.AsyncExitStack() as stack:
            channels = None
            if sandbox_limits is not None:
                channels = Sandbox(home=home, telegram_limits=sandbox_limits)
                await stack.enter_async_context(channels)
            client = await stack.enter_async_context(bench_server(interceptors=interceptors))
            if database:
                await asyncio.to_thread(db.upgrade_database, url)
            yield Scratch(home, url, client, rpc_url, channels)


def add_bots(url: str, names: Iterable[str], kind: BotKind, **fields: Any) -> None:
    """Active ``kind`` rows owned by ``bench`` (what commands, rounds and sales read), without
    a bot entity, wallet or chain."""
    with db.session_scope(url) as session:
        for name in names:
            session.add(
                BotRecord(
                    name=name,
                    kind=kind.value,
                    owner="bench",
                    status=BotStatus.ACTIVE.value,
                    **fields,
                )
            )


async def start_idle_bot(
    client: Client,
    name: str,
    index: int,
    now: datetime,
    *,
    kind: BotKind = BotKind.FORECASTER,
    params: Mapping[str, Any] | None = None,
) -> None:
    """Start ``name`` (a forecaster unless ``kind`` says otherwise, with ``params``) as an idle
    active bot: a real ``BotLifecycleWorkflow`` started from the state an active bot carries
    across continue-as-new (wallet ``index + 1``, agent id ``index + 1``), so it writes its row
    once (one ``record_bot`` activity) and waits for commands, updates and queries, with no
    wallet, chain or registration to pay for."""
    spec = BotSpec(name=name, kind=kind, owner="bench", params=dict(params or {}))
    state = BotState(
        spec=spec,
        status=BotStatus.ACTIVE,
        params=dict(spec.params),
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


# -- figures and timing ---------------------------------------------------------------------------


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


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0-100) with linear interpolation; one value is every percentile."""
    if not values:
        raise ValueError("percentile of no values")
    ordered = sorted(values)
    position = (len(ordered) - 1) * q / 100
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def medians(
    samples: Sequence[Mapping[str, float]], keys: Iterable[str] | None = None
) -> dict[str, float]:
    """The median of each of ``keys`` (default: the first sample's) over ``samples``."""
    return {
        key: statistics.median(sample[key] for sample in samples)
        for key in (samples[0] if keys is None else keys)
    }


def milliseconds(start: datetime, end: datetime) -> float:
    return (end - start).total_seconds() * 1000


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


@dataclass(frozen=True)
class Sizes:
    """How many times :func:`measure` runs a thing: ``warmup`` runs discarded, then ``burst``
    at once (throughput), then ``runs`` one at a time (latency)."""

    runs: int
    burst: int
    warmup: int = DEFAULT_WARMUP

    @property
    def total(self) -> int:
        """Every run: warm-up, burst and one at a time."""
        return self.warmup + self.burst + self.runs


async def measure(
    name: str,
    run_once: Callable[[str], Awaitable[object]],
    *,
    shape: str,
    activities: int,
    sizes: Sizes,
    on_done: OnDone | None = None,
) -> Figures:
    """Time ``run_once`` the way every benchmark here does, so rows are comparable.

    ``run_once(key)`` must run one workflow to completion; ``key`` is unique within this call
    (``w0``, ``r3``, ``b17``), so the caller can build unique workflow ids from it. The
    ``sizes.warmup`` runs are discarded, then ``sizes.burst`` runs started together give the
    throughput, then ``sizes.runs`` sequential runs give the latency figures.

    The burst comes first on purpose: the dev server's transfer-queue reads come from a token
    bucket that refills while idle, so sequential runs right after a pause are faster than under
    steady load. After the burst the bucket is empty, and every benchmark's latency is measured
    in the same, steady, state.
    """
    if sizes.runs < 1:
        raise ValueError("runs must be at least 1")

    async def timed(key: str) -> float:
        started = time.perf_counter()
        await run_once(key)
        elapsed = time.perf_counter() - started
        if on_done is not None:
            on_done()
        return elapsed

    for index in range(sizes.warmup):
        await timed(f"w{index}")
    started = time.perf_counter()
    await asyncio.gather(*(timed(f"b{index}") for index in range(sizes.burst)))
    burst_wall = time.perf_counter() - started
    latencies = [await timed(f"r{index}") for index in range(sizes.runs)]
    return figures_from(
        name,
        shape=shape,
        activities=activities,
        latencies_s=latencies,
        burst=sizes.burst,
        burst_wall_s=burst_wall,
    )


@dataclass
class BurstClock:
    """Time-to-done of each workflow of :func:`measure`'s burst, from its ``on_done`` calls:
    the burst starts when the last warm-up ends, and all its workflows start together."""

    sizes: Sizes
    """Those of the :func:`measure` call; at least 1 warm-up: its end is the burst's start."""
    calls: list[float] = field(default_factory=list)

    def __call__(self) -> None:
        self.calls.append(time.perf_counter())

    def latencies(self) -> list[float]:
        warmup = self.sizes.warmup
        start = self.calls[warmup - 1]
        return [done - start for done in self.calls[warmup : warmup + self.sizes.burst]]

    def row(self, name: str, shape: str, measured: Figures) -> Figures:
        """``measured``'s burst as a row of its own: the latency of each workflow in it."""
        return figures_from(
            name,
            shape=shape,
            activities=measured.activities,
            latencies_s=self.latencies(),
            burst=measured.burst,
            burst_wall_s=(
                measured.burst / measured.throughput_per_s if measured.throughput_per_s else 0.0
            ),
        )

    def percentiles(self) -> dict[str, float]:
        """``burst_p50_ms`` and ``burst_p95_ms`` of the burst's workflows."""
        millis = [seconds * 1000 for seconds in self.latencies()]
        return {"burst_p50_ms": percentile(millis, 50), "burst_p95_ms": percentile(millis, 95)}


# -- ratios and the report ------------------------------------------------------------------------


def ratio(value: float, floor: float) -> float | None:
    """``value / floor``, or None when there is no positive floor to divide by."""
    if floor <= 0 or not math.isfinite(floor):
        return None
    return value / floor


def ratios(row: Figures, floor: Figures | None, to: str = "skeleton") -> dict[str, float | None]:
    """``p50_vs_{to}`` and ``throughput_vs_{to}``: ``row`` against ``floor`` (None without)."""
    return {
        f"p50_vs_{to}": None if floor is None else ratio(row.p50_ms, floor.p50_ms),
        f"throughput_vs_{to}": (
            None if floor is None else ratio(row.throughput_per_s, floor.throughput_per_s)
        ),
    }


Baseline = Figures | Sequence[Figures] | None
"""One row every row is compared with, or skeleton rows of which each row takes the one of its
own shape and activity count."""


def floor_for(row: Figures, baseline: Baseline) -> Figures | None:
    """The row of ``baseline`` that ``row`` is compared with, if any."""
    if baseline is None or isinstance(baseline, Figures):
        return baseline
    for floor in baseline:
        if (floor.shape, floor.activities) == (row.shape, row.activities):
            return floor
    return None


def fmt(value: float | None, form: str = "{:.0f}") -> str:
    """``value`` in ``form``, "-" for None."""
    return "-" if value is None else form.format(value)


def times(value: float | None) -> str:
    """A ratio as "2.50x", "-" for None."""
    return fmt(value, "{:.2f}x")


def report_console(width: int = 160) -> Console:
    """The console the report is printed on: a pipe or a log file gets full rows, not 80
    squeezed columns."""
    return Console(width=None if sys.stdout.isatty() else width)


def print_table(
    rows: Sequence[Figures],
    *,
    baseline: Baseline = None,
    title: str | None = None,
    console: Console | None = None,
) -> None:
    """Print ``rows`` as a Rich table; with ``baseline``, add the ratios to the skeleton
    (:func:`floor_for`; "-" when no row matches): ``p50 / skeleton p50`` and ``wf/s / skeleton
    wf/s``."""
    table = Table(title=title)
    table.add_column("benchmark")
    table.add_column("shape")
    for header in ("N", "p50 ms", "p95 ms", "mean ms", "burst wf/s"):
        table.add_column(header, justify="right")
    if baseline is not None:
        table.add_column("p50 × skeleton", justify="right")
        table.add_column("wf/s × skeleton", justify="right")
    for row in rows:
        cells = [row.name, row.shape, str(row.activities)]
        cells += [f"{value:.1f}" for value in (row.p50_ms, row.p95_ms, row.mean_ms)]
        cells.append(f"{row.throughput_per_s:.1f}")
        if baseline is not None:
            cells += [times(value) for value in ratios(row, floor_for(row, baseline)).values()]
        table.add_row(*cells)
    (console or report_console()).print(table)


def print_part(part: Mapping[str, Any], console: Console, *, title: str) -> None:
    """A report part's ``rows`` against its ``baseline``, as :func:`print_table` prints them."""
    print_table(part["rows"], baseline=part["baseline"], title=title, console=console)


def print_columns(
    title: str,
    columns: Sequence[tuple[str, str, str]],
    rows: Iterable[Mapping[str, Any]],
    console: Console,
    *,
    labels: int = 0,
) -> None:
    """A table of ``rows``, one column per ``(header, key, format)``, the first ``labels``
    aligned left and the figures right; "-" where a value is None."""
    table = Table(title=title)
    for index, (header, _, _) in enumerate(columns):
        table.add_column(header, justify="left" if index < labels else "right")
    for row in rows:
        table.add_row(*(fmt(row[key], form) for _, key, form in columns))
    console.print(table)


def rows_json(
    rows: Sequence[Figures | Mapping[str, Any]], baseline: Baseline = None
) -> list[dict[str, Any]]:
    """Each row's figures; with ``baseline``, with ``p50_vs_skeleton`` and
    ``throughput_vs_skeleton`` (null where no skeleton row matches). Rows that are already
    mappings stay as they are."""
    dumped: list[dict[str, Any]] = []
    for row in rows:
        if not isinstance(row, Figures):
            dumped.append(dict(row))
            continue
        item = row.model_dump()
        if baseline is not None:
            item.update(ratios(row, floor_for(row, baseline)))
        dumped.append(item)
    return dumped


def dump_json(rows: Sequence[Figures], *, baseline: Baseline = None, **meta: Any) -> str:
    """``{**meta, "rows": [...]}`` as JSON, the rows as :func:`rows_json` writes them."""
    return json.dumps({**meta, "rows": rows_json(rows, baseline)}, indent=2)


def report_json(report: Mapping[str, Any]) -> str:
    """``report`` as JSON; in it and in each part of it (a dict value), ``rows`` as
    :func:`rows_json` writes them against the part's ``baseline``, which is left out."""
    return json.dumps(_rows_dumped(report), indent=2)


def _rows_dumped(part: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {
        key: _rows_dumped(value) if isinstance(value, Mapping) and "rows" in value else value
        for key, value in part.items()
    }
    if "rows" in out:
        out["rows"] = rows_json(out["rows"], out.pop("baseline", None))
    return out
