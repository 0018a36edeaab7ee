"""A Standard Webhooks receiver: verifies signatures, dedupes by ``webhook-id``, records.

``POST /webhooks/<name>`` answers 401 for a missing or wrong signature or a timestamp more than
five minutes off (counted as ``rejected``), 200 ``{"ok": true, "duplicate": false}`` for a new
delivery and 200 ``{"ok": true, "duplicate": true}`` for a repeated ``webhook-id`` (counted, not
stored again), as the specification asks of receivers. Any name is a receiver.
"""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from sandbox.faults import DroppedResponse, hold
from sandbox.store import Fault, SandboxStore, WebhookDelivery, utcnow


class WebhookFault(BaseModel):
    """For the next ``count`` verified deliveries to one receiver. ``hang``: record, then hold
    the answer. ``drop``: record, then cut the connection. ``error``: 500, nothing recorded.
    ``throttle``: 429 with ``Retry-After: retry_after``, nothing recorded. ``refuse``: 400."""

    mode: Literal["hang", "drop", "error", "throttle", "refuse"]
    count: int = Field(default=1, ge=1, le=10_000)
    hang_s: float = Field(default=30.0, gt=0, le=600)
    retry_after: int = Field(default=1, ge=0, le=3600)


class WebhookInbox(BaseModel):
    deliveries: list[WebhookDelivery]
    received: int
    duplicates: int
    rejected: int


def webhook_router(store: SandboxStore, secret: str) -> APIRouter:
    """The receiver and its controls (``GET /sandbox/webhooks/<name>``, ``.../fault``)."""
    router = APIRouter()
    verifier = Webhook(secret)

    @router.post("/webhooks/{name}")
    async def receive(name: str, request: Request) -> Response:
        body = await request.body()
        try:
            payload: Any = verifier.verify(body, dict(request.headers))
        except (WebhookVerificationError, ValueError):
            store.count_webhook_rejected(name)
            return JSONResponse({"ok": False, "error": "invalid signature"}, status_code=401)
        if not isinstance(payload, dict):
            return JSONResponse({"ok": False, "error": "body is not an object"}, status_code=400)
        fault = store.take_webhook_fault(name)
        if fault is not None and fault.mode in ("error", "throttle", "refuse"):
            return _fault_answer(fault)
        new = store.record_webhook(
            WebhookDelivery(
                name=name,
                webhook_id=request.headers["webhook-id"],
                timestamp=int(float(request.headers["webhook-timestamp"])),
                payload=payload,
                received_at=utcnow(),
            )
        )
        if fault is not None and fault.mode == "drop":
            return DroppedResponse()
        if fault is not None and fault.mode == "hang":
            await hold(store, fault.hang_s, request)
        return JSONResponse({"ok": True, "duplicate": not new})

    @router.get("/sandbox/webhooks/{name}")
    async def inbox(name: str) -> WebhookInbox:
        return WebhookInbox(
            deliveries=store.webhook_deliveries(name), **store.webhook_counters(name)
        )

    @router.post("/sandbox/webhooks/{name}/fault")
    async def set_fault(name: str, fault: WebhookFault) -> dict[str, bool]:
        store.set_webhook_fault(name, Fault(**fault.model_dump()))
        return {"ok": True}

    return router


def _fault_answer(fault: Fault) -> JSONResponse:
    if fault.mode == "throttle":
        return JSONResponse(
            {"ok": False, "error": "too many requests"},
            status_code=429,
            headers={"Retry-After": str(fault.retry_after)},
        )
    if fault.mode == "refuse":
        return JSONResponse({"ok": False, "error": "refused"}, status_code=400)
    return JSONResponse({"ok": False, "error": "internal error"}, status_code=500)
