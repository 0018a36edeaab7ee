"""The A2A JSON-RPC surface every bot endpoint speaks, in both dialects on one URL: A2A 1.0
(``SendMessage``, ``GetTask``; header ``A2A-Version: 1.0``) and A2A 0.3 (``message/send``,
``tasks/get``; no header, or ``A2A-Version: 0.3``). Where an agent card lives and which
interfaces it lists, how a message is read (a data part ``{"skill", "args"}``, or text), and how
a :data:`Reply` is written in the dialect that was asked.

Used by the HTTP app's built-in bots, the reference remote bot, and the remote-bot adapter.
"""

from __future__ import annotations

import json
import logging
import re
import uuid
from collections.abc import Awaitable, Callable, Collection, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Protocol

from fastapi import Request
from fastapi.responses import JSONResponse

from agentfleet.errors import first_line

log = logging.getLogger("agentfleet.a2a")

CARD_PATH = ".well-known/agent-card.json"
VERSION_HEADER = "A2A-Version"
EXTENSIONS_HEADER = "A2A-Extensions"
LEGACY_EXTENSIONS_HEADER = "X-A2A-Extensions"
"""A2A 0.3's name for ``A2A-Extensions``: read too, and answered under the name it came in."""
V1, V03 = "1.0", "0.3"
SPOKEN = (V1, V03)
"""The A2A versions (``Major.Minor``) every endpoint here answers, newest first."""
LEGACY_CARD_VERSION = "0.3.0"
"""The top-level ``protocolVersion`` a card keeps for A2A 0.3 clients."""

INVALID_REQUEST, METHOD_NOT_FOUND, INVALID_PARAMS, PARSE_ERROR = -32600, -32601, -32602, -32700
INTERNAL_ERROR = -32603
SKILL_FAILED = -32000
"""JSON-RPC server error: the skill could not answer (the message says why)."""
TASK_NOT_FOUND = -32001
PUSH_NOT_SUPPORTED = -32003
UNSUPPORTED_OPERATION = -32004
"""A2A's UnsupportedOperationError."""
EXTENDED_CARD_NOT_CONFIGURED = -32007
VERSION_NOT_SUPPORTED = -32009
"""A2A's VersionNotSupportedError: the request's ``A2A-Version`` is not one of :data:`SPOKEN`."""
PAYMENT_REQUIRED = -32402
"""The skill is sold: the message says where to buy it with x402 (HTTP 402's number)."""
TOO_MANY_RUNS = -32429
"""The caller started more agent runs than ``FLEET_A2A_RUNS_PER_CALLER`` allows (HTTP 429's
number, as PAYMENT_REQUIRED has 402's): the message says when to try again."""

TEXT_MAX = 4000
"""Longest text a message may carry (characters)."""

Answer = Callable[[str, dict[str, Any]], Awaitable[dict[str, Any]]]
"""``answer(skill, args) -> data``; raises :class:`RpcError` for what it refuses."""


class RpcError(Exception):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class Operation(StrEnum):
    SEND = "send"
    GET_TASK = "get_task"


METHODS: dict[str, tuple[str, Operation]] = {
    "SendMessage": (V1, Operation.SEND),
    "GetTask": (V1, Operation.GET_TASK),
    "message/send": (V03, Operation.SEND),
    "tasks/get": (V03, Operation.GET_TASK),
}
"""The methods answered, with the A2A version each belongs to."""
_NO_STREAMING = "streaming is not offered (capabilities.streaming is false): send the message"
NOT_OFFERED: dict[str, tuple[int, str]] = {
    "SendStreamingMessage": (UNSUPPORTED_OPERATION, f"{_NO_STREAMING} with SendMessage"),
    "message/stream": (UNSUPPORTED_OPERATION, f"{_NO_STREAMING} with message/send"),
    "SubscribeToTask": (UNSUPPORTED_OPERATION, "streaming is not offered: poll with GetTask"),
    "tasks/resubscribe": (UNSUPPORTED_OPERATION, "streaming is not offered: poll with tasks/get"),
    "CancelTask": (UNSUPPORTED_OPERATION, "tasks cannot be canceled over A2A"),
    "tasks/cancel": (UNSUPPORTED_OPERATION, "tasks cannot be canceled over A2A"),
    "ListTasks": (UNSUPPORTED_OPERATION, "tasks are not listed over A2A: GetTask by id"),
    **{
        method: (PUSH_NOT_SUPPORTED, "push notifications are not offered: poll the task")
        for method in (
            "CreateTaskPushNotificationConfig",
            "GetTaskPushNotificationConfig",
            "ListTaskPushNotificationConfigs",
            "DeleteTaskPushNotificationConfig",
            "tasks/pushNotificationConfig/set",
            "tasks/pushNotificationConfig/get",
            "tasks/pushNotificationConfig/list",
            "tasks/pushNotificationConfig/delete",
        )
    },
    "GetExtendedAgentCard": (EXTENDED_CARD_NOT_CONFIGURED, "there is no extended agent card"),
    "agent/getAuthenticatedExtendedCard": (
        EXTENDED_CARD_NOT_CONFIGURED,
        "there is no extended agent card",
    ),
}
"""A2A methods this endpoint knows but does not offer, with the A2A error each one gets."""


