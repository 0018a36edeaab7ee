"""Starts, watches and stops the embedded stack.

Order: Temporal dev server -> anvil -> database migrations -> HTTP app -> codec endpoint (with a
payload key) -> worker -> contract deployment hook (its transactions run on that worker) ->
schedules -> demos. Every check that can fail before anything starts runs first
(:func:`preflight`), so a bad port, binary, lock, database URL or keystore secret changes
nothing.

A component that exits is restarted (its data lives on disk) after a delay that starts at
:data:`BACKOFF_START` and doubles with every exit in a row up to ``FLEET_RESTART_BACKOFF_MAX_S``;
a component that answers its readiness check for ``FLEET_RESTART_STABLE_S`` after a restart
starts over at the first delay. The others keep running meanwhile: only ``fleet down``
(SIGTERM) or Ctrl-C stops the stack. After
:data:`~starters.stack.state.CRASH_LOOP_AFTER` exits in a row the component is crash-looping:
``fleet status`` shows its restarts, its next restart and its last error line, and a
``component_crash_loop`` alert is raised through Temporal (the Temporal server's own loop is only
logged and shown: no alert can go through it). Children get SIGTERM when the supervisor dies
(``PR_SET_PDEATHSIG``, :func:`starters.stack.components._die_with_parent`).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import FrameType
from typing import IO, TYPE_CHECKING

from agentfleet import redaction
from agentfleet.errors import FleetError
from agentfleet.ports import free_port
from agentfleet.settings import Settings
from starters.stack import components
from starters.stack.components import ComponentSpec
from starters.stack.state import (
    CRASH_LOOP_AFTER,
    ComponentState,
    StackFiles,
    StackState,
    StackStatus,
    create_time_of,
    port_free,
    release,
)

if TYPE_CHECKING:
    from agentfleet.operations.alerts import AlertBatch

Report = Callable[[str], None]
BACKOFF_START = 0.5
"""Seconds before the first restart of a component that exited; doubles with each exit in a
row."""
TICK = 0.1
"""How often the supervisor looks at its children."""
ALERT_TIMEOUT = 20.0
STOP_TIMEOUT = 15.0
START_ATTEMPTS = 3


def backoff(failures: int, cap: float) -> float:
    """The delay before restarting a component after its ``failures``-th exit in a row."""
    return float(min(cap, BACKOFF_START * 2 ** max(failures - 1, 0)))


@dataclass
class Running:
    spec: ComponentSpec
    proc: subprocess.Popen[bytes]
    log: Path
    started: float = 0.0
    """``time.monotonic()`` when ``proc`` started."""
    restarts: int = 0
    failures: int = 0
    loops: int = 0
    """Crash loops entered since ``fleet up`` (each raises one alert)."""
    restart_at: float | None = None
    """``time.monotonic()`` of the pending restart, while the component is down."""
    ready_since: float | None = None
    """``time.monotonic()`` when the restarted process first answered its readiness check."""
    next_probe: float = 0.0
    backoff_s: float | None = None
    next_restart_at: datetime | None = None
    last_exit: str | None = None
    last_error: str | None = None
    alert: str | None = None

    @property
    def crash_loop(self) -> bool:
        return self.failures >= CRASH_LOOP_AFTER


def plan(settings: Settings, files: StackFiles) -> list[ComponentSpec]:
    """The processes this configuration runs, in start order (binaries looked up here)."""
    specs: list[ComponentSpec] = []
    if settings.uses_embedded_temporal:
        specs.append(components.temporal_spec(settings, files, free_port()))
    if settings.rpc_url is None:
        specs.append(components.anvil_spec(settings, files))
    if settings.channel_sandbox:
        specs.append(components.sandbox_spec(settings))
    specs.append(components.http_spec(settings))
    specs.append(components.mcp_spec(settings))
    if settings.payload_key is not None:
        specs.append(components.codec_spec(settings))
    specs.append(components.worker_spec(settings))
    if wants_command_center(settings):
        specs.append(components.telegram_spec(settings))
    if settings.demo and "fleet" in settings.demos:  # the demo fleet's remote-1 calls it
        specs.append(components.remote_bot_spec(settings))
    return specs


def wants_command_center(settings: Settings) -> bool:
    """The command center runs when asked for and a Bot API is there (a token, or the sandbox)."""
    from agentfleet.channels.endpoints import telegram_endpoint
    from agentfleet.channels.errors import NotConfigured

    if not settings.command_center:
        return False
    try:
        telegram_endpoint(settings)
    except NotConfigured:
        return False
    return True


def preflight(settings: Settings) -> list[ComponentSpec]:
    """Everything that can be refused before a process starts; raises a one-line FleetError."""
    from agentfleet import db, keystore  # keeps `fleet status` light
    from agentfleet.codec import codec_token, parse_key

    files = StackFiles(settings.home)
    holder = files.lock_holder()
    if holder is not None:
        raise FleetError(
            f"a stack is already running from {settings.home} (supervisor pid {holder}); "
            "`fleet status` shows it, `fleet down` stops it"
        )
    previous = files.read()
    if previous is not None:
        leftovers = [f"{c.name} pid {c.pid}" for c in previous.components if c.alive()]
        if leftovers:
            raise FleetError(
                f"stale stack state in {settings.home}: {', '.join(leftovers)} still running "
                "without a supervisor; run `fleet down` to stop them, then `fleet up`"
            )
        files.state.unlink(missing_ok=True)
    # What the user configured is checked before what the machine offers (binaries, ports).
    db.validate_database_url(settings.effective_database_url)
    # A lost or wrong keystore secret is refused before anything starts (a new one would not
    # open the stored keys).
    keystore.verify_master_secret(settings)
    if settings.payload_key is not None:
        parse_key(settings.payload_key.get_secret_value())
        codec_token(settings)
    if wants_command_center(settings):
        from agentfleet.operations.operators import parse_access_list

        parse_access_list(settings.telegram_users)
    specs = plan(settings, files)
    env_names = {
        "temporal": {"grpc": "FLEET_TEMPORAL_PORT", "ui": "FLEET_UI_PORT"},
        "anvil": {"rpc": "FLEET_ANVIL_PORT"},
        "http": {"http": "FLEET_HTTP_PORT"},
        "mcp": {"http": "FLEET_MCP_PORT"},
        "codec": {"http": "FLEET_CODEC_PORT"},
        "worker": {"metrics": "FLEET_METRICS_PORT"},
        "remote-bot": {"http": "FLEET_REMOTE_BOT_PORT"},
    }
    seen: dict[int, str] = {}
    for spec in specs:
        for role, port in spec.ports.items():
            setting = env_names.get(spec.name, {}).get(role)
            if setting is None:
                continue
            if port in seen:
                raise FleetError(
                    f"port {port} is configured for both {seen[port]} and {setting}; "
                    "give each its own port"
                )
            seen[port] = setting
            if not port_free(port):
                raise FleetError(
                    f"port {port} ({spec.title}, {role}) is already in use on 127.0.0.1; "
                    f"stop what holds it or set {setting} to a free port"
                )
    return specs


class Supervisor:
    """Owns the stack's processes for the lifetime of one ``fleet up``."""

    def __init__(self, settings: Settings, report: Report) -> None:
        redaction.install(settings)
        self.settings = settings
        self.files = StackFiles(settings.home)
        self.report: Report = lambda line: report(redaction.redact(line))
        self.running: list[Running] = []
        self.stopping = threading.Event()
        self._state_lock = threading.RLock()
        """Held while writing ``stack.json`` (an alert thread writes too)."""
        self._lock_handle: IO[str] | None = None
        self.state = StackState(
            home=str(settings.home),
            supervisor_pid=os.getpid(),
            supervisor_create_time=create_time_of(os.getpid()),
        )

    def stop_on_signals(self) -> None:
        """SIGINT/SIGTERM stop the stack: during start by interrupting it (KeyboardInterrupt,
        and what started is stopped again), afterwards by ending :meth:`supervise`."""

        def on_signal(_signum: int, _frame: FrameType | None) -> None:
            starting = not self.stopping.is_set() and self.state.status is StackStatus.STARTING
            self.stopping.set()
            if starting:
                raise KeyboardInterrupt

        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)

    def start(self) -> StackState:
        """Preflight, take the lock, start every component and run the demos; FleetError on
        failure (everything started so far is stopped again)."""
        specs = preflight(self.settings)
        self._lock_handle = self.files.try_lock()
        if self._lock_handle is None:
            raise FleetError(f"a stack is already starting or running from {self.settings.home}")
        self._save()
        try:
            for spec in specs:
                if self.stopping.is_set():
                    raise FleetError("start interrupted")
                if spec.name == "http":
                    self._prepare_database()
                self._start_component(spec)
                if spec.name == "worker":
                    self._deploy()
            self._ensure_schedules()
            if self.settings.demo:
                self.report("running demos")
                self._run_demos()
            self.state.status = StackStatus.READY
            self._save()
        except BaseException as exc:
            self.state.status = StackStatus.FAILED
            self.state.error = redaction.redact(str(exc))
            self._save()
            self.stop()
            raise
        return self.state

    def _prepare_database(self) -> None:
        from agentfleet import db

        began = time.monotonic()
        revision = db.upgrade_database(self.settings.effective_database_url)
        self.state.components.append(
            ComponentState(
                name="database",
                url=_display_url(self.settings.effective_database_url),
                detail=f"schema at revision {revision}",
            )
        )
        self.report(f"database migrated to {revision} ({time.monotonic() - began:.1f} s)")
        from agentfleet.chain.relayers import ensure_dev_relayers

        accounts = ensure_dev_relayers(self.settings)
        if accounts:
            self.report(f"{len(accounts)} relayer accounts: {', '.join(accounts)}")
        self._save()

    def _start_component(self, spec: ComponentSpec) -> None:
        began = time.monotonic()
        self.report(f"starting {spec.title}")
        proc, log = spec.start(self.files)
        running = Running(spec, proc, log, started=time.monotonic())
        self.running.append(running)
        self._record(running)
        deadline = time.monotonic() + spec.ready_timeout
        attempts = 1
        while not spec.ready():
            if proc.poll() is not None:
                reason = _failure_line(log)
                if "address already in use" in reason and attempts < START_ATTEMPTS:
                    # The dev server picks free ports for its internal services itself; another
                    # process can take one between its pick and its bind. Pick again.
                    attempts += 1
                    self.report(f"{spec.title}: {reason}; starting again")
                    proc, log = spec.start(self.files)
                    running.proc = proc
                    running.started = time.monotonic()
                    self._record(running)
                    continue
                raise FleetError(
                    f"{spec.title} exited during start (code {proc.returncode}): "
                    f"{reason}; full log in {log}"
                )
            if time.monotonic() > deadline or self.stopping.is_set():
                raise FleetError(
                    f"{spec.title} was not ready within {spec.ready_timeout:.0f} s; see {log}"
                )
            time.sleep(0.1)
        ports = ", ".join(f"{k} {v}" for k, v in spec.ports.items())
        self.report(f"{spec.title} up on {ports} ({time.monotonic() - began:.1f} s)")

    def _record(self, running: Running) -> None:
        with self._state_lock:
            previous = self.state.component(running.spec.name)
            same_proc = previous is not None and previous.pid == running.proc.pid
            states = [c for c in self.state.components if c.name != running.spec.name]
            states.append(
                ComponentState(
                    name=running.spec.name,
                    pid=running.proc.pid,
                    create_time=(
                        previous.create_time
                        if same_proc and previous is not None
                        else create_time_of(running.proc.pid)
                    ),
                    ports=running.spec.ports,
                    url=running.spec.url,
                    log=str(running.log),
                    restarts=running.restarts,
                    failures=running.failures,
                    crash_loop=running.crash_loop,
                    backoff_s=running.backoff_s,
                    next_restart_at=running.next_restart_at,
                    last_exit=running.last_exit,
                    last_error=running.last_error,
                    alert=running.alert,
                )
            )
            order = {r.spec.name: i for i, r in enumerate(self.running)}
            order.setdefault("database", order.get("anvil", order.get("temporal", -1)))
            self.state.components = sorted(states, key=lambda c: order.get(c.name, 99))
            self._save()

    def _deploy(self) -> None:
        """Reuse or deploy the contracts through the worker just started (durable transactions
        from the deployer's relayer entity)."""
        import asyncio

        from agentfleet.temporal import connect
        from clients.deployment import ensure_deployed

        async def ensure() -> str:
            return await ensure_deployed(await connect(self.settings), self.settings)

        self.report(asyncio.run(ensure()))
        self._save()

    def _ensure_schedules(self) -> None:
        """The fleet's Temporal Schedules (idempotent; a schedule an operator paused stays so)."""
        import asyncio

        from agentfleet.temporal import connect
        from clients.schedules import (
            ensure_health_schedule,
            ensure_reconcile_schedule,
        )

        async def ensure() -> None:
            client = await connect(self.settings)
            await ensure_health_schedule(client)
            await ensure_reconcile_schedule(client)

        asyncio.run(ensure())
        self.report("schedule fleet-health: every 5 minutes")
        self.report("schedule reconcile-payments: every hour")

    def _run_demos(self) -> None:
        import asyncio

        from starters.stack.demo import run_demos

        lines = asyncio.run(run_demos(self.settings, self.report))
        self.state.demo = [redaction.redact(line) for line in lines]

    def supervise(self) -> None:
        """Block until asked to stop; restart components that exit, with backoff."""
        while not self.stopping.wait(TICK):
            for running in self.running:
                if self.stopping.is_set():
                    break
                self._tend(running, time.monotonic())

    def _tend(self, running: Running, now: float) -> None:
        """Restart ``running`` when its delay is over, note an exit, or clear a crash loop
        once it answered its readiness check for ``FLEET_RESTART_STABLE_S``."""
        title = running.spec.title
        if running.restart_at is not None:
            if now >= running.restart_at:
                self._restart(running, now)
            return
        code = running.proc.poll()
        if code is None:
            if running.failures:
                self._watch_recovery(running, now)
            return
        uptime = now - running.started
        running.failures += 1
        delay = backoff(running.failures, self.settings.restart_backoff_max_s)
        running.restart_at = now + delay
        running.backoff_s = delay
        running.next_restart_at = datetime.now(UTC) + timedelta(seconds=delay)
        running.last_exit = _exit_text(code)
        running.last_error = redaction.redact(_failure_line(running.log))
        self.report(
            f"{title} exited ({running.last_exit}) after {uptime:.1f} s, "
            f"{running.failures} in a row; restarting in {delay:g} s; "
            f"last log line: {running.last_error}"
        )
        if running.failures == CRASH_LOOP_AFTER:
            running.loops += 1
            self._crash_loop_alert(running)
        self._record(running)

    def _watch_recovery(self, running: Running, now: float) -> None:
        """After an exit: probe the restarted component (once a second) until it answers, and
        count it stable ``FLEET_RESTART_STABLE_S`` later. Merely running is not enough: a
        server that takes seconds to start and then fails to bind never answered."""
        if running.ready_since is None:
            if now >= running.next_probe:
                running.next_probe = now + 1.0
                if running.spec.ready():
                    running.ready_since = now
            return
        if now - running.ready_since >= self.settings.restart_stable_s:
            self.report(
                f"{running.spec.title} answering for {now - running.ready_since:.0f} s: "
                "stable again"
            )
            running.failures = 0
            running.ready_since = None
            self._record(running)

    def _restart(self, running: Running, now: float) -> None:
        running.restart_at = None
        running.ready_since = None
        running.backoff_s = None
        running.next_restart_at = None
        running.restarts += 1
        self.report(f"restarting {running.spec.title} (restart {running.restarts})")
        running.started = now
        try:
            running.proc, _ = running.spec.start(self.files)
        except OSError as exc:
            # A binary that vanished: the old, exited process stays, so the next look counts
            # this as another exit in a row and backs off.
            with running.log.open("a") as log:
                log.write(f"error: could not start: {exc}\n")
        self._record(running)

    def _crash_loop_alert(self, running: Running) -> None:
        """Tell the operator once per loop: a ``component_crash_loop`` alert through Temporal,
        sent from a thread (the loop keeps tending the others); the Temporal server's own loop
        is logged and shown in ``fleet status`` only."""
        title = running.spec.title
        text = (
            f"{title} exited {running.failures} times in a row ({running.last_exit}); "
            f"restarting in {running.backoff_s:g} s; last log line: {running.last_error}"
        )
        self.report(f"crash loop: {text}")
        if running.spec.name == "temporal":
            running.alert = "not raised: the Temporal server itself is crash-looping"
            self.report(f"alert {running.alert}")
            return
        running.alert = "raising"
        from agentfleet.operations.alerts import Alert, AlertBatch, AlertKind, Severity

        kind = AlertKind.COMPONENT_CRASH_LOOP
        source = f"fleet-up-{self.state.supervisor_pid}"
        alert = Alert(
            alert_id=f"{source}:{kind.value}:{running.spec.name}:{running.loops}",
            kind=kind,
            severity=Severity.CRITICAL,
            key=running.spec.name,
            text=redaction.redact(text)[:2000],
            at=datetime.now(UTC),
            source=source,
        )
        threading.Thread(
            target=self._send_alert, args=(running, AlertBatch(alerts=[alert])), daemon=True
        ).start()

    def _send_alert(self, running: Running, batch: AlertBatch) -> None:
        from agentfleet.temporal import connect
        from clients.alerts import send_alerts

        async def send() -> None:
            client = await connect(self.settings)
            await send_alerts(client, batch, self.settings)

        try:
            asyncio.run(asyncio.wait_for(send(), ALERT_TIMEOUT))
        except Exception as exc:  # noqa: BLE001 - any failure is shown, never raised
            running.alert = redaction.redact(f"not raised: {exc or type(exc).__name__}")[:300]
        else:
            running.alert = "raised"
        self.report(f"crash-loop alert for {running.spec.title} {running.alert}")
        with self._state_lock:
            if not self.stopping.is_set():  # stop() may have removed stack.json already
                self._record(running)

    def stop(self) -> None:
        """Stop every component (worker first, then the rest), release the lock, clear state."""
        self.stopping.set()
        if self.state.status is not StackStatus.FAILED:
            self.state.status = StackStatus.STOPPING
        self._save()
        for running in reversed(self.running):
            self.report(f"stopping {running.spec.title}")
            terminate(running.proc.pid, running.proc)
        self.running.clear()
        if self.state.status is StackStatus.FAILED:
            self.state.components = []
            self._save()
        else:
            self.files.state.unlink(missing_ok=True)
        if self._lock_handle is not None:
            release(self._lock_handle)
            self._lock_handle = None

    def _save(self) -> None:
        with self._state_lock:
            self.files.home.mkdir(parents=True, exist_ok=True)
            self.files.write(self.state)


