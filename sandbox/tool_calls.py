"""Deterministic tool calling for the sandbox's chat completions (agent bots' tests and demo).

When a request offers ``tools``, the answer depends only on the conversation so far:

1. Directives: each line of the first user message of the form ``call NAME {json}`` (or
   ``call NAME``) is one tool call, made in order, one per turn, if NAME is offered. Tests use
   this to ask for exactly the calls they check.
2. Otherwise a small plan for market questions (the task mentions an outlook, a forecast or a
   price): ``find_sellers`` for ``forecast``; then ``buy_skill`` from the first two sellers it
   listed (two calls in one turn); then, when the instructions or the task mention a post,
   ``submit_post`` with a summary. A tool that is not offered is skipped.
3. Then the final answer: a short summary of the tool results that says it is automated.

Token counts are words, as in the rest of the sandbox.
"""

from __future__ import annotations

import json
import re
import time
from typing import Any

DIRECTIVE = re.compile(r"^\s*call\s+([A-Za-z0-9_:-]+)\s*(\{.*\})?\s*$")
MARKET_WORDS = ("outlook", "forecast", "price", "predict")
POST_WORDS = ("post", "publish", "submit")
SYMBOL = re.compile(r"\b(BTC|ETH|SOL|[A-Z]{2,10}USDT)\b")
DISCLOSURE = "I am an automated agent."


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(str(part.get("text", "")) for part in content if isinstance(part, dict))
    return ""


def _offered(body: dict[str, Any]) -> list[str]:
    names = []
    for tool in body.get("tools") or []:
        if isinstance(tool, dict):
            fn = tool.get("function") or {}
            if isinstance(fn, dict) and isinstance(fn.get("name"), str):
                names.append(fn["name"])
    return names


def _symbol(text: str) -> str:
    found = SYMBOL.search(text.upper())
    if not found:
        return "BTCUSDT"
    symbol = found.group(1)
    return symbol if symbol.endswith("USDT") else f"{symbol}USDT"


class Conversation:
    """What the messages say: the task, the instructions, calls made and their results."""

    def __init__(self, body: dict[str, Any]) -> None:
        messages = [m for m in body.get("messages") or [] if isinstance(m, dict)]
        users = [_text(m.get("content")) for m in messages if m.get("role") == "user"]
        self.task = users[0] if users else ""
        self.instructions = " ".join(
            _text(m.get("content")) for m in messages if m.get("role") in ("system", "developer")
        )
        self.calls: list[tuple[str, str]] = []  # (call id, tool name), in order
        self.results: dict[str, str] = {}  # call id -> content
        for m in messages:
            for call in m.get("tool_calls") or []:
                if isinstance(call, dict):
                    fn = call.get("function") or {}
                    self.calls.append((str(call.get("id")), str(fn.get("name"))))
            if m.get("role") == "tool":
                self.results[str(m.get("tool_call_id"))] = _text(m.get("content"))
        self.turns = sum(
            1 for m in messages if m.get("role") == "assistant" and m.get("tool_calls")
        )

    def called(self, name: str) -> bool:
        return any(n == name for _, n in self.calls)

    def results_of(self, name: str) -> list[Any]:
        out = []
        for call_id, n in self.calls:
            if n == name and call_id in self.results:
                raw = self.results[call_id]
                try:
                    out.append(json.loads(raw))
                except ValueError:
                    out.append(raw)
        return out


def _directives(task: str) -> list[tuple[str, dict[str, Any]]]:
    found = []
    for line in task.splitlines():
        match = DIRECTIVE.match(line)
        if match:
            try:
                args = json.loads(match.group(2)) if match.group(2) else {}
            except ValueError:
                args = {"_unparsed": match.group(2)}
            found.append((match.group(1), args if isinstance(args, dict) else {}))
    return found


def _sellers(results: list[Any]) -> list[str]:
    for result in results:
        rows = result.get("sellers") if isinstance(result, dict) else result
        if isinstance(rows, list):
            return [str(r["bot"]) for r in rows if isinstance(r, dict) and "bot" in r]
    return []


def _figures(convo: Conversation) -> list[str]:
    """One short phrase per successful purchase or forecast result."""
    phrases = []
    for name in ("buy_skill", "forecast"):
        for result in convo.results_of(name):
            if not isinstance(result, dict):
                continue
            data = result.get("answer", result)
            if isinstance(data, dict) and isinstance(data.get("value"), int | float):
                who = result.get("seller") or data.get("bot") or "a bot"
                phrases.append(f"{who} expects {data.get('symbol', '')} at {data['value']:.2f}")
    return phrases


def summary(convo: Conversation) -> str:
    figures = _figures(convo)
    if figures:
        body = "Outlook for " + _symbol(convo.task) + ": " + "; ".join(figures) + "."
    elif convo.results:
        body = "Tool results: " + " | ".join(list(convo.results.values())[:3])[:400]
    else:
        body = "Task noted: " + " ".join(convo.task.split()[:40])
    return f"{body} {DISCLOSURE}"


def next_calls(body: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """The tool calls of this turn (empty: answer in text)."""
    offered = set(_offered(body))
    convo = Conversation(body)
    directives = [(n, a) for n, a in _directives(convo.task) if n in offered]
    if directives:
        return [directives[convo.turns]] if convo.turns < len(directives) else []
    task = convo.task.lower()
    wants_post = any(w in (task + " " + convo.instructions.lower()) for w in POST_WORDS)
    if not any(w in task for w in MARKET_WORDS):
        return []
    symbol = _symbol(convo.task)
    if "find_sellers" in offered and not convo.called("find_sellers"):
        return [("find_sellers", {"skill": "forecast"})]
    if "buy_skill" in offered and not convo.called("buy_skill"):
        sellers = _sellers(convo.results_of("find_sellers"))[:2]
        if sellers:
            return [
                ("buy_skill", {"seller": s, "skill": "forecast", "symbol": symbol}) for s in sellers
            ]
    if "forecast" in offered and not convo.called("forecast") and not convo.called("buy_skill"):
        return [("forecast", {"symbol": symbol})]
    if wants_post and "submit_post" in offered and not convo.called("submit_post"):
        return [("submit_post", {"text": summary(convo)})]
    return []


def tool_completion(body: dict[str, Any], model: str) -> dict[str, Any]:
    """A ``chat.completion`` with tool calls, or the final text answer."""
    calls = next_calls(body)
    stamp = time.monotonic_ns()
    if calls:
        message: dict[str, Any] = {
            "role": "assistant",
            "content": None,
            "refusal": None,
            "tool_calls": [
                {
                    "id": f"call_{stamp}_{i}",
                    "type": "function",
                    "function": {"name": name, "arguments": json.dumps(args)},
                }
                for i, (name, args) in enumerate(calls)
            ],
        }
        finish = "tool_calls"
        completion_tokens = sum(len(json.dumps(a).split()) + 1 for _, a in calls)
    else:
        text = summary(Conversation(body))
        message = {"role": "assistant", "content": text, "refusal": None}
        finish = "stop"
        completion_tokens = len(text.split())
    prompt_tokens = sum(
        len(_text(m.get("content")).split()) + 4
        for m in body.get("messages") or []
        if isinstance(m, dict)
    ) + 20 * len(body.get("tools") or [])
    return {
        "id": f"chatcmpl-sandbox-{stamp}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "message": message, "finish_reason": finish, "logprobs": None}],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        },
    }
