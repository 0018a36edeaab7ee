"""The processes of the embedded stack: how each starts, which ports it owns, when it is ready."""

from __future__ import annotations

import ctypes
import functools
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from agentfleet import binaries, search_attributes
from agentfleet.bots import a2a
from agentfleet.settings import LOOPBACK, Settings
from starters.stack.state import StackFiles, port_open

PR_SET_PDEATHSIG = 1

DEV_SERVER_ARGS: tuple[str, ...] = (
    "--sqlite-pragma",
    "journal_mode=wal",
    "--sqlite-pragma",
    "synchronous=normal",
    "--dynamic-config-value",
    "history.transferProcessorMaxPollRPS=1000",
)
"""Dev-server tuning shared by ``fleet up``, the tests and the benchmarks.

WAL + synchronous=normal: file persistence at in-memory speed (the default journal costs 2-3x
throughput). ``transferProcessorMaxPollRPS`` (default 20) makes every workflow task wait for the
next of 20 transfer-queue reads per second, so latency moves in 50 ms steps; at 1000 a workflow
with three activities takes ~45 ms instead of ~200 ms, with the same burst throughput.
"""


def _die_with_parent(parent: int) -> None:
    """Runs in the child before exec: get SIGTERM when the supervisor dies, never orphaned.

    The signal is tied to the thread that forked, so only the supervisor's main thread starts
    components. A supervisor that died between the fork and the ``prctl`` is seen by the
    parent pid having changed: the child then exits instead of running orphaned."""
    os.setsid()
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != parent:
        os._exit(1)


@dataclass
class ComponentSpec:
    """One supervised process."""

    name: str
    title: str
    argv: list[str]
    ports: dict[str, int]
    ready: Callable[[], bool]
    url: str | None = None
    env: dict[str, str] = field(default_factory=dict)
    ready_timeout: float = 60.0
    critical: bool = True
    """A critical component (server, chain) is restarted in place; its data lives on disk."""

    def start(self, files: StackFiles) -> tuple[subprocess.Popen[bytes], Path]:
        files.logs.mkdir(parents=True, exist_ok=True)
        log_path = files.logs / f"{self.name}.log"
        log: IO[bytes] = log_path.open("ab")
        log.write(f"\n--- {time.strftime('%Y-%m-%d %H:%M:%S')} starting {self.name}\n".encode())
        log.flush()
        proc = subprocess.Popen(  # noqa: S603 - argv built from our own settings
            self.argv,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, **self.env},
            preexec_fn=functools.partial(_die_with_parent, os.getpid()),  # noqa: PLW1509
        )
        log.close()
        return proc, log_path


def _http_ok(url: str, body: bytes | None = None) -> bool:
    request = urllib.request.Request(  # noqa: S310 - loopback URLs we built
        url, data=body, headers={"content-type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=1.0) as response:  # noqa: S310
            return 200 <= int(response.status) < 300
    except (urllib.error.URLError, OSError, ValueError):
        return False


def _rpc_ready(url: str) -> Callable[[], bool]:
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "eth_chainId", "params": []}).encode()
    return lambda: _http_ok(url, body)


def temporal_spec(settings: Settings, files: StackFiles, server_metrics_port: int) -> ComponentSpec:
    argv = [
        str(binaries.temporal_cli()),
        "server",
        "start-dev",
        "--ip",
        LOOPBACK,
        "--port",
        str(settings.temporal_port),
        "--ui-port",
        str(settings.ui_port),
        "--metrics-port",
        str(server_metrics_port),
        "--db-filename",
        str(files.temporal_db),
        *DEV_SERVER_ARGS,
        "--log-level",
        "warn",
        *search_attributes.dev_server_flags(),
    ]
    if settings.payload_key is not None:
        from agentfleet.codec import ui_codec_endpoint

        argv += ["--ui-codec-endpoint", ui_codec_endpoint(settings)]
    ports = {"grpc": settings.temporal_port, "ui": settings.ui_port, "metrics": server_metrics_port}
    return ComponentSpec(
        name="temporal",
        title="Temporal dev server",
        argv=argv,
        ports=ports,
        url=settings.ui_url,
        ready=lambda: port_open(settings.temporal_port) and _http_ok(settings.ui_url),
    )


def anvil_spec(settings: Settings, files: StackFiles) -> ComponentSpec:
    argv = [
        str(binaries.anvil(settings.anvil_bin)),
        "--host",
        LOOPBACK,
        "--port",
        str(settings.anvil_port),
        "--chain-id",
        str(settings.chain_id),
        "--state",
        str(files.anvil_state),
        "--state-interval",
        "5",
    ]
    url = f"http://{LOOPBACK}:{settings.anvil_port}"
    return ComponentSpec(
        name="anvil",
        title="anvil (EVM chain)",
        argv=argv,
        ports={"rpc": settings.anvil_port},
        url=url,
        ready=_rpc_ready(url),
    )


def http_spec(settings: Settings) -> ComponentSpec:
    return ComponentSpec(
        name="http",
        title="HTTP app (gateway, bots)",
        argv=[sys.executable, "-m", "starters.http"],
        ports={"http": settings.http_port},
        url=settings.http_url,
        ready=lambda: _http_ok(f"{settings.http_url}/healthz"),
        env={"PYTHONUNBUFFERED": "1", "FLEET_HOME": str(settings.home)},
        critical=False,
    )


