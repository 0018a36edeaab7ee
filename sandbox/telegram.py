"""A Bot API server for the methods agentfleet uses, enforcing Telegram's flood limits.

``/telegram/bot<token>/<method>`` answers as Telegram does: ``{"ok": true, "result": ...}`` or
``{"ok": false, "error_code": N, "description": ...}`` with the same HTTP status, 401 for an
unknown token, 400 ``chat not found`` for a chat that is neither an integer nor an ``@username``,
and 429 ``retry after N`` (with ``parameters.retry_after``) past the limits of
:class:`~sandbox.buckets.TelegramLimits`. Only ``sendMessage`` counts against them.
Bodies may be JSON, form-encoded (as python-telegram-bot sends them) or query parameters.

``/sandbox/telegram/...`` lets tests read what arrived and inject updates and faults.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
import zlib
from collections.abc import Awaitable, Callable, Collection
from typing import Any, Literal
from urllib.parse import parse_qsl

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field, model_validator
from starlette.datastructures import UploadFile

from agentfleet.channels.endpoints import SANDBOX_TELEGRAM_TOKEN
from sandbox.buckets import retry_after_seconds
from sandbox.faults import DroppedResponse, hold
from sandbox.store import BotApiCall, Fault, SandboxStore, TelegramMessage

MAX_TEXT = 4096
MAX_DOCUMENT_BYTES = 50 * 1024 * 1024
UPDATE_POLL_S = 0.005
"""How often a waiting ``getUpdates`` looks for a new update (a pushed message is picked up
within this, as Telegram hands it over at once)."""
UPDATE_CHECKS_PER_DISCONNECT_CHECK = 10
LONG_POLL_CAP_S = 2.0
"""``getUpdates`` waits at most this long for an update, whatever its ``timeout``."""
_CHAT = re.compile(r"^(-?\d{1,20}|@[A-Za-z][A-Za-z0-9_]{3,31})$")

Params = dict[str, Any]


class Upload(BaseModel):
    """A file part of a multipart Bot API call."""

    filename: str
    content: bytes


Method = Callable[[SandboxStore, str, Params, Request], Awaitable[Response]]


def ok(result: Any) -> JSONResponse:
    return JSONResponse({"ok": True, "result": result})


def error(code: int, description: str, parameters: dict[str, Any] | None = None) -> JSONResponse:
    body: dict[str, Any] = {"ok": False, "error_code": code, "description": description}
    if parameters:
        body["parameters"] = parameters
    return JSONResponse(body, status_code=code)


def chat_not_found() -> JSONResponse:
    return error(400, "Bad Request: chat not found")


def valid_chat(chat_id: str) -> bool:
    return bool(_CHAT.match(chat_id))


def chat_json(chat_id: str) -> dict[str, Any]:
    """A Bot API ``Chat``; an ``@username`` gets a stable made-up numeric id."""
    if chat_id.startswith("@"):
        name = chat_id[1:]
        number = -1_000_000_000_000 - zlib.crc32(name.encode()) % 1_000_000_000
        return {"id": number, "type": "channel", "title": name, "username": name}
    number = int(chat_id)
    if number < 0:
        kind = "supergroup" if chat_id.startswith("-100") else "group"
        return {"id": number, "type": kind, "title": f"Sandbox group {number}"}
    return {"id": number, "type": "private", "first_name": "Sandbox", "username": f"user{number}"}


def bot_json(token: str) -> dict[str, Any]:
    prefix = token.split(":", 1)[0]
    bot_id = int(prefix) if prefix.isdigit() and int(prefix) > 0 else 1
    return {
        "id": bot_id,
        "is_bot": True,
        "first_name": "Sandbox Bot",
        "username": "sandbox_bot",
        "can_join_groups": True,
        "can_read_all_group_messages": False,
        "supports_inline_queries": False,
    }


def message_json(record: TelegramMessage, token: str) -> dict[str, Any]:
    body: dict[str, Any] = {
        "message_id": record.message_id,
        "from": bot_json(token),
        "chat": chat_json(record.chat_id),
        "date": record.date,
        "text": record.text,
    }
    if record.edits:
        body["edit_date"] = int(time.time())
    if record.reply_markup:
        body["reply_markup"] = record.reply_markup
    if record.document is not None:
        body.pop("text")
        body["caption"] = record.text
        body["document"] = {
            "file_id": f"doc-{record.chat_id}-{record.message_id}",
            "file_unique_id": f"doc{record.message_id}",
            "file_name": record.document["file_name"],
            "file_size": record.document["file_size"],
        }
    return body


def _json_field(value: Any) -> Any:
    """python-telegram-bot sends objects (``reply_markup``) as JSON text inside a form."""
    if isinstance(value, str) and value[:1] in "{[":
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


async def read_params(request: Request) -> Params | None:
    """Query parameters merged with a JSON or form body; None for a body we cannot read."""
    params: Params = dict(request.query_params)
    body = await request.body()
    if not body:
        return params
    kind = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if kind == "application/json":
        try:
            data = json.loads(body)
        except ValueError:
            return None
        if not isinstance(data, dict):
            return None
        params.update(data)
    elif kind == "application/x-www-form-urlencoded":
        params.update(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))
    elif kind == "multipart/form-data":
        form = await request.form()
        for key, value in form.multi_items():
            if isinstance(value, UploadFile):
                params[key] = Upload(filename=value.filename or key, content=await value.read())
            else:
                params[key] = value
    else:
        return None
    return params


def _int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


async def send_message(store: SandboxStore, token: str, p: Params, request: Request) -> Response:
    """Validate, rate-limit, apply a queued fault, record, answer."""
    chat_id = str(p.get("chat_id", "")).strip()
    text = str(p.get("text") or "")
    if not valid_chat(chat_id):
        return chat_not_found()
    if not text.strip():
        return error(400, "Bad Request: message text is empty")
    if len(text) > MAX_TEXT:
        return error(400, "Bad Request: message is too long")
    wait = store.telegram_admit(token, chat_id)
    if wait > 0:
        after = retry_after_seconds(wait)
        return error(429, f"Too Many Requests: retry after {after}", {"retry_after": after})
    fault = store.take_telegram_fault()
    if fault is not None and fault.mode == "refuse":
        return error(500, "Internal Server Error")
    markup = _json_field(p.get("reply_markup"))
    record = store.record_telegram_message(
        chat_id,
        text,
        parse_mode=p.get("parse_mode") or None,
        reply_markup=markup if isinstance(markup, dict) else None,
    )
    if fault is not None and fault.mode == "drop":
        return DroppedResponse()
    if fault is not None and fault.mode == "hang":
        await hold(store, fault.hang_s, request)
    return ok(message_json(record, token))


async def send_document(store: SandboxStore, token: str, p: Params, request: Request) -> Response:
    """A file upload (multipart, as python-telegram-bot sends it), kept as a message whose
    ``document`` holds the file's name and text; counts against the flood limits."""
    chat_id = str(p.get("chat_id", "")).strip()
    upload = p.get("document")
    if isinstance(upload, str) and upload.startswith("attach://"):
        upload = p.get(upload.removeprefix("attach://"))
    if not valid_chat(chat_id):
        return chat_not_found()
    if not isinstance(upload, Upload):
        return error(400, "Bad Request: there is no document in the request")
    if len(upload.content) > MAX_DOCUMENT_BYTES:
        return error(413, "Request Entity Too Large")
    wait = store.telegram_admit(token, chat_id)
    if wait > 0:
        after = retry_after_seconds(wait)
        return error(429, f"Too Many Requests: retry after {after}", {"retry_after": after})
    record = store.record_telegram_message(
        chat_id,
        str(p.get("caption") or ""),
        document={
            "file_name": upload.filename,
            "file_size": len(upload.content),
            "text": upload.content.decode("utf-8", "replace"),
        },
    )
    return ok(message_json(record, token))