def card_url(url: str) -> str:
    """An agent's card: ``url`` itself if it names the card, else the card under that base."""
    return url if url.endswith("agent-card.json") else f"{url.rstrip('/')}/{CARD_PATH}"


def card_interfaces(url: str, *, legacy_only: bool = False) -> dict[str, Any]:
    """The fields of a card that say where it takes JSON-RPC: ``supportedInterfaces`` for A2A 1.0
    (1.0 first, then 0.3, both at ``url``), and the top-level ``url``, ``preferredTransport``
    and ``protocolVersion`` A2A 0.3 clients read. ``legacy_only``: the 0.3 fields alone (a card
    as A2A 0.3 wrote it)."""
    legacy = {"url": url, "preferredTransport": "JSONRPC", "protocolVersion": LEGACY_CARD_VERSION}
    if legacy_only:
        return legacy
    interfaces = [
        {"url": url, "protocolBinding": "JSONRPC", "protocolVersion": version} for version in SPOKEN
    ]
    return {"supportedInterfaces": interfaces, **legacy}


def major_minor(version: str) -> str | None:
    """``"1.0.1"`` -> ``"1.0"``; None for anything that is not a version."""
    found = re.fullmatch(r"\s*(\d{1,4})\.(\d{1,4})(?:\.\d{1,6})?\s*", version)
    return f"{int(found[1])}.{int(found[2])}" if found else None


def rpc_interface(card: dict[str, Any]) -> tuple[str, str] | None:
    """Where a card takes JSON-RPC and in which A2A version (``"1.0"`` or ``"0.3"``): an A2A 1.0
    JSONRPC entry of ``supportedInterfaces`` first (an entry without a version counts as 1.0,
    the version that made it required), else the 0.3 ``url`` or a 0.3 entry. May be relative
    to the card."""
    entries = [
        entry
        for entry in card.get("supportedInterfaces") or []
        if isinstance(entry, dict)
        and entry.get("protocolBinding") == "JSONRPC"
        and isinstance(entry.get("url"), str)
    ]
    for entry in entries:
        version = major_minor(str(entry.get("protocolVersion") or V1))
        if version is not None and version.split(".")[0] == "1":
            return str(entry["url"]), V1
    if isinstance(card.get("url"), str):
        return str(card["url"]), V03
    for entry in entries:
        if major_minor(str(entry.get("protocolVersion"))) == V03:
            return str(entry["url"]), V03
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


@dataclass(frozen=True)
class Incoming:
    """A message sent to a bot, read from either dialect."""

    message_id: str | None
    context_id: str | None
    text: str
    """Its text parts, joined by newlines ("" when it has none)."""
    call: tuple[str, dict[str, Any]] | None
    """Its data part ``{"skill", "args"}``, if it has a data part."""
    wait: bool = True
    """False when the client asked for an answer at once (1.0 ``returnImmediately``, 0.3
    ``blocking: false``): a long job answers its task without waiting for it."""
    caller: str = "a2a"
    """Who sent it, as far as the request tells: ``a2a:<client address>``."""


@dataclass(frozen=True)
class Text:
    text: str


@dataclass(frozen=True)
class Data:
    data: dict[str, Any]


Part = Text | Data


@dataclass(frozen=True)
class MessageReply:
    """An answer given at once: an agent message."""

    parts: list[Part]
    metadata: dict[str, Any] = field(default_factory=dict)


class TaskState(StrEnum):
    """A task's state as A2A 0.3 writes it (1.0: ``TASK_STATE_`` + upper case)."""

    WORKING = "working"
    INPUT_REQUIRED = "input-required"
    COMPLETED = "completed"
    FAILED = "failed"
    REJECTED = "rejected"


@dataclass(frozen=True)
class TaskReply:
    """A job that goes on after the answer: poll it with ``GetTask`` / ``tasks/get``."""

    id: str
    state: TaskState
    note: str | None = None
    """The status message's text (why it waits, why it failed)."""
    answer: str | None = None
    """The result's text, as the task's one artifact."""
    context_id: str | None = None


Reply = MessageReply | TaskReply