def _exit_text(code: int) -> str:
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"


def terminate(pid: int, proc: subprocess.Popen[bytes] | None = None) -> None:
    """SIGTERM the process group of ``pid``, SIGKILL it if it outlives STOP_TIMEOUT."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + STOP_TIMEOUT
    while time.monotonic() < deadline:
        if proc is not None:
            if proc.poll() is not None:
                return
        elif not _pid_running(pid):
            return
        time.sleep(0.05)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)
    if proc is not None:
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=5)


def _pid_running(pid: int) -> bool:
    from starters.stack.state import process_alive

    return process_alive(pid, None)


_LEVEL = re.compile(r"\b(ERROR|CRITICAL|FATAL)\b")
"""The level of a line in our Python log format (``2026-12-07 13:33:04,234 ERROR name: ...``)."""


def _failure_line(log: Path) -> str:
    """The line of the latest start that says what went wrong (else its last line): the first
    error line (Go ``level=ERROR``, Python ``ERROR``/``CRITICAL``, ``error:``, ``panic:``), or
    the exception line that ends a Python traceback."""
    try:
        text = log.read_text(errors="replace")
    except OSError:
        return "no log"
    latest = text.rsplit("\n--- ", 1)[-1]
    raw = latest.splitlines()[1:]
    lines = [line.strip() for line in raw if line.strip()]
    for line in lines:
        lowered = line.lower()
        if (
            "level=error" in lowered
            or lowered.startswith(("error", "panic:", "fatal"))
            or _LEVEL.search(line)
        ):
            return line[:300]
    traceback = [i for i, line in enumerate(raw) if line.startswith("Traceback ")]
    if traceback:
        tail = [line for line in raw[traceback[-1] + 1 :] if line and not line[0].isspace()]
        if tail:
            return tail[0].strip()[:300]
    return lines[-1][:300] if lines else "no output"


def _display_url(url: str) -> str:
    from agentfleet.settings import mask_url

    return mask_url(url)