async def get_updates(store: SandboxStore, token: str, p: Params, request: Request) -> Response:
    offset = _int(p.get("offset"))
    limit = max(1, min(100, _int(p.get("limit")) or 100))
    try:
        timeout = min(LONG_POLL_CAP_S, max(0.0, float(p.get("timeout") or 0)))
    except (TypeError, ValueError):
        timeout = 0.0
    deadline = time.monotonic() + timeout
    rounds = 0
    while True:
        updates = store.updates_from(offset, limit)
        if updates or time.monotonic() >= deadline or store.closing.is_set():
            return ok(updates)
        rounds += 1
        if rounds % UPDATE_CHECKS_PER_DISCONNECT_CHECK == 0 and await request.is_disconnected():
            return ok([])
        await asyncio.sleep(min(UPDATE_POLL_S, max(0.0, deadline - time.monotonic())))


async def edit_message_text(
    store: SandboxStore, token: str, p: Params, request: Request
) -> Response:
    store.record_telegram_call("editMessageText", p)
    chat_id = str(p.get("chat_id", "")).strip()
    message_id = _int(p.get("message_id"))
    if not valid_chat(chat_id):
        return chat_not_found()
    if message_id is None:
        return error(400, "Bad Request: message identifier is not specified")
    record = store.edit_telegram_message(chat_id, message_id, str(p.get("text") or ""))
    if record is None:
        return error(400, "Bad Request: message to edit not found")
    return ok(message_json(record, token))


async def get_chat(store: SandboxStore, token: str, p: Params, request: Request) -> Response:
    chat_id = str(p.get("chat_id", "")).strip()
    return ok(chat_json(chat_id)) if valid_chat(chat_id) else chat_not_found()


async def get_me(store: SandboxStore, token: str, p: Params, request: Request) -> Response:
    return ok(bot_json(token))


async def get_my_commands(store: SandboxStore, token: str, p: Params, request: Request) -> Response:
    calls = store.telegram_calls("setMyCommands")
    return ok(_json_field(calls[-1].params.get("commands", [])) if calls else [])