class Handler(Protocol):
    """The bot behind an endpoint."""

    async def send(self, message: Incoming) -> Reply:
        """The answer to ``message``; RpcError for what it refuses."""
        ...

    async def task(self, task_id: str) -> TaskReply:
        """The task ``task_id`` now; RpcError(TASK_NOT_FOUND) for one it does not know."""
        ...


async def serve(
    request: Request, handler: Handler, *, extensions: Collection[str] = ()
) -> JSONResponse:
    """Answer one JSON-RPC request in the A2A version it asks for (``A2A-Version``; none means
    0.3). Every answer is HTTP 200 with a JSON-RPC ``result`` or ``error`` (the body is read
    first: a body over the app's cap stays a 413) and says its version in ``A2A-Version``; the
    requested ``extensions`` this bot declares are activated and echoed in ``A2A-Extensions``."""
    raw = await request.body()
    asked = request.headers.get(VERSION_HEADER, "").strip()
    version = major_minor(asked) if asked else V03
    if version not in SPOKEN:
        version = None
    headers = {VERSION_HEADER: version or V1}
    for name in (EXTENSIONS_HEADER, LEGACY_EXTENSIONS_HEADER):
        requested = [u.strip() for u in request.headers.get(name, "").split(",") if u.strip()]
        activated = [uri for uri in dict.fromkeys(requested) if uri in extensions]
        if activated:
            headers[name] = ", ".join(activated)
    request_id: Any = None
    try:
        try:
            body = json.loads(raw)
        except (ValueError, RecursionError):
            raise RpcError(PARSE_ERROR, "parse error: the body is not JSON") from None
        if isinstance(body, dict):
            found = body.get("id")
            valid = isinstance(found, str | int) and not isinstance(found, bool)
            request_id = found if valid else None
        method, params = _envelope(body)
        if version is None:
            raise RpcError(
                VERSION_NOT_SUPPORTED,
                f"A2A version {asked[:40]!r} is not supported: this agent speaks A2A "
                f"{' and '.join(SPOKEN)} (send {VERSION_HEADER}: {V1})",
            )
        operation = _operation(method, version)
        caller = f"a2a:{request.client.host}" if request.client else "a2a"
        if operation is Operation.SEND:
            message = read_message(params, caller)
            result = write_reply(await handler.send(message), version, message.context_id)
        else:
            result = write_task(await handler.task(_task_id(params)), version)
    except RpcError as exc:
        error = {"code": exc.code, "message": exc.message}
        return JSONResponse({"jsonrpc": "2.0", "id": request_id, "error": error}, headers=headers)
    except Exception as exc:
        log.error("A2A %s failed", request.url.path, exc_info=exc)
        error = {"code": INTERNAL_ERROR, "message": f"internal error: {first_line(exc, 200)}"}
        return JSONResponse({"jsonrpc": "2.0", "id": request_id, "error": error}, headers=headers)
    return JSONResponse({"jsonrpc": "2.0", "id": request_id, "result": result}, headers=headers)


def _envelope(body: Any) -> tuple[str, dict[str, Any]]:
    """(method, params) of a JSON-RPC 2.0 request object; RpcError for anything else."""
    if isinstance(body, list):
        raise RpcError(INVALID_REQUEST, "invalid request: batches are not supported")
    if not isinstance(body, dict) or body.get("jsonrpc") != "2.0":
        raise RpcError(INVALID_REQUEST, "invalid request: not JSON-RPC 2.0")
    if "id" in body and (
        isinstance(body["id"], bool) or not isinstance(body["id"], str | int | None)
    ):
        raise RpcError(INVALID_REQUEST, "invalid request: id must be a string, a number or null")
    method = body.get("method")
    if not isinstance(method, str):
        raise RpcError(METHOD_NOT_FOUND, f"method not found: {repr(method)[:80]}")
    params = body.get("params", {})
    if not isinstance(params, dict):
        raise RpcError(INVALID_PARAMS, "params must be an object")
    return method, params


def _operation(method: str, version: str) -> Operation:
    if method in NOT_OFFERED:
        code, why = NOT_OFFERED[method]
        raise RpcError(code, f"{method}: {why}")
    if method not in METHODS:
        offered = ", ".join(m for m, (v, _) in METHODS.items() if v == version)
        raise RpcError(
            METHOD_NOT_FOUND, f"method not found: {method[:80]!r} (A2A {version}: {offered})"
        )
    belongs, operation = METHODS[method]
    if belongs != version:
        said = f"{VERSION_HEADER} {version}" if version != V03 else f"no {VERSION_HEADER} (0.3)"
        raise RpcError(
            VERSION_NOT_SUPPORTED,
            f"{method} is an A2A {belongs} method but the request says {said}: "
            f"send {VERSION_HEADER}: {belongs}",
        )
    return operation


