"""The whole sandbox: one FastAPI app for the HTTP servers and an SMTP server, sharing one store.

:func:`create_app` is what ``python -m sandbox`` serves; :class:`Sandbox` runs the same
app and SMTP server inside a test process (HTTP on its own thread, so a test that blocks its
event loop does not stall the server).
"""

from __future__ import annotations

import asyncio
import secrets
import socket
import threading
import time
from base64 import b64encode
from collections.abc import Collection
from pathlib import Path
from types import TracebackType
from typing import Any

import uvicorn
from aiosmtpd.controller import Controller
from fastapi import FastAPI
from pydantic import SecretStr

from agentfleet.channels.endpoints import (
    SANDBOX_TELEGRAM_TOKEN,
    WEBHOOK_SECRET_PREFIX,
    dev_webhook_secret,
)
from agentfleet.content.model import ChannelKind
from agentfleet.ports import free_port as free_port  # the sandbox package exports it
from agentfleet.settings import LOOPBACK
from sandbox.buckets import TelegramLimits
from sandbox.faults import quiet_dropped_connections
from sandbox.openai import openai_router
from sandbox.smtp import email_router, smtp_controller
from sandbox.store import InboxItem, SandboxStore
from sandbox.telegram import telegram_router
from sandbox.webhooks import webhook_router

START_TIMEOUT_S = 10.0


def create_app(
    store: SandboxStore,
    *,
    webhook_secret: str,
    telegram_tokens: Collection[str] = (SANDBOX_TELEGRAM_TOKEN,),
) -> FastAPI:
    """The sandbox's HTTP side: ``/telegram``, ``/openai/v1``, ``/webhooks``, the test controls
    under ``/sandbox``, ``GET /sandbox/inbox`` and ``GET /healthz``."""
    quiet_dropped_connections()
    app = FastAPI(title="agentfleet channel sandbox", docs_url=None, redoc_url=None)
    app.include_router(telegram_router(store, telegram_tokens))
    app.include_router(openai_router(store))
    app.include_router(webhook_router(store, webhook_secret))
    app.include_router(email_router(store))

    @app.get("/healthz")
    async def healthz() -> dict[str, bool]:
        return {"ok": True}

    @app.get("/sandbox/inbox")
    async def inbox(kind: ChannelKind | None = None, target: str | None = None) -> list[InboxItem]:
        """Every received message, oldest first (what ``fleet channel inbox`` shows)."""
        return store.inbox(kind, target)

    @app.post("/sandbox/reset")
    async def reset() -> dict[str, bool]:
        store.reset()
        return {"ok": True}

    return app


def listening_socket(host: str, port: int) -> socket.socket:
    """A bound TCP socket for the HTTP server with Nagle's algorithm off: a long-polled
    ``getUpdates`` answer otherwise waits ~40 ms for the client's delayed ACK (measured by
    ``bench/command_center.py``: a Telegram round trip 97 -> 18 ms)."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    listener.bind((host, port))
    return listener


def new_webhook_secret() -> str:
    return WEBHOOK_SECRET_PREFIX + b64encode(secrets.token_bytes(32)).decode()


class Sandbox:
    """The sandbox in this process: ``async with Sandbox() as sb:`` then ``sb.url``,
    ``sb.smtp_port``, ``sb.store``, ``sb.settings_overrides()``.

    ``port``/``smtp_port`` 0 pick free ports. The webhook secret is ``webhook_secret``, else the
    dev secret under ``home`` (the one the adapter uses for ``Settings(home=home)``), else a
    fresh random one (``sb.webhook_secret``).
    """

    def __init__(
        self,
        *,
        host: str = LOOPBACK,
        port: int = 0,
        smtp_port: int = 0,
        telegram_limits: TelegramLimits | None = None,
        webhook_secret: str | SecretStr | None = None,
        telegram_tokens: Collection[str] = (SANDBOX_TELEGRAM_TOKEN,),
        home: Path | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self.smtp_port = smtp_port
        self.store = SandboxStore(telegram_limits)
        if isinstance(webhook_secret, SecretStr):
            webhook_secret = webhook_secret.get_secret_value()
        if webhook_secret is None:
            webhook_secret = (
                dev_webhook_secret(home).get_secret_value() if home else new_webhook_secret()
            )
        self.webhook_secret = webhook_secret
        self.app = create_app(
            self.store, webhook_secret=webhook_secret, telegram_tokens=telegram_tokens
        )
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._smtp: Controller | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def telegram_api_url(self) -> str:
        return f"{self.url}/telegram"

    @property
    def openai_base_url(self) -> str:
        return f"{self.url}/openai/v1"

    def webhook_url(self, name: str) -> str:
        return f"{self.url}/webhooks/{name}"

    def settings_overrides(self) -> dict[str, Any]:
        """Keyword arguments for :class:`~agentfleet.settings.Settings` that point every channel
        at this sandbox (as ``fleet up`` does with its own)."""
        return {
            "channel_sandbox": True,
            "sandbox_port": self.port,
            "sandbox_smtp_port": self.smtp_port,
            "telegram_api_url": None,
            "telegram_bot_token": None,
            "smtp_host": None,
            "smtp_port": None,
            "smtp_username": None,
            "smtp_password": None,
            "smtp_starttls": False,
            "webhook_secret": self.webhook_secret,
        }

    async def start(self) -> None:
        listener = listening_socket(self.host, self.port)
        self.port = listener.getsockname()[1]
        config = uvicorn.Config(
            self.app,
            log_level="warning",
            access_log=False,
            lifespan="off",
            timeout_graceful_shutdown=2,
        )
        server = self._server = uvicorn.Server(config)
        thread = self._thread = threading.Thread(
            target=server.run, kwargs={"sockets": [listener]}, name="sandbox-http", daemon=True
        )
        thread.start()
        deadline = time.monotonic() + START_TIMEOUT_S
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                await self.stop()
                raise RuntimeError(f"the sandbox HTTP server did not start on {self.url}")
            await asyncio.sleep(0.01)
        try:
            self.smtp_port = self.smtp_port or free_port(self.host)
            self._smtp = smtp_controller(self.store, self.host, self.smtp_port)
            await asyncio.to_thread(self._smtp.start)
        except BaseException:
            self._smtp = None
            await self.stop()
            raise

    async def stop(self) -> None:
        """Stop both servers; answers still being held back end at once."""
        self.store.closing.set()
        if self._server is not None and self._thread is not None:
            self._server.should_exit = True
            await asyncio.to_thread(self._thread.join, START_TIMEOUT_S)
        self._server = self._thread = None
        if self._smtp is not None:
            await asyncio.to_thread(self._smtp.stop)
            self._smtp = None

    async def __aenter__(self) -> Sandbox:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.stop()