def recorded_true(method: str) -> Method:
    """A method that only records its call and answers ``true``."""

    async def answer(store: SandboxStore, token: str, p: Params, request: Request) -> Response:
        store.record_telegram_call(method, {k: _json_field(v) for k, v in p.items()})
        return ok(True)

    return answer


METHODS: dict[str, Method] = {
    "sendmessage": send_message,
    "senddocument": send_document,
    "getupdates": get_updates,
    "editmessagetext": edit_message_text,
    "getchat": get_chat,
    "getme": get_me,
    "getmycommands": get_my_commands,
    "answercallbackquery": recorded_true("answerCallbackQuery"),
    "setmycommands": recorded_true("setMyCommands"),
    "deletewebhook": recorded_true("deleteWebhook"),
    "sendchataction": recorded_true("sendChatAction"),
}
"""Bot API method names are case-insensitive."""


class TelegramFault(BaseModel):
    """``hang``: record, then hold the answer (the client times out: an ambiguous send).
    ``drop``: record, then cut the connection mid-answer. ``refuse``: answer 500, record nothing.
    Applied to the next ``count`` ``sendMessage`` calls that pass validation and rate limits."""

    mode: Literal["hang", "drop", "refuse"]
    count: int = Field(default=1, ge=1, le=10_000)
    hang_s: float = Field(default=30.0, gt=0, le=600)


class PushUpdate(BaseModel):
    """A user's message (``text``) or button press (``callback_data`` on the bot's message
    ``message_id``) in chat ``chat_id``, queued for ``getUpdates``."""

    chat_id: int
    text: str | None = None
    callback_data: str | None = None
    message_id: int | None = None
    from_id: int | None = None
    username: str = "sandbox_user"

    @model_validator(mode="after")
    def _one_kind(self) -> PushUpdate:
        if (self.text is None) == (self.callback_data is None):
            raise ValueError("give exactly one of text and callback_data")
        return self


def build_update(store: SandboxStore, push: PushUpdate) -> dict[str, Any]:
    """The Bot API ``Update`` body for ``push`` (``update_id`` is added when queued)."""
    chat_key = str(push.chat_id)
    user_id = push.from_id or (push.chat_id if push.chat_id > 0 else 1)
    user = {"id": user_id, "is_bot": False, "first_name": "Sandbox", "username": push.username}
    now = int(time.time())
    if push.text is not None:
        message: dict[str, Any] = {
            "message_id": store.next_message_id(chat_key),
            "from": user,
            "chat": chat_json(chat_key),
            "date": now,
            "text": push.text,
        }
        if push.text.startswith("/"):
            command = push.text.split(maxsplit=1)[0]
            message["entities"] = [{"type": "bot_command", "offset": 0, "length": len(command)}]
        return {"message": message}
    found = store.find_telegram_message(chat_key, push.message_id or 0)
    target = (
        message_json(found, SANDBOX_TELEGRAM_TOKEN)
        if found
        else {"message_id": push.message_id or 0, "chat": chat_json(chat_key), "date": 0}
    )
    query = {
        "id": f"cbq-{time.monotonic_ns()}",
        "from": user,
        "chat_instance": chat_key,
        "data": push.callback_data,
        "message": target,
    }
    return {"callback_query": query}


def telegram_router(store: SandboxStore, tokens: Collection[str]) -> APIRouter:
    """The Bot API under ``/telegram`` and its test controls under ``/sandbox/telegram``."""
    router = APIRouter()
    accepted = frozenset(tokens)

    @router.api_route("/telegram/bot{token}/{method}", methods=["GET", "POST"])
    async def bot_api(token: str, method: str, request: Request) -> Response:
        if token not in accepted:
            return error(401, "Unauthorized")
        handler = METHODS.get(method.lower())
        if handler is None:
            return error(404, "Not Found")
        params = await read_params(request)
        if params is None:
            return error(400, "Bad Request: the sandbox reads JSON, form and query parameters")
        return await handler(store, token, params, request)

    @router.get("/sandbox/telegram/messages")
    async def messages(chat_id: str | None = None) -> list[TelegramMessage]:
        return store.telegram_messages(chat_id)

    @router.get("/sandbox/telegram/counters")
    async def counters() -> dict[str, int]:
        return store.telegram_counters()

    @router.get("/sandbox/telegram/calls")
    async def calls(method: str | None = None) -> list[BotApiCall]:
        return store.telegram_calls(method)

    @router.post("/sandbox/telegram/updates")
    async def push_update(push: PushUpdate) -> dict[str, Any]:
        return store.push_update(build_update(store, push))

    @router.post("/sandbox/telegram/fault")
    async def set_fault(fault: TelegramFault) -> dict[str, bool]:
        store.set_telegram_fault(Fault(**fault.model_dump()))
        return {"ok": True}

    @router.post("/sandbox/telegram/reset")
    async def reset() -> dict[str, bool]:
        store.reset_telegram()
        return {"ok": True}

    return router
