"""``fleet up`` / ``fleet down`` / ``fleet status``: the embedded stack."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from typing import Annotated, Any

import typer
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from agentfleet.errors import FleetError
from agentfleet.settings import DEMO_NAMES, Settings, resolve_demos
from starters.cli.output import JsonOpt, console, emit_json, err_console, fail
from starters.cli.settings_arg import load_settings
from starters.stack.state import ComponentState, StackFiles, StackState, StackStatus, port_open
from starters.stack.supervisor import Supervisor, preflight, terminate

DETACH_TIMEOUT = 180.0


def up(
    detach: Annotated[
        bool, typer.Option("--detach", "-d", help="Start in the background and return.")
    ] = False,
    no_demo: Annotated[
        bool, typer.Option("--no-demo", help="Start the bare stack without the demos.")
    ] = False,
    demo: Annotated[
        list[str] | None,
        typer.Option(
            "--demo",
            metavar="NAME",
            help=f"Run only this demo (repeatable): {', '.join(DEMO_NAMES)}. Purchase, content, "
            "agent and learning bring the demo fleet.",
        ),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Start the embedded stack: Temporal dev server + Web UI, anvil, database, HTTP app, worker.

    Runs the demo of every capability unless --no-demo (or only the ones named by --demo).
    Ctrl-C (or SIGTERM) stops it cleanly; with --detach it keeps running until `fleet down`.
    """
    settings = load_settings(as_json)
    if no_demo and demo:
        fail("--no-demo and --demo exclude each other; pass one of them", 2, as_json=as_json)
    if no_demo:
        settings = settings.model_copy(update={"demo": False})
    if demo:
        try:
            chosen = resolve_demos([name.strip() for part in demo for name in part.split(",")])
        except ValueError as exc:
            fail(f"--demo: {exc}", 2, as_json=as_json)
        settings = settings.model_copy(update={"demo": True, "demos": chosen})
    try:
        if detach:
            state = _start_detached(settings, quiet=as_json)
        else:
            _run_foreground(settings, as_json)
            return
    except FleetError as exc:
        fail(str(exc), exc.exit_code, as_json=as_json)
    if as_json:
        emit_json(_status_dict(settings, state))
    else:
        console.print(_panel(settings, state, detached=True))


def _run_foreground(settings: Settings, as_json: bool) -> None:
    def progress(line: str) -> None:
        if not as_json:
            console.print(f"[dim]·[/] {line}", highlight=False)

    supervisor = Supervisor(settings, progress)
    supervisor.stop_on_signals()
    try:
        state = supervisor.start()
    except KeyboardInterrupt:
        fail("start interrupted; everything started was stopped", 130, as_json=as_json)
    if as_json:
        emit_json(_status_dict(settings, state))
        sys.stdout.flush()
    else:
        console.print(_panel(settings, state, detached=False))
    try:
        supervisor.supervise()
    finally:
        failed = supervisor.state.status is StackStatus.FAILED
        supervisor.stop()
    if failed:
        fail(supervisor.state.error or "the stack failed", as_json=False)
    if not as_json:
        console.print("stack stopped")


def _start_detached(settings: Settings, quiet: bool) -> StackState:
    preflight(settings)
    files = StackFiles(settings.home)
    files.logs.mkdir(parents=True, exist_ok=True)
    log_path = files.logs / "supervisor.log"
    offset = log_path.stat().st_size if log_path.exists() else 0
    with log_path.open("ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "starters.stack"],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env={
                **os.environ,
                "FLEET_HOME": str(settings.home),
                "FLEET_DEMO": "1" if settings.demo else "0",
                "FLEET_DEMOS": ",".join(settings.demos),
                "PYTHONUNBUFFERED": "1",
            },
        )
    deadline = time.monotonic() + DETACH_TIMEOUT
    while True:
        offset = _echo_new_lines(log_path, offset, quiet)
        state = files.read()
        if state is not None and state.supervisor_pid == proc.pid:
            if state.status is StackStatus.READY:
                return state
            if state.status is StackStatus.FAILED:
                proc.wait(timeout=60)
                raise FleetError(state.error or f"the stack failed to start; see {log_path}")
        if proc.poll() is not None:
            _echo_new_lines(log_path, offset, quiet)
            state = files.read()
            error = state.error if state and state.error else None
            raise FleetError(error or f"the stack exited during start; see {log_path}")
        if time.monotonic() > deadline:
            terminate(proc.pid, proc)
            raise FleetError(
                f"the stack was not ready within {DETACH_TIMEOUT:.0f} s; see {log_path}"
            )
        time.sleep(0.2)


def _echo_new_lines(path: Any, offset: int, quiet: bool) -> int:
    try:
        with path.open("rb") as handle:
            handle.seek(offset)
            chunk = handle.read()
    except OSError:
        return offset
    if not quiet:
        for line in chunk.decode(errors="replace").splitlines():
            if line.strip():
                err_console.print(f"[dim]·[/] {line}", highlight=False)
    return offset + len(chunk)


