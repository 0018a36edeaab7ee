"""What a running stack writes under its home folder, and how other commands read it.

``stack.json`` describes the processes (pid, start time, ports, logs); ``stack.lock`` is held with
``flock`` by the supervisor for as long as it lives, so a crashed supervisor never leaves a lock
that blocks the next start.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import IO

import psutil
from pydantic import BaseModel, Field

CRASH_LOOP_AFTER = 3
"""Exits in a row (none after answering for ``FLEET_RESTART_STABLE_S``) that make a crash
loop: it is shown in ``fleet status`` and alerted once."""


class StackStatus(StrEnum):
    STARTING = "starting"
    READY = "ready"
    STOPPING = "stopping"
    FAILED = "failed"


class ComponentState(BaseModel):
    name: str
    pid: int | None = None
    create_time: float | None = None
    ports: dict[str, int] = Field(default_factory=dict)
    url: str | None = None
    log: str | None = None
    detail: str = ""
    restarts: int = 0
    """Restarts since ``fleet up``."""
    failures: int = 0
    """Exits in a row (none after the component answered for ``FLEET_RESTART_STABLE_S``)."""
    crash_loop: bool = False
    """``failures`` reached :data:`CRASH_LOOP_AFTER`; ends once the component answers for
    ``FLEET_RESTART_STABLE_S``."""
    backoff_s: float | None = None
    """The delay before the pending restart (None while the component runs)."""
    next_restart_at: datetime | None = None
    last_exit: str | None = None
    """How the latest run ended ("exit code 1", "killed by SIGKILL")."""
    last_error: str | None = None
    """One line of its log that says what went wrong (redacted), from the latest exit."""
    alert: str | None = None
    """What became of the crash-loop alert: "raised", or "not raised: why"."""

    def alive(self) -> bool:
        """True if the recorded process still runs (and is the same process, not a reused pid)."""
        return process_alive(self.pid, self.create_time)


class StackState(BaseModel):
    home: str
    supervisor_pid: int
    supervisor_create_time: float | None = None
    status: StackStatus = StackStatus.STARTING
    error: str | None = None
    started_at: datetime = Field(default_factory=lambda: datetime.now(UTC))
    components: list[ComponentState] = Field(default_factory=list)
    demo: list[str] = Field(default_factory=list)

    def component(self, name: str) -> ComponentState | None:
        return next((c for c in self.components if c.name == name), None)

    def supervisor_alive(self) -> bool:
        return process_alive(self.supervisor_pid, self.supervisor_create_time)


def process_alive(pid: int | None, create_time: float | None) -> bool:
    if pid is None:
        return False
    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return False
        return create_time is None or abs(proc.create_time() - create_time) < 1.0
    except psutil.Error:
        return False


def create_time_of(pid: int) -> float | None:
    try:
        return float(psutil.Process(pid).create_time())
    except psutil.Error:
        return None


def port_open(port: int, host: str = "127.0.0.1", timeout: float = 0.5) -> bool:
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=timeout):
        return True
    return False


def port_free(port: int, host: str = "127.0.0.1") -> bool:
    """True if nothing listens on ``host:port`` and we could bind it."""
    if port_open(port, host, timeout=0.2):
        return False
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # Servers bind with SO_REUSEADDR, so connections left in TIME_WAIT don't block them.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


class StackFiles:
    """Paths under a stack's home folder."""

    def __init__(self, home: Path) -> None:
        self.home = home
        self.state = home / "stack.json"
        self.lock = home / "stack.lock"
        self.logs = home / "logs"
        self.temporal_db = home / "temporal.db"
        self.anvil_state = home / "anvil-state.json"

    def read(self) -> StackState | None:
        try:
            return StackState.model_validate_json(self.state.read_text())
        except (OSError, ValueError):
            return None

    def write(self, state: StackState) -> None:
        tmp = self.state.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(state.model_dump(mode="json"), indent=2) + "\n")
        os.replace(tmp, self.state)

    def try_lock(self) -> IO[str] | None:
        """Take the stack lock, or return None if a live supervisor holds it."""
        self.home.mkdir(parents=True, exist_ok=True)
        handle = self.lock.open("a+")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            return None
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        return handle

    def lock_holder(self) -> int | None:
        """The pid written in a lock that is held right now, else None."""
        handle = self.try_lock()
        if handle is not None:
            release(handle)
            return None
        try:
            return int(self.lock.read_text().strip() or 0) or None
        except (OSError, ValueError):
            return None


def release(handle: IO[str]) -> None:
    with contextlib.suppress(OSError):
        fcntl.flock(handle, fcntl.LOCK_UN)
    handle.close()
