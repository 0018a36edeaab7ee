"""The HTTP app (FastAPI). ``/codec/encode`` and ``/codec/decode`` speak Temporal's remote codec
protocol so the Web UI can show payloads encrypted with ``FLEET_PAYLOAD_KEY``.

The codec endpoint holds the key: bind the app to loopback (the default) or put it behind your
own authentication; the Web UI calls it from the user's browser, never from the server.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, HTTPException, Request
from fastapi.middleware.cors import CORSMiddleware
from google.protobuf import json_format
from temporalio.api.common.v1 import Payloads
from temporalio.converter import PayloadCodec

from agentfleet.codec import AESGCMCodec, parse_key
from agentfleet.settings import Settings
from starters.http import bots, facilitator, payments
from starters.http.gateway import Gateway


def create_app(settings: Settings) -> FastAPI:
    app = FastAPI(title="agentfleet", version="0.1.0", max_body_size=settings.http_max_body_bytes)
    origins = {
        f"http://127.0.0.1:{settings.ui_port}",
        f"http://localhost:{settings.ui_port}",
        *settings.codec_cors_origins,
    }
    app.add_middleware(
        CORSMiddleware,
        allow_origins=sorted(origins),
        allow_methods=["POST", "GET", "OPTIONS"],
        allow_headers=["content-type", "x-namespace", "authorization"],
        allow_credentials=True,
    )
    codec: PayloadCodec | None = None
    if settings.payload_key is not None:
        codec = AESGCMCodec(parse_key(settings.payload_key.get_secret_value()))

    @app.get("/healthz")
    async def healthz() -> dict[str, Any]:
        return {"ok": True, "codec": codec is not None}

    async def _transform(request: Request, encode: bool) -> dict[str, Any]:
        if codec is None:
            raise HTTPException(404, "no payload key configured (set FLEET_PAYLOAD_KEY)")
        try:
            body = await request.json()
            if not isinstance(body, dict):
                raise ValueError("expected a JSON object")
            payloads = json_format.ParseDict(body, Payloads())
        except (ValueError, TypeError, json_format.ParseError) as exc:
            raise HTTPException(400, f"body is not a Payloads JSON object: {exc}") from exc
        try:
            result = (
                await codec.encode(payloads.payloads)
                if encode
                else await codec.decode(payloads.payloads)
            )
        except Exception as exc:  # wrong key, tampered ciphertext
            raise HTTPException(400, "payloads could not be decoded with this key") from exc
        out: dict[str, Any] = json_format.MessageToDict(Payloads(payloads=result))
        out.setdefault("payloads", [])
        return out

    @app.post("/codec/encode")
    async def encode(request: Request) -> dict[str, Any]:
        return await _transform(request, encode=True)

    @app.post("/codec/decode")
    async def decode(request: Request) -> dict[str, Any]:
        return await _transform(request, encode=False)

    app.include_router(bots.create_router(settings))
    gateway = Gateway(settings)
    app.include_router(payments.create_router(settings, gateway))
    app.include_router(facilitator.create_router(settings, gateway))
    return app
