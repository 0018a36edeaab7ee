"""The sandbox's memory: everything its servers accepted, counters, queued faults and updates.

One :class:`SandboxStore` is shared by the HTTP app (its own thread or process), the SMTP
server (aiosmtpd's thread) and the tests reading it, so every method takes the lock and returns
copies. Nothing is persisted: a restarted sandbox starts empty.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, Field

from agentfleet.content.model import ChannelKind
from sandbox.buckets import TelegramLimits, TelegramRateLimiter


def utcnow() -> datetime:
    return datetime.now(UTC)


class TelegramMessage(BaseModel):
    """A message the Bot API sandbox accepted (``message_id`` increases per chat from 1)."""

    message_id: int
    chat_id: str
    text: str
    parse_mode: str | None = None
    reply_markup: dict[str, Any] | None = None
    date: int
    """Unix seconds, as Telegram's ``Message.date``."""
    received_at: datetime
    received_monotonic: float
    """``time.monotonic()`` at acceptance, for pacing checks within one process."""
    edits: list[str] = Field(default_factory=list)
    """Earlier texts, oldest first, when ``editMessageText`` changed it."""
    document: dict[str, Any] | None = None
    """``sendDocument``: ``file_name``, ``file_size`` and the file as ``text`` (``text`` above
    is the caption)."""


class BotApiCall(BaseModel):
    """Any Bot API method call other than ``sendMessage``/``getUpdates`` (the token is left out)."""

    method: str
    params: dict[str, Any]
    received_at: datetime


class EmailRecord(BaseModel):
    mail_from: str
    to: list[str]
    subject: str
    message_id: str
    body: str
    received_at: datetime


class WebhookDelivery(BaseModel):
    name: str
    webhook_id: str
    timestamp: int
    payload: dict[str, Any]
    received_at: datetime


class OpenAIRequest(BaseModel):
    path: str
    body: dict[str, Any]
    received_at: datetime


class InboxItem(BaseModel):
    """One received message of any kind, as ``fleet channel inbox`` shows it. ``target`` is the
    chat id, the recipient address or the webhook receiver's name."""

    kind: ChannelKind
    target: str
    message_id: str
    text: str
    subject: str = ""
    received_at: datetime


class Fault(BaseModel):
    """A misbehaviour for the next ``count`` requests of one kind (see each server's modes)."""

    mode: str
    count: int = Field(default=1, ge=1, le=10_000)
    hang_s: float = Field(default=30.0, gt=0, le=600)
    """How long ``hang`` holds the answer back (it ends early when the client goes away)."""
    retry_after: int = Field(default=1, ge=0, le=3600)
    """The ``Retry-After`` a ``throttle`` fault answers with."""


