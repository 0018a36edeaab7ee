"""``python -m sandbox``: serve the channel sandbox until SIGTERM or SIGINT.

Prints one line, ``agentfleet sandbox ready: http://HOST:PORT smtp HOST:SMTP_PORT``, once both
servers listen; ``GET /healthz`` answers 200 from then on. Ports and the home folder default to
the settings (``FLEET_SANDBOX_PORT``, ``FLEET_SANDBOX_SMTP_PORT``, ``FLEET_HOME``). Webhooks are
verified with the same secret the adapter signs with (``FLEET_WEBHOOK_SECRET`` or the dev secret
under the home); the Bot API accepts the sandbox token and ``FLEET_TELEGRAM_BOT_TOKEN`` if set.
Exit status 0 after a signal, 1 if a server could not start.
"""

from __future__ import annotations

import argparse
import signal
import socket
import sys
import threading
from pathlib import Path
from types import FrameType

import uvicorn

from agentfleet import redaction
from agentfleet.channels.endpoints import SANDBOX_TELEGRAM_TOKEN, webhook_secret
from agentfleet.settings import LOOPBACK, Settings
from sandbox.app import create_app, listening_socket
from sandbox.buckets import TelegramLimits
from sandbox.smtp import smtp_controller
from sandbox.store import SandboxStore


class _AnnouncingServer(uvicorn.Server):
    """Prints the ready line once the HTTP socket listens."""

    def __init__(self, config: uvicorn.Config, ready_line: str) -> None:
        super().__init__(config)
        self.ready_line = ready_line

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=sockets)
        if self.started and not self.should_exit:
            print(self.ready_line, flush=True)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m sandbox", description="Local channel sandbox.")
    parser.add_argument("--host", default=LOOPBACK)
    parser.add_argument("--port", type=int, default=None, help="HTTP port (FLEET_SANDBOX_PORT)")
    parser.add_argument(
        "--smtp-port", type=int, default=None, help="SMTP port (FLEET_SANDBOX_SMTP_PORT)"
    )
    parser.add_argument("--home", type=Path, default=None, help="state folder (FLEET_HOME)")
    parser.add_argument(
        "--telegram-limits",
        default=None,
        help='JSON of TelegramLimits, e.g. {"private_chat": {"rate_per_s": 30, "burst": 1}}',
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    settings = Settings(home=args.home) if args.home else Settings()
    redaction.configure_logging(settings, level="WARNING")
    port = args.port or settings.sandbox_port
    smtp_port = args.smtp_port or settings.sandbox_smtp_port
    limits = (
        TelegramLimits.model_validate_json(args.telegram_limits) if args.telegram_limits else None
    )
    tokens = [SANDBOX_TELEGRAM_TOKEN]
    if settings.telegram_bot_token is not None:
        tokens.append(settings.telegram_bot_token.get_secret_value())
    store = SandboxStore(limits)
    app = create_app(
        store, webhook_secret=webhook_secret(settings).get_secret_value(), telegram_tokens=tokens
    )
    try:
        listener = listening_socket(args.host, port)
    except OSError as exc:
        print(f"sandbox: cannot serve HTTP on {args.host}:{port}: {exc}", file=sys.stderr)
        return 1
    config = uvicorn.Config(
        app,
        log_level="warning",
        log_config=None,
        access_log=False,
        lifespan="off",
        timeout_graceful_shutdown=2,
    )
    server = _AnnouncingServer(
        config, f"agentfleet sandbox ready: http://{args.host}:{port} smtp {args.host}:{smtp_port}"
    )
    stopping = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stopping.set()
        server.should_exit = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    controller = smtp_controller(store, args.host, smtp_port)
    try:
        controller.start()
    except (OSError, TimeoutError) as exc:
        print(f"sandbox: cannot serve SMTP on {args.host}:{smtp_port}: {exc}", file=sys.stderr)
        return 1
    try:
        if not stopping.is_set():
            server.run(sockets=[listener])
    finally:
        store.closing.set()
        controller.stop()
    return 0 if stopping.is_set() or server.started else 1


if __name__ == "__main__":
    sys.exit(main())
