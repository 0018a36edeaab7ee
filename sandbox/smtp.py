"""An SMTP server (aiosmtpd) that keeps every message it accepts, plus ``GET /sandbox/email``.

Recipients whose local part is ``refused`` get ``550`` (mailbox unavailable) and ``busy`` get
``450`` (try later), so tests can reach a permanent and a temporary refusal before DATA.
Queued faults (``POST /sandbox/email/fault``) apply to the next messages: ``hang`` records the
message, then holds the final answer; ``tempfail`` answers 451 and ``reject`` 554 without
recording.
"""

from __future__ import annotations

import email
import email.policy
from email.message import EmailMessage
from typing import Any, Literal

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session
from fastapi import APIRouter
from pydantic import BaseModel, Field

from sandbox.faults import hold
from sandbox.store import EmailRecord, Fault, SandboxStore, utcnow

REFUSED_LOCAL_PART = "refused"
BUSY_LOCAL_PART = "busy"


class EmailFault(BaseModel):
    mode: Literal["hang", "tempfail", "reject"]
    count: int = Field(default=1, ge=1, le=10_000)
    hang_s: float = Field(default=30.0, gt=0, le=600)


class SandboxSMTPHandler:
    """aiosmtpd handler hooks (called on the controller's own thread and loop)."""

    def __init__(self, store: SandboxStore) -> None:
        self.store = store

    async def handle_RCPT(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        local = address.split("@", 1)[0].lower()
        if local == REFUSED_LOCAL_PART:
            return "550 5.1.1 Mailbox unavailable"
        if local == BUSY_LOCAL_PART:
            return "450 4.2.1 Mailbox busy, try again later"
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        fault = self.store.take_email_fault()
        if fault is not None and fault.mode == "tempfail":
            return "451 4.3.0 Temporary failure, try again later"
        if fault is not None and fault.mode == "reject":
            return "554 5.6.0 Message rejected"
        self.store.record_email(parse_email(envelope))
        if fault is not None and fault.mode == "hang":
            await hold(self.store, fault.hang_s)
        return "250 2.0.0 Message accepted for delivery"


def parse_email(envelope: Envelope) -> EmailRecord:
    raw = envelope.content
    data = raw if isinstance(raw, bytes) else (raw or "").encode()
    parsed = email.message_from_bytes(data, policy=email.policy.default)
    body_part = (
        parsed.get_body(preferencelist=("plain",)) if isinstance(parsed, EmailMessage) else None
    )
    body = body_part.get_content() if isinstance(body_part, EmailMessage) else ""
    return EmailRecord(
        mail_from=envelope.mail_from or "",
        to=list(envelope.rcpt_tos),
        subject=str(parsed.get("Subject", "")),
        message_id=str(parsed.get("Message-ID", "")).strip(),
        body=body.replace("\r\n", "\n").rstrip("\n"),
        received_at=utcnow(),
    )


def smtp_controller(store: SandboxStore, host: str, port: int) -> Controller:
    """A controller, not started (``start()`` blocks until it listens; ``stop()`` joins)."""
    return Controller(
        SandboxSMTPHandler(store), hostname=host, port=port, ready_timeout=10, enable_SMTPUTF8=True
    )


def email_router(store: SandboxStore) -> APIRouter:
    router = APIRouter()

    @router.get("/sandbox/email")
    async def emails(to: str | None = None) -> list[EmailRecord]:
        return store.emails(to)

    @router.post("/sandbox/email/fault")
    async def set_fault(fault: EmailFault) -> dict[str, Any]:
        store.set_email_fault(Fault(**fault.model_dump()))
        return {"ok": True}

    return router