def read_message(params: dict[str, Any], caller: str = "a2a") -> Incoming:
    """The message of a send request, parts read by member (1.0) or by ``kind`` (0.3)."""
    message = params.get("message")
    if not isinstance(message, dict):
        raise RpcError(INVALID_PARAMS, "params.message must be a message object")
    parts = message.get("parts")
    if not isinstance(parts, list) or not parts:
        raise RpcError(INVALID_PARAMS, "the message needs parts: a text part or a data part")
    texts, data = [], None
    for part in parts:
        if not isinstance(part, dict):
            raise RpcError(INVALID_PARAMS, "each part must be an object")
        kind = part.get("kind")
        if kind in (None, "text") and isinstance(part.get("text"), str):
            texts.append(part["text"])
        elif kind in (None, "data") and "data" in part and data is None:
            data = part["data"]
    text = "\n".join(texts)
    if len(text) > TEXT_MAX:
        raise RpcError(INVALID_PARAMS, f"the text is {len(text)} characters; at most {TEXT_MAX}")
    call = None
    if data is not None:
        if not isinstance(data, dict) or not isinstance(data.get("skill"), str):
            raise RpcError(INVALID_PARAMS, "the message needs a data part {skill, args}")
        args = data.get("args") or {}
        if not isinstance(args, dict):
            raise RpcError(INVALID_PARAMS, "args must be an object")
        call = (str(data["skill"]), args)
    elif not texts:
        raise RpcError(INVALID_PARAMS, "the message needs a text part or a data part {skill, args}")
    configuration = params.get("configuration")
    config = configuration if isinstance(configuration, dict) else {}
    wait = config.get("returnImmediately") is not True and config.get("blocking") is not False
    message_id, context_id = message.get("messageId"), message.get("contextId")
    return Incoming(
        message_id=message_id if isinstance(message_id, str) and message_id else None,
        context_id=context_id if isinstance(context_id, str) and context_id else None,
        text=text,
        call=call,
        wait=wait,
        caller=caller,
    )


def _task_id(params: dict[str, Any]) -> str:
    task_id = params.get("id")
    if not isinstance(task_id, str) or not task_id:
        raise RpcError(INVALID_PARAMS, "params.id must name the task")
    return task_id


def _part(part: Part, version: str) -> dict[str, Any]:
    if isinstance(part, Text):
        if version == V03:
            return {"kind": "text", "text": part.text}
        return {"text": part.text, "mediaType": "text/plain"}
    if version == V03:
        return {"kind": "data", "data": part.data}
    return {"data": part.data, "mediaType": "application/json"}


def _message(
    parts: Sequence[Part],
    version: str,
    *,
    context_id: str | None = None,
    task_id: str | None = None,
    metadata: dict[str, Any] | None = None,
) -> dict[str, Any]:
    message: dict[str, Any] = {"messageId": uuid.uuid4().hex}
    if version == V03:
        message = {"kind": "message", **message, "role": "agent"}
    else:
        message["role"] = "ROLE_AGENT"
    message["parts"] = [_part(part, version) for part in parts]
    if context_id:
        message["contextId"] = context_id
    if task_id:
        message["taskId"] = task_id
    if metadata:
        message["metadata"] = metadata
    return message


def _task(task: TaskReply, version: str) -> dict[str, Any]:
    context_id = task.context_id or task.id
    state = task.state.value if version == V03 else f"TASK_STATE_{task.state.name}"
    stamp = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    status: dict[str, Any] = {"state": state, "timestamp": stamp}
    if task.note:
        status["message"] = _message(
            [Text(task.note)], version, context_id=context_id, task_id=task.id
        )
    written: dict[str, Any] = {"id": task.id, "contextId": context_id, "status": status}
    if version == V03:
        written = {"kind": "task", **written}
    if task.answer is not None:
        parts = [_part(Text(task.answer), version)]
        written["artifacts"] = [{"artifactId": "answer", "name": "answer", "parts": parts}]
    return written


def write_reply(reply: Reply, version: str, context_id: str | None = None) -> dict[str, Any]:
    """The ``result`` of a send request: 0.3 the message or task itself (``kind`` says which),
    1.0 ``{"message": ...}`` or ``{"task": ...}``."""
    if isinstance(reply, TaskReply):
        task = _task(reply if reply.context_id else replace(reply, context_id=context_id), version)
        return task if version == V03 else {"task": task}
    # A2A 1.0: an agent's message always names its context (a new one unless the client's).
    context_id = context_id or uuid.uuid4().hex
    message = _message(reply.parts, version, context_id=context_id, metadata=reply.metadata)
    return message if version == V03 else {"message": message}


def write_task(task: TaskReply, version: str) -> dict[str, Any]:
    """The ``result`` of a get-task request: the task (0.3 with ``kind``)."""
    return _task(task, version)
