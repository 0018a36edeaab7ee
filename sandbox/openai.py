"""An OpenAI-compatible endpoint with deterministic answers, for drafting, judging and moderation.

Mounted at ``/openai/v1`` so the official client works with ``base_url=<sandbox>/openai/v1`` and
any API key. Answers depend only on the request, so tests can assert on them:

- chat completions: when a system (or developer) message asks for a JSON score (it mentions both
  "json" and "score"), the answer is ``{"score": N, "why": "..."}``: 80, 50 for a text under five
  words, 20 when the text holds a flagged term. Otherwise a one-paragraph draft built from the
  last user message (its words, capitalised, ended with a full stop, cut to ``max_tokens`` words).
- moderations: an input is flagged when it holds a term of :data:`FLAGGED_TERMS` (whole words,
  any case); the result has the real API's categories, scores and applied input types.

- chat completions offering ``tools``: deterministic tool calls, then a final answer
  (:mod:`sandbox.tool_calls`).

Every request body is recorded; ``GET /sandbox/openai/requests`` lists them.
"""

from __future__ import annotations

import json
import re
import time
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from sandbox.store import OpenAIRequest, SandboxStore
from sandbox.tool_calls import tool_completion

MODELS = ("gpt-4o-mini", "gpt-4o", "omni-moderation-latest", "text-moderation-latest")
CATEGORIES = (
    "harassment",
    "harassment/threatening",
    "hate",
    "hate/threatening",
    "illicit",
    "illicit/violent",
    "self-harm",
    "self-harm/instructions",
    "self-harm/intent",
    "sexual",
    "sexual/minors",
    "violence",
    "violence/graphic",
)
FLAGGED_TERMS: dict[str, str] = {
    "kill": "violence",
    "murder": "violence",
    "bomb": "illicit/violent",
    "idiot": "harassment",
    "scam": "illicit",
    "suicide": "self-harm",
    "hate": "hate",
}
"""Term -> the moderation category it flags."""
DRAFT_WORDS = 60


def flagged_categories(text: str) -> set[str]:
    words = set(re.findall(r"[a-z']+", text.lower()))
    return {category for term, category in FLAGGED_TERMS.items() if term in words}


def _text_of(content: Any) -> str:
    """A message's text: a string, or the text parts of a list of content parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(
            str(part.get("text", ""))
            for part in content
            if isinstance(part, dict) and part.get("type") in ("text", "input_text")
        )
    return ""


def judge(text: str) -> dict[str, Any]:
    """The deterministic score answer."""
    if flagged_categories(text):
        return {"score": 20, "why": "the text holds language a moderator would flag"}
    if len(text.split()) < 5:
        return {"score": 50, "why": "the text is too short to say much"}
    return {"score": 80, "why": "clear, on topic and of a fitting length"}


def draft(brief: str, max_words: int) -> str:
    """The deterministic draft: the brief's words as one tidy sentence."""
    words = brief.split()[: max(1, min(max_words, DRAFT_WORDS))]
    if not words:
        return "Nothing to say yet."
    sentence = " ".join(words)
    sentence = sentence[0].upper() + sentence[1:]
    return sentence if sentence[-1] in ".!?" else sentence + "."


def completion(body: dict[str, Any]) -> dict[str, Any]:
    """The ``chat.completion`` object answering ``body``."""
    if body.get("tools"):
        return tool_completion(body, str(body.get("model") or MODELS[0]))
    messages = [m for m in body.get("messages") or [] if isinstance(m, dict)]
    system = " ".join(
        _text_of(m.get("content")) for m in messages if m.get("role") in ("system", "developer")
    ).lower()
    users = [_text_of(m.get("content")) for m in messages if m.get("role") == "user"]
    brief = users[-1] if users else ""
    if "json" in system and "score" in system:
        content = json.dumps(judge(brief))
    else:
        limit = body.get("max_completion_tokens") or body.get("max_tokens") or DRAFT_WORDS
        content = draft(brief, limit if isinstance(limit, int) else DRAFT_WORDS)
    prompt_tokens = sum(len(_text_of(m.get("content")).split()) for m in messages)
    completion_tokens = len(content.split())
    return {
        "id": f"chatcmpl-sandbox-{time.monotonic_ns()}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": str(body.get("model") or MODELS[0]),
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": content, "refusal": None},
                "finish_reason": "stop",
                "logprobs": None,
            }
        ],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        },
    }


def moderation_result(text: str) -> dict[str, Any]:
    hits = flagged_categories(text)
    return {
        "flagged": bool(hits),
        "categories": {c: c in hits for c in CATEGORIES},
        "category_scores": {c: 0.97 if c in hits else 0.0001 for c in CATEGORIES},
        "category_applied_input_types": {c: ["text"] for c in CATEGORIES},
    }


def _inputs(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        return [v if isinstance(v, str) else _text_of([v]) for v in value]
    return []


def invalid(message: str, param: str | None = None) -> JSONResponse:
    """The OpenAI error envelope."""
    body = {"message": message, "type": "invalid_request_error", "param": param, "code": None}
    return JSONResponse({"error": body}, status_code=400)


def openai_router(store: SandboxStore) -> APIRouter:
    """``/openai/v1/{chat/completions,moderations,models}`` and ``/sandbox/openai/requests``."""
    router = APIRouter()

    async def read(request: Request) -> dict[str, Any] | None:
        try:
            body = json.loads(await request.body() or b"{}")
        except ValueError:
            return None
        if not isinstance(body, dict):
            return None
        store.record_openai(request.url.path.removeprefix("/openai/v1"), body)
        return body

    @router.post("/openai/v1/chat/completions", response_model=None)
    async def chat_completions(request: Request) -> JSONResponse | dict[str, Any]:
        body = await read(request)
        if body is None:
            return invalid("the body must be a JSON object")
        if body.get("stream"):
            return invalid("the sandbox does not stream", "stream")
        if not body.get("messages"):
            return invalid("messages is required", "messages")
        return completion(body)

    @router.post("/openai/v1/moderations", response_model=None)
    async def moderations(request: Request) -> JSONResponse | dict[str, Any]:
        body = await read(request)
        if body is None or "input" not in body:
            return invalid("input is required", "input")
        return {
            "id": f"modr-sandbox-{time.monotonic_ns()}",
            "model": str(body.get("model") or "omni-moderation-latest"),
            "results": [moderation_result(text) for text in _inputs(body["input"])],
        }

    @router.get("/openai/v1/models")
    async def models() -> dict[str, Any]:
        return {"object": "list", "data": [_model(name) for name in MODELS]}

    @router.get("/openai/v1/models/{name}")
    async def model(name: str) -> dict[str, Any]:
        return _model(name)

    @router.get("/sandbox/openai/requests")
    async def requests(path: str | None = None) -> list[OpenAIRequest]:
        return store.openai_requests(path)

    return router


def _model(name: str) -> dict[str, Any]:
    return {"id": name, "object": "model", "created": 0, "owned_by": "agentfleet-sandbox"}
