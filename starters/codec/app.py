"""Temporal's remote codec protocol (``POST .../encode``, ``POST .../decode``, Payloads as
protobuf JSON) for the Web UI and ``temporal --codec-endpoint``.

It holds the payload key, so it is not part of the public HTTP app: it listens on loopback
(``FLEET_CODEC_PORT``) and answers only a caller that shows the codec token, either in the path
(``/t/<token>/decode``: the dev server's Web UI can be given an endpoint URL and nothing else) or
as ``Authorization: Bearer <token>`` (``temporal ... --codec-auth``, a UI that passes an access
token). Anything else is a 404 or 401 and decodes nothing. With a payload key, decoding refuses
payloads that are not encrypted, unless ``FLEET_PAYLOAD_ACCEPT_PLAINTEXT``.
"""

from __future__ import annotations

import hmac
from typing import Any

from fastapi import FastAPI, HTTPException, Request
from fastapi.middleware.cors import CORSMiddleware
from google.protobuf import json_format
from temporalio.api.common.v1 import Payloads

from agentfleet import redaction
from agentfleet.codec import PlaintextRefused, codec, codec_token
from agentfleet.settings import Settings


def allowed_origins(settings: Settings) -> list[str]:
    """The Web UI's origins (the embedded one and ``FLEET_CODEC_CORS_ORIGINS``)."""
    return sorted(
        {
            f"http://127.0.0.1:{settings.ui_port}",
            f"http://localhost:{settings.ui_port}",
            *settings.codec_cors_origins,
        }
    )


def create_app(settings: Settings) -> FastAPI:
    redaction.install(settings)
    token = codec_token(settings).encode()
    payload_codec = codec(settings)
    app = FastAPI(title="agentfleet codec", version="0.1.0", docs_url=None, redoc_url=None)
    app.add_middleware(
        CORSMiddleware,
        allow_origins=allowed_origins(settings),
        allow_methods=["POST", "OPTIONS"],
        allow_headers=["content-type", "x-namespace", "authorization"],
        allow_credentials=True,
    )

    def shown(candidate: str) -> bool:
        return hmac.compare_digest(candidate.encode(), token)

    def bearer(request: Request) -> None:
        scheme, _, value = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not shown(value.strip()):
            raise HTTPException(
                401, "the codec needs its token", headers={"WWW-Authenticate": "Bearer"}
            )

    async def transform(request: Request, encode: bool) -> dict[str, Any]:
        if payload_codec is None:
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
                await payload_codec.encode(payloads.payloads)
                if encode
                else await payload_codec.decode(payloads.payloads)
            )
        except PlaintextRefused as exc:
            raise HTTPException(400, str(exc)) from exc
        except Exception as exc:  # wrong key, tampered ciphertext
            raise HTTPException(400, "payloads could not be decoded with this key") from exc
        out: dict[str, Any] = json_format.MessageToDict(Payloads(payloads=result))
        out.setdefault("payloads", [])
        return out

    @app.get("/healthz")
    async def healthz() -> dict[str, Any]:
        return {"ok": True, "codec": payload_codec is not None}

    @app.post("/t/{candidate}/encode")
    async def encode_by_path(candidate: str, request: Request) -> dict[str, Any]:
        if not shown(candidate):
            raise HTTPException(404, "Not Found")
        return await transform(request, encode=True)

    @app.post("/t/{candidate}/decode")
    async def decode_by_path(candidate: str, request: Request) -> dict[str, Any]:
        if not shown(candidate):
            raise HTTPException(404, "Not Found")
        return await transform(request, encode=False)

    @app.post("/encode")
    async def encode(request: Request) -> dict[str, Any]:
        bearer(request)
        return await transform(request, encode=True)

    @app.post("/decode")
    async def decode(request: Request) -> dict[str, Any]:
        bearer(request)
        return await transform(request, encode=False)

    return app