def mcp_spec(settings: Settings) -> ComponentSpec:
    """The MCP server (``starters.mcp``): the fleet's skills as MCP tools, paid ones through
    the HTTP app's x402 gateway."""
    base = f"http://{LOOPBACK}:{settings.mcp_port}"
    return ComponentSpec(
        name="mcp",
        title="MCP server (skills as tools)",
        argv=[sys.executable, "-m", "starters.mcp"],
        ports={"http": settings.mcp_port},
        url=f"{base}/mcp",
        ready=lambda: _http_ok(f"{base}/healthz"),
        env={"PYTHONUNBUFFERED": "1", "FLEET_HOME": str(settings.home)},
        critical=False,
    )


def codec_spec(settings: Settings) -> ComponentSpec:
    """The codec endpoint for the Web UI (``starters.codec``): loopback only, behind the codec
    token (``fleet codec show``); runs when a payload key is set."""
    url = settings.codec_url
    return ComponentSpec(
        name="codec",
        title="codec endpoint (Web UI)",
        argv=[sys.executable, "-m", "starters.codec"],
        ports={"http": settings.codec_port},
        url=url,
        ready=lambda: _http_ok(f"{url}/healthz"),
        env={
            "PYTHONUNBUFFERED": "1",
            "FLEET_HOME": str(settings.home),
            "FLEET_CODEC_BIND_HOST": LOOPBACK,
        },
        critical=False,
    )


def worker_spec(settings: Settings) -> ComponentSpec:
    """The worker; with the demo and no FLEET_ALERT_CHANNELS, alerts go to the demo's sandbox
    group chat ``demo-alerts`` (which the demo creates)."""

    metrics_url = f"http://{LOOPBACK}:{settings.metrics_port}/metrics"
    env = {"PYTHONUNBUFFERED": "1", "FLEET_HOME": str(settings.home)}
    if settings.demo and settings.channel_sandbox and not settings.alert_channels:
        env["FLEET_ALERT_CHANNELS"] = DEMO_ALERT_CHANNEL
    return ComponentSpec(
        name="worker",
        title="worker (all task queues)",
        argv=[sys.executable, "-m", "workers.main"],
        ports={"metrics": settings.metrics_port},
        url=metrics_url,
        ready=lambda: _http_ok(metrics_url),
        env=env,
        critical=False,
    )


def sandbox_spec(settings: Settings) -> ComponentSpec:
    """The local channel servers (``sandbox``): a Telegram Bot API that enforces
    Telegram's limits, an SMTP server, a Standard Webhooks receiver and an OpenAI-compatible
    API. Channels without a real endpoint publish here (``fleet channel inbox`` reads it)."""
    url = settings.sandbox_url
    return ComponentSpec(
        name="sandbox",
        title="channel sandbox (Bot API, SMTP, webhooks)",
        argv=[
            sys.executable,
            "-m",
            "sandbox",
            "--host",
            LOOPBACK,
            "--port",
            str(settings.sandbox_port),
            "--smtp-port",
            str(settings.sandbox_smtp_port),
            "--home",
            str(settings.home),
        ],
        ports={"http": settings.sandbox_port, "smtp": settings.sandbox_smtp_port},
        url=url,
        ready=lambda: _http_ok(f"{url}/healthz"),
        env={"PYTHONUNBUFFERED": "1", "FLEET_HOME": str(settings.home)},
        critical=False,
    )


TELEGRAM_READY_FILE = "telegram.ready"
"""Written under FLEET_HOME by ``starters.telegram.bot`` once it polls (its readiness probe)."""


def telegram_spec(settings: Settings) -> ComponentSpec:
    """The Telegram command center (``starters.telegram.bot``): long polling on the Bot API (the
    sandbox's unless a bot token is set); ready once it polls. No port of its own."""
    ready_file = settings.home / TELEGRAM_READY_FILE
    planned_at = time.time()

    def ready() -> bool:
        try:
            return ready_file.stat().st_mtime >= planned_at - 1
        except FileNotFoundError:
            return False

    return ComponentSpec(
        name="telegram",
        title="Telegram command center",
        argv=[sys.executable, "-m", "starters.telegram.bot"],
        ports={},
        ready=ready,
        env={"PYTHONUNBUFFERED": "1", "FLEET_HOME": str(settings.home)},
        critical=False,
    )


DEMO_ALERT_CHANNEL = "demo-alerts"
"""The sandbox group chat the demo's worker sends alerts to (unless FLEET_ALERT_CHANNELS is set)."""

REMOTE_BOT_NAME = "remote-1"
"""The demo fleet's remote bot: the name the reference remote bot answers as."""


def remote_bot_url(settings: Settings) -> str:
    """Agent card URL of the reference remote bot ``fleet up`` starts for the demo fleet."""
    return a2a.card_url(f"http://{LOOPBACK}:{settings.remote_bot_port}")


def remote_bot_spec(settings: Settings) -> ComponentSpec:
    """The reference remote bot (``starters.remote_bot``), a process outside the fleet that the
    demo fleet's ``remote-1`` calls over A2A; ready once its agent card answers."""
    card = remote_bot_url(settings)
    return ComponentSpec(
        name="remote-bot",
        title="reference remote bot (A2A)",
        argv=[
            sys.executable,
            "-m",
            "starters.remote_bot",
            "--port",
            str(settings.remote_bot_port),
            "--name",
            REMOTE_BOT_NAME,
        ],
        ports={"http": settings.remote_bot_port},
        url=card,
        ready=lambda: _http_ok(card),
        env={"PYTHONUNBUFFERED": "1"},
        critical=False,
    )
