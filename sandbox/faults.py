"""Answers that go wrong on purpose: held back past the client's timeout, or cut off mid-way.

Both leave the client unsure whether its message arrived (the server did record it), which is
the case a publisher must handle without sending twice.
"""

from __future__ import annotations

import asyncio
import logging
import time

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from sandbox.store import SandboxStore

POLL_S = 0.05


async def hold(store: SandboxStore, seconds: float, request: Request | None = None) -> None:
    """Wait ``seconds``, less if the client disconnects or the sandbox stops."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and not store.closing.is_set():
        if request is not None and await request.is_disconnected():
            return
        await asyncio.sleep(POLL_S)


class ConnectionDropped(Exception):
    """Raised after a partial answer so the server closes the connection (a ``drop`` fault)."""


class DroppedResponse(Response):
    """Starts a 200 answer, sends a few bytes of a longer body, then breaks the connection: the
    client sees the connection close mid-answer (httpx ``RemoteProtocolError``)."""

    def __init__(self) -> None:
        super().__init__(status_code=200)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"application/json"), (b"content-length", b"512")],
            }
        )
        await send({"type": "http.response.body", "body": b'{"ok": tr', "more_body": True})
        raise ConnectionDropped("sandbox fault: connection dropped mid-answer")


class _QuietDrops(logging.Filter):
    """Keeps the server's "Exception in ASGI application" log for real errors only."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        return not isinstance(exc, ConnectionDropped) and not (
            isinstance(exc, BaseExceptionGroup)
            and any(isinstance(e, ConnectionDropped) for e in exc.exceptions)
        )


def quiet_dropped_connections() -> None:
    """Install (once) the filter that hides the intended ``drop`` faults from the error log."""
    logger = logging.getLogger("uvicorn.error")
    if not any(isinstance(f, _QuietDrops) for f in logger.filters):
        logger.addFilter(_QuietDrops())