def down(as_json: JsonOpt = False) -> None:
    """Stop the stack started from this home folder (idempotent: nothing running is fine)."""
    settings = load_settings(as_json)
    files = StackFiles(settings.home)
    state = files.read()
    stopped: list[str] = []
    if state is not None:
        if state.supervisor_alive():
            os.kill(state.supervisor_pid, signal.SIGTERM)
            deadline = time.monotonic() + 60
            while state.supervisor_alive() and time.monotonic() < deadline:
                time.sleep(0.1)
            if state.supervisor_alive():
                terminate(state.supervisor_pid)
            stopped.append("supervisor")
        for component in state.components:
            if component.pid is not None and component.alive():
                terminate(component.pid)
                stopped.append(component.name)
        files.state.unlink(missing_ok=True)
    running = state is not None
    if as_json:
        emit_json({"ok": True, "home": str(settings.home), "was_running": running})
    elif running:
        console.print(f"stack in {settings.home} stopped")
    else:
        console.print(f"no stack running from {settings.home}")


def status(as_json: JsonOpt = False) -> None:
    """Show what runs, on which ports, and whether each part answers. Exit 1 if not all up."""
    settings = load_settings(as_json)
    state = StackFiles(settings.home).read()
    data = _status_dict(settings, state)
    if as_json:
        emit_json(data)
    elif state is None:
        console.print(f"no stack running from {settings.home}; start one with `fleet up`")
    else:
        console.print(_panel(settings, state, detached=True))
    if not data["healthy"]:
        raise typer.Exit(1)


def _component_up(component: Any) -> bool:
    if component.pid is None:
        return True
    return bool(component.alive() and all(port_open(p) for p in component.ports.values()))


def _status_dict(settings: Settings, state: StackState | None) -> dict[str, Any]:
    if state is None:
        return {"running": False, "healthy": False, "home": str(settings.home), "components": []}
    components = [
        {
            **c.model_dump(mode="json", exclude={"create_time"}),
            "up": _component_up(c),
            "restart_in_s": _restart_in(c),
        }
        for c in state.components
    ]
    supervisor_up = state.supervisor_alive()
    healthy = (
        supervisor_up and state.status is StackStatus.READY and all(c["up"] for c in components)
    )
    return {
        "running": supervisor_up,
        "healthy": healthy,
        "status": state.status.value,
        "error": state.error,
        "home": state.home,
        "supervisor_pid": state.supervisor_pid,
        "started_at": state.started_at.isoformat(),
        "web_ui": settings.ui_url if state.component("temporal") else None,
        "components": components,
        "crash_looping": [c.name for c in state.components if c.crash_loop],
        "demo": state.demo,
        "logs": str(StackFiles(settings.home).logs),
    }


def _restart_in(component: ComponentState) -> float | None:
    """Seconds until the supervisor restarts ``component`` (None if no restart is pending)."""
    if component.next_restart_at is None:
        return None
    return round(max(0.0, (component.next_restart_at - datetime.now(UTC)).total_seconds()), 1)


def _state_mark(component: ComponentState) -> str:
    up_now = _component_up(component)
    if component.crash_loop:
        restart_in = _restart_in(component)
        when = "restarting" if restart_in is None else f"next restart in {restart_in:g} s"
        mark = "[yellow]up, was crash-looping[/]" if up_now else "[red]crash loop[/]"
        return f"{mark} ({component.restarts} restarts, {when})"
    if up_now:
        return "[green]up[/]"
    restart_in = _restart_in(component)
    return "[red]down[/]" if restart_in is None else f"[red]down[/] (restart in {restart_in:g} s)"


def _panel(settings: Settings, state: StackState, *, detached: bool) -> Panel:
    table = Table(box=None, pad_edge=False, show_header=True, header_style="bold")
    table.add_column("component")
    table.add_column("state")
    table.add_column("where", overflow="fold")
    table.add_column("pid", justify="right")
    table.add_column("log")
    for component in state.components:
        mark = _state_mark(component)
        where = component.url or ", ".join(f"{k} :{v}" for k, v in component.ports.items())
        if component.detail:
            where = f"{where}  ({component.detail})"
        table.add_row(
            component.name,
            mark,
            where,
            str(component.pid or ""),
            os.path.relpath(component.log) if component.log else "",
        )
    lines: list[Any] = [table, ""]
    for component in state.components:
        if component.crash_loop or (component.last_error and not _component_up(component)):
            lines.append(
                Text(f"{component.name}: {component.last_exit}; last log line: ")
                + Text(component.last_error or "", style="red")
            )
            if component.alert:
                lines.append(Text(f"{component.name}: alert {component.alert}"))
    if lines[-1] != "":
        lines.append("")
    if state.component("temporal"):
        lines.append(f"Web UI      [link={settings.ui_url}]{settings.ui_url}[/link]")
    worker = state.component("worker")
    if worker and worker.url:
        lines.append(f"metrics     {worker.url}")
    lines.append(f"state, logs {state.home}")
    for demo in state.demo:
        lines.append(f"demo        {demo}")
    stop_hint = "`fleet down` stops it" if detached else "Ctrl-C stops it"
    lines.append(f"\n[dim]{stop_hint}; `fleet status --json` for scripts[/]")
    from rich.console import Group

    title = f"agentfleet stack \\[{state.status.value}]"
    return Panel(Group(*lines), title=title, expand=False)
