"""The public HTTP app (FastAPI): bots' registration files and agent cards, the x402 gateway and
facilitator, and (for operators) fleet commands' answers.

It holds no payload key: the codec endpoint for the Web UI is its own app on loopback
(``starters/codec``). Error answers are redacted of the process's secrets
(:mod:`agentfleet.redaction`): an ``HTTPException``'s detail, and any unexpected exception, which
becomes a 500 of one line.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from agentfleet import redaction
from agentfleet.errors import first_line
from agentfleet.settings import Settings
from clients.checkout import Checkout
from starters.http import bots, commands, facilitator, payments

log = logging.getLogger("agentfleet.http")


def redact_detail(detail: Any) -> Any:
    """An error detail (text, or JSON of lists and objects) with secrets masked."""
    if isinstance(detail, str):
        return redaction.redact(detail)
    if isinstance(detail, list):
        return [redact_detail(item) for item in detail]
    if isinstance(detail, dict):
        return {key: redact_detail(value) for key, value in detail.items()}
    return detail


def create_app(settings: Settings) -> FastAPI:
    redaction.install(settings)
    app = FastAPI(title="agentfleet", version="0.1.0", max_body_size=settings.http_max_body_bytes)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return JSONResponse(
            {"detail": redact_detail(exc.detail)},
            status_code=exc.status_code,
            headers=exc.headers,
        )

    @app.exception_handler(Exception)
    async def unexpected_error(request: Request, exc: Exception) -> JSONResponse:
        log.error("%s %s failed", request.method, request.url.path, exc_info=exc)
        reason = redaction.redact(f"{type(exc).__name__}: {first_line(exc, 200)}")
        return JSONResponse({"detail": f"internal error: {reason}"}, status_code=500)

    @app.get("/healthz")
    async def healthz() -> dict[str, Any]:
        return {"ok": True, "codec": settings.payload_key is not None}

    checkout = Checkout(settings)
    app.include_router(bots.create_router(settings, checkout))
    app.include_router(payments.create_router(settings, checkout))
    app.include_router(facilitator.create_router(settings, checkout))
    app.include_router(commands.create_router(settings, checkout))
    return app
