"""Starts, watches and stops the embedded stack.

Order: Temporal dev server -> anvil -> database migrations -> HTTP app -> codec endpoint (with a
payload key) -> worker -> contract deployment hook (its transactions run on that worker) ->
schedules -> demos. Every check that can fail before anything starts runs first
(:func:`preflight`), so a bad port, binary, lock, database URL or keystore secret changes
nothing. A component that dies is restarted (data lives on disk); one that
keeps dying fails the stack, which then stops.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import IO

from agentfleet import redaction
from agentfleet.errors import FleetError
from agentfleet.settings import Settings
from starters.stack import components
from starters.stack.components import ComponentSpec
from starters.stack.state import (
    ComponentState,
    StackFiles,
    StackState,
    StackStatus,
    create_time_of,
    port_free,
    release,
)

Report = Callable[[str], None]
MAX_RESTARTS = 5
RESTART_WINDOW = 60.0
STOP_TIMEOUT = 15.0
START_ATTEMPTS = 3


@dataclass
class Running:
    spec: ComponentSpec
    proc: subprocess.Popen[bytes]
    log: Path
    restarts: list[float] = field(default_factory=list)


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def plan(settings: Settings, files: StackFiles) -> list[ComponentSpec]:
    """The processes this configuration runs, in start order (binaries looked up here)."""
    specs: list[ComponentSpec] = []
    if settings.uses_embedded_temporal:
        specs.append(components.temporal_spec(settings, files, _free_port()))
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
    if settings.demo:
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
        running = Running(spec, proc, log)
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
        states = [c for c in self.state.components if c.name != running.spec.name]
        states.append(
            ComponentState(
                name=running.spec.name,
                pid=running.proc.pid,
                create_time=create_time_of(running.proc.pid),
                ports=running.spec.ports,
                url=running.spec.url,
                log=str(running.log),
                restarts=len(running.restarts),
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
        """Block until asked to stop; restart components that die, fail if one keeps dying."""
        while not self.stopping.wait(0.5):
            for running in self.running:
                code = running.proc.poll()
                if code is None or self.stopping.is_set():
                    continue
                now = time.monotonic()
                running.restarts = [t for t in running.restarts if now - t < RESTART_WINDOW]
                if len(running.restarts) >= MAX_RESTARTS:
                    self.state.status = StackStatus.FAILED
                    self.state.error = (
                        f"{running.spec.title} exited {MAX_RESTARTS} times within a minute; "
                        f"see {running.log}"
                    )
                    self.report(self.state.error)
                    self._save()
                    self.stopping.set()
                    break
                self.report(f"{running.spec.title} exited (code {code}); restarting")
                running.restarts.append(now)
                proc, _ = running.spec.start(self.files)
                running.proc = proc
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
        self.files.home.mkdir(parents=True, exist_ok=True)
        self.files.write(self.state)


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


def _failure_line(log: Path) -> str:
    """The line of the latest start that says what went wrong (else its last line)."""
    try:
        text = log.read_text(errors="replace")
    except OSError:
        return "no log"
    latest = text.rsplit("\n--- ", 1)[-1]
    lines = [line.strip() for line in latest.splitlines()[1:] if line.strip()]
    for line in lines:
        lowered = line.lower()
        if "level=error" in lowered or lowered.startswith(("error", "panic:", "fatal")):
            return line[:300]
    return lines[-1][:300] if lines else "no output"


def _display_url(url: str) -> str:
    from agentfleet.settings import mask_url

    return mask_url(url)