class SandboxStore:
    """Thread-safe in-memory state of one sandbox."""

    def __init__(
        self,
        telegram_limits: TelegramLimits | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.lock = threading.Lock()
        self.closing = threading.Event()
        """Set when the sandbox stops: hanging answers end at once."""
        self.clock = clock
        self.limiter = TelegramRateLimiter(telegram_limits or TelegramLimits(), clock)
        self.reset()

    def reset(self) -> None:
        """Forget every message, counter, fault, update and rate-limit bucket."""
        self.reset_telegram()
        self.reset_email()
        self.reset_webhooks()
        self.reset_openai()

    def reset_telegram(self) -> None:
        with self.lock:
            self.limiter.reset()
            self._tg_messages: list[TelegramMessage] = []
            self._tg_next_id: dict[str, int] = {}
            self._tg_counters = {"accepted": 0, "rate_limited": 0, "faulted": 0}
            self._tg_fault: Fault | None = None
            self._tg_updates: list[dict[str, Any]] = []
            self._tg_next_update = 1
            self._tg_calls: list[BotApiCall] = []

    def reset_email(self) -> None:
        with self.lock:
            self._emails: list[EmailRecord] = []
            self._email_fault: Fault | None = None

    def reset_webhooks(self) -> None:
        with self.lock:
            self._webhooks: dict[str, list[WebhookDelivery]] = {}
            self._webhook_counters: dict[str, dict[str, int]] = {}
            self._webhook_faults: dict[str, Fault] = {}

    def reset_openai(self) -> None:
        with self.lock:
            self._openai: list[OpenAIRequest] = []

    @staticmethod
    def _take(fault: Fault | None) -> tuple[Fault | None, Fault | None]:
        """(the fault to apply now, the fault left for later)."""
        if fault is None:
            return None, None
        left = fault.model_copy(update={"count": fault.count - 1}) if fault.count > 1 else None
        return fault, left

    # Telegram

    def telegram_admit(self, token: str, chat_id: str) -> float:
        """0 when a ``sendMessage`` to ``chat_id`` fits the rate limits, else the wait (s)."""
        with self.lock:
            wait = self.limiter.admit(token, chat_id)
            if wait > 0:
                self._tg_counters["rate_limited"] += 1
            return wait

    def take_telegram_fault(self) -> Fault | None:
        with self.lock:
            fault, self._tg_fault = self._take(self._tg_fault)
            if fault is not None:
                self._tg_counters["faulted"] += 1
            return fault

    def set_telegram_fault(self, fault: Fault | None) -> None:
        with self.lock:
            self._tg_fault = fault

    def next_message_id(self, chat_id: str) -> int:
        """Take the chat's next message id (bot and user messages share one sequence)."""
        with self.lock:
            message_id = self._tg_next_id.get(chat_id, 1)
            self._tg_next_id[chat_id] = message_id + 1
            return message_id

    def find_telegram_message(self, chat_id: str, message_id: int) -> TelegramMessage | None:
        with self.lock:
            for record in self._tg_messages:
                if record.chat_id == chat_id and record.message_id == message_id:
                    return record.model_copy(deep=True)
            return None

    def record_telegram_message(
        self,
        chat_id: str,
        text: str,
        parse_mode: str | None = None,
        reply_markup: dict[str, Any] | None = None,
        document: dict[str, Any] | None = None,
    ) -> TelegramMessage:
        with self.lock:
            message_id = self._tg_next_id.get(chat_id, 1)
            self._tg_next_id[chat_id] = message_id + 1
            now = utcnow()
            record = TelegramMessage(
                message_id=message_id,
                chat_id=chat_id,
                text=text,
                parse_mode=parse_mode,
                reply_markup=reply_markup,
                document=document,
                date=int(now.timestamp()),
                received_at=now,
                received_monotonic=self.clock(),
            )
            self._tg_messages.append(record)
            self._tg_counters["accepted"] += 1
            return record.model_copy()

    def edit_telegram_message(
        self, chat_id: str, message_id: int, text: str
    ) -> TelegramMessage | None:
        with self.lock:
            for record in self._tg_messages:
                if record.chat_id == chat_id and record.message_id == message_id:
                    record.edits.append(record.text)
                    record.text = text
                    return record.model_copy(deep=True)
            return None

    def telegram_messages(self, chat_id: str | None = None) -> list[TelegramMessage]:
        with self.lock:
            return [
                m.model_copy(deep=True)
                for m in self._tg_messages
                if chat_id is None or m.chat_id == chat_id
            ]

    def telegram_counters(self) -> dict[str, int]:
        """``accepted`` messages, ``rate_limited`` 429 answers, ``faulted`` injected faults."""
        with self.lock:
            return dict(self._tg_counters)

    def record_telegram_call(self, method: str, params: dict[str, Any]) -> None:
        with self.lock:
            self._tg_calls.append(BotApiCall(method=method, params=params, received_at=utcnow()))

    def telegram_calls(self, method: str | None = None) -> list[BotApiCall]:
        with self.lock:
            return [c.model_copy() for c in self._tg_calls if method is None or c.method == method]

    def push_update(self, update: dict[str, Any]) -> dict[str, Any]:
        """Queue a Bot API ``Update`` (its ``update_id`` is assigned here) for ``getUpdates``."""
        with self.lock:
            queued = {"update_id": self._tg_next_update, **update}
            self._tg_next_update += 1
            self._tg_updates.append(queued)
            return dict(queued)

    def updates_from(self, offset: int | None, limit: int = 100) -> list[dict[str, Any]]:
        """``getUpdates`` semantics: an ``offset`` confirms (drops) every earlier update."""
        with self.lock:
            if offset is not None:
                self._tg_updates = [u for u in self._tg_updates if u["update_id"] >= offset]
            return [dict(u) for u in self._tg_updates[:limit]]

    # Email

    def record_email(self, record: EmailRecord) -> None:
        with self.lock:
            self._emails.append(record)

    def emails(self, to: str | None = None) -> list[EmailRecord]:
        with self.lock:
            wanted = to.lower() if to else None
            return [
                e.model_copy()
                for e in self._emails
                if wanted is None or wanted in (a.lower() for a in e.to)
            ]

    def set_email_fault(self, fault: Fault | None) -> None:
        with self.lock:
            self._email_fault = fault

    def take_email_fault(self) -> Fault | None:
        with self.lock:
            fault, self._email_fault = self._take(self._email_fault)
            return fault

    # Webhooks

    def _webhook_counter(self, name: str) -> dict[str, int]:
        return self._webhook_counters.setdefault(
            name, {"received": 0, "duplicates": 0, "rejected": 0}
        )

    def record_webhook(self, delivery: WebhookDelivery) -> bool:
        """Store a verified delivery; False (and counted as duplicate) when its id was seen."""
        with self.lock:
            counter = self._webhook_counter(delivery.name)
            stored = self._webhooks.setdefault(delivery.name, [])
            if any(d.webhook_id == delivery.webhook_id for d in stored):
                counter["duplicates"] += 1
                return False
            stored.append(delivery)
            counter["received"] += 1
            return True

    def count_webhook_rejected(self, name: str) -> None:
        with self.lock:
            self._webhook_counter(name)["rejected"] += 1

    def webhook_deliveries(self, name: str) -> list[WebhookDelivery]:
        with self.lock:
            return [d.model_copy(deep=True) for d in self._webhooks.get(name, [])]

    def webhook_counters(self, name: str) -> dict[str, int]:
        """``received`` (stored), ``duplicates`` (repeated webhook-id), ``rejected`` (401)."""
        with self.lock:
            return dict(self._webhook_counter(name))

    def set_webhook_fault(self, name: str, fault: Fault | None) -> None:
        with self.lock:
            if fault is None:
                self._webhook_faults.pop(name, None)
            else:
                self._webhook_faults[name] = fault

    def take_webhook_fault(self, name: str) -> Fault | None:
        with self.lock:
            fault, left = self._take(self._webhook_faults.get(name))
            if left is None:
                self._webhook_faults.pop(name, None)
            else:
                self._webhook_faults[name] = left
            return fault

    # OpenAI

    def record_openai(self, path: str, body: dict[str, Any]) -> None:
        with self.lock:
            self._openai.append(OpenAIRequest(path=path, body=body, received_at=utcnow()))

    def openai_requests(self, path: str | None = None) -> list[OpenAIRequest]:
        with self.lock:
            return [r.model_copy() for r in self._openai if path is None or r.path == path]

    # All kinds

    def inbox(self, kind: ChannelKind | None = None, target: str | None = None) -> list[InboxItem]:
        """Every received message as an :class:`InboxItem`, oldest first. ``target`` filters: a
        chat id, an email address (any case) or a webhook name or URL (``.../webhooks/<name>``)."""
        items: list[InboxItem] = []
        if kind in (None, ChannelKind.TELEGRAM):
            items += [
                InboxItem(
                    kind=ChannelKind.TELEGRAM,
                    target=m.chat_id,
                    message_id=str(m.message_id),
                    text=m.text,
                    received_at=m.received_at,
                )
                for m in self.telegram_messages(target)
            ]
        if kind in (None, ChannelKind.EMAIL):
            items += [
                InboxItem(
                    kind=ChannelKind.EMAIL,
                    target=", ".join(e.to),
                    message_id=e.message_id,
                    text=e.body,
                    subject=e.subject,
                    received_at=e.received_at,
                )
                for e in self.emails(target)
            ]
        if kind in (None, ChannelKind.WEBHOOK):
            with self.lock:
                names = list(self._webhooks)
            wanted = webhook_name(target) if target else None
            for name in names:
                if wanted is not None and name != wanted:
                    continue
                for d in self.webhook_deliveries(name):
                    data = d.payload.get("data")
                    data = data if isinstance(data, dict) else {}
                    items.append(
                        InboxItem(
                            kind=ChannelKind.WEBHOOK,
                            target=name,
                            message_id=d.webhook_id,
                            text=str(data.get("text", "")),
                            subject=str(data.get("subject", "")),
                            received_at=d.received_at,
                        )
                    )
        return sorted(items, key=lambda item: item.received_at)


def webhook_name(target: str) -> str:
    """The receiver name in ``http://host/webhooks/<name>`` (or ``target`` itself)."""
    if "/webhooks/" not in target:
        return target
    tail = target.split("/webhooks/", 1)[1]
    return tail.split("?", 1)[0].split("#", 1)[0].strip("/")
