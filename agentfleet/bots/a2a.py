"""The A2A (0.3) JSON-RPC surface every bot endpoint speaks: where an agent card lives, how a
``message/send`` carrying ``{"skill", "args"}`` in a data part is read, and how it is answered.

Used by the HTTP app's built-in bots, the reference remote bot, and the remote-bot adapter.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse

CARD_PATH = ".well-known/agent-card.json"

INVALID_REQUEST, METHOD_NOT_FOUND, INVALID_PARAMS, PARSE_ERROR = -32600, -32601, -32602, -32700
SKILL_FAILED = -32000
"""JSON-RPC server error: the skill could not answer (the message says why)."""
UNSUPPORTED_OPERATION = -32004
"""A2A's UnsupportedOperationError."""
PAYMENT_REQUIRED = -32402
"""The skill is sold: the message says where to buy it with x402 (HTTP 402's number)."""

Answer = Callable[[str, dict[str, Any]], Awaitable[dict[str, Any]]]
"""``answer(skill, args) -> data``; raises :class:`RpcError` for what it refuses."""


class RpcError(Exception):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def card_url(url: str) -> str:
    """An agent's card: ``url`` itself if it names the card, else the card under that base."""
    return url if url.endswith("agent-card.json") else f"{url.rstrip('/')}/{CARD_PATH}"


def rpc_endpoint(card: dict[str, Any]) -> str | None:
    """Where a card takes JSON-RPC: its ``url`` (A2A 0.3), else the first JSONRPC entry of its
    ``supportedInterfaces`` (A2A 1.0). May be relative to the card."""
    if isinstance(card.get("url"), str):
        return str(card["url"])
    for entry in card.get("supportedInterfaces") or []:
        if (
            isinstance(entry, dict)
            and entry.get("protocolBinding") == "JSONRPC"
            and isinstance(entry.get("url"), str)
        ):
            return str(entry["url"])
    return None


def declared_urls(card: dict[str, Any]) -> list[str]:
    """Every endpoint a card declares: ``url``, the urls of ``supportedInterfaces`` and
    ``additionalInterfaces``, and the endpoints of its skills' offers (the x402 extension)."""
    found: list[Any] = [card.get("url")]
    for key in ("supportedInterfaces", "additionalInterfaces"):
        entries = card.get(key)
        found += [e.get("url") for e in entries or [] if isinstance(e, dict)]
    capabilities = card.get("capabilities")
    extensions = capabilities.get("extensions") if isinstance(capabilities, dict) else None
    for extension in extensions or []:
        params = extension.get("params") if isinstance(extension, dict) else None
        offers = params.get("skills") if isinstance(params, dict) else None
        if isinstance(offers, dict):
            found += [o.get("endpoint") for o in offers.values() if isinstance(o, dict)]
    return [url for url in found if isinstance(url, str)]


def _skill_call(body: Any) -> tuple[str, dict[str, Any], dict[str, Any]]:
    """(skill, args, message) of a ``message/send`` request; RpcError for anything else."""
    if not isinstance(body, dict) or body.get("jsonrpc") != "2.0":
        raise RpcError(INVALID_REQUEST, "invalid request: not JSON-RPC 2.0")
    if body.get("method") != "message/send":
        raise RpcError(METHOD_NOT_FOUND, f"method not found: {body.get('method')!r}")
    params = body.get("params")
    found = params.get("message") if isinstance(params, dict) else None
    message = found if isinstance(found, dict) else {}
    call = next(
        (
            part["data"]
            for part in message.get("parts") or []
            if isinstance(part, dict)
            and part.get("kind") == "data"
            and isinstance(part.get("data"), dict)
        ),
        None,
    )
    if call is None or not isinstance(call.get("skill"), str):
        raise RpcError(INVALID_PARAMS, "the message needs a data part {skill, args}")
    args = call.get("args") or {}
    if not isinstance(args, dict):
        raise RpcError(INVALID_PARAMS, "args must be an object")
    return call["skill"], args, message


async def serve_message_send(request: Request, answer: Answer) -> JSONResponse:
    """Answer one JSON-RPC ``message/send`` with an agent message holding one data part."""
    request_id: Any = None
    try:
        try:
            body = await request.json()
        except ValueError:
            raise RpcError(PARSE_ERROR, "parse error: the body is not JSON") from None
        if isinstance(body, dict) and body.get("jsonrpc") == "2.0":
            request_id = body.get("id")
        skill, args, message = _skill_call(body)
        data = await answer(skill, args)
    except RpcError as exc:
        error = {"code": exc.code, "message": exc.message}
        return JSONResponse({"jsonrpc": "2.0", "id": request_id, "error": error})
    reply: dict[str, Any] = {
        "kind": "message",
        "messageId": uuid.uuid4().hex,
        "role": "agent",
        "parts": [{"kind": "data", "data": data}],
    }
    if isinstance(message.get("contextId"), str):
        reply["contextId"] = message["contextId"]
    return JSONResponse({"jsonrpc": "2.0", "id": request_id, "result": reply})
