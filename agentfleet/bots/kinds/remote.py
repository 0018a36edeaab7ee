"""A bot running elsewhere: its A2A agent card says where it answers, in which A2A version, and
which skills it offers; each skill goes as one JSON-RPC message with a data part: ``SendMessage``
to a card that lists an A2A 1.0 JSON-RPC interface, else ``message/send`` (A2A 0.3). Only URLs
the fleet's :class:`UrlRule` allows are called, and only endpoints on the card's own origin."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import httpx

from agentfleet.bots import a2a
from agentfleet.bots.kinds.common import SkillFailed, params_of, validated
from agentfleet.bots.model import Forecast, RemoteParams, Skill, SkillCall
from agentfleet.netguard import OutboundRefused, UrlRule, on_origin

CARD_TTL_S = 60.0
"""How long a remote bot's agent card is reused before it is fetched again."""


class RemoteBots:
    """Remote bots' skills through one HTTP client (the caller's: it decides the outbound guard)
    and one URL rule; agent cards are reused for ``CARD_TTL_S``."""

    def __init__(self, urls: UrlRule, http: httpx.AsyncClient) -> None:
        self._urls = urls
        self._http = http
        self._cards: dict[str, tuple[float, dict[str, Any]]] = {}

    async def answer(self, call: SkillCall) -> dict[str, Any]:
        """The remote bot's answer to ``call``: a JSON-RPC ``message/send`` whose one data part
        is ``{skill, args}``, to the endpoint its card declares. A URL the rule refuses, or an
        endpoint off the card's origin, is never called."""
        bot = call.bot
        params = params_of(bot, RemoteParams)
        url = str(params.url)
        try:
            self._urls.check(url)
            async with asyncio.timeout(params.timeout_s):
                card = await self._card(url, params.timeout_s)
                offered = [s.get("id") for s in card["skills"] if isinstance(s, dict)]
                if call.skill.value not in offered:
                    listed = ", ".join(str(s) for s in offered) or "none"
                    raise SkillFailed(
                        f"remote bot {bot.name} does not offer {call.skill.value} "
                        f"(its card lists: {listed})"
                    )
                endpoint, version = card["_endpoint"]
                data = await self._send(endpoint, version, call, params.timeout_s)
        except OutboundRefused as exc:
            raise SkillFailed(f"remote bot {bot.name}: {exc}") from None
        except TimeoutError:
            raise SkillFailed(
                f"remote bot {bot.name} did not answer within {params.timeout_s:g} s"
            ) from None
        except httpx.TimeoutException:
            raise SkillFailed(
                f"remote bot {bot.name} did not answer within {params.timeout_s:g} s"
            ) from None
        except httpx.HTTPError as exc:
            raise SkillFailed(f"cannot reach remote bot {bot.name} at {url}: {exc}") from None
        if call.skill is Skill.FORECAST:
            forecast = validated(Forecast, data, "remote forecast reply")
            remote_name = forecast.bot
            data = {**forecast.model_copy(update={"bot": bot.name}).model_dump(mode="json")}
            data["remote_name"] = remote_name
        return data

    async def _card(self, url: str, limit_s: float) -> dict[str, Any]:
        card_url = a2a.card_url(url)
        cached = self._cards.get(card_url)
        if cached is not None and cached[0] > time.monotonic():
            return cached[1]
        response = await self._http.get(card_url, timeout=limit_s)
        if response.status_code != 200:
            raise SkillFailed(f"agent card {card_url}: HTTP {response.status_code}")
        try:
            card = response.json()
        except ValueError:
            raise SkillFailed(f"agent card {card_url} is not JSON") from None
        interface = a2a.rpc_interface(card) if isinstance(card, dict) else None
        if interface is None or not isinstance(card.get("skills"), list):
            raise SkillFailed(f"agent card {card_url} has no JSON-RPC interface or skills list")
        declares = f"an endpoint the agent card {card_url} declares"
        for declared in a2a.declared_urls(card):
            on_origin(declared, card_url, declares)
        endpoint = on_origin(interface[0], card_url, declares)
        checked: dict[str, Any] = {**card, "_endpoint": (endpoint, interface[1])}
        self._cards[card_url] = (time.monotonic() + CARD_TTL_S, checked)
        return checked

    async def _send(
        self, endpoint: str, version: str, call: SkillCall, limit_s: float
    ) -> dict[str, Any]:
        asked = {"skill": call.skill.value, "args": call.args}
        if version == a2a.V1:
            method = "SendMessage"
            message: dict[str, Any] = {
                "messageId": uuid.uuid4().hex,
                "role": "ROLE_USER",
                "parts": [{"data": asked, "mediaType": "application/json"}],
            }
            configuration: dict[str, Any] = {"acceptedOutputModes": ["application/json"]}
        else:
            method = "message/send"
            message = {
                "kind": "message",
                "messageId": uuid.uuid4().hex,
                "role": "user",
                "parts": [{"kind": "data", "data": asked}],
            }
            configuration = {"blocking": True, "acceptedOutputModes": ["application/json"]}
        body = {
            "jsonrpc": "2.0",
            "id": uuid.uuid4().hex,
            "method": method,
            "params": {"message": message, "configuration": configuration},
        }
        response = await self._http.post(
            endpoint, json=body, timeout=limit_s, headers={a2a.VERSION_HEADER: version}
        )
        if response.status_code >= 400:
            raise SkillFailed(f"remote bot {call.bot.name} answered HTTP {response.status_code}")
        try:
            reply = response.json()
        except ValueError:
            raise SkillFailed(f"remote bot {call.bot.name} answered something not JSON") from None
        return reply_data(call.bot.name, reply)


def reply_data(name: str, reply: Any) -> dict[str, Any]:
    """The data part of a JSON-RPC send reply, A2A 1.0 (``{"message"}`` / ``{"task"}``, parts
    by member) or 0.3 (``kind``): a message's, or a completed task's artifacts'. A JSON-RPC
    error or anything else becomes one line."""
    if not isinstance(reply, dict) or reply.get("jsonrpc") != "2.0":
        raise SkillFailed(f"remote bot {name} sent a malformed reply (not JSON-RPC 2.0)")
    error = reply.get("error")
    if isinstance(error, dict):
        raise SkillFailed(
            f"remote bot {name} refused: {error.get('message', 'error')} "
            f"(JSON-RPC {error.get('code')})"
        )
    result = reply.get("result")
    if not isinstance(result, dict):
        raise SkillFailed(f"remote bot {name} sent a malformed reply (no result)")
    parts: list[Any] = []
    message, task = result.get("message"), result.get("task")
    if result.get("kind") == "message" or isinstance(message, dict):
        parts = list((message if isinstance(message, dict) else result).get("parts") or [])
    elif result.get("kind") == "task" or isinstance(task, dict):
        found = task if isinstance(task, dict) else result
        state = str((found.get("status") or {}).get("state") or "")
        if state not in ("completed", "TASK_STATE_COMPLETED"):
            left = state.removeprefix("TASK_STATE_").lower().replace("_", "-")
            raise SkillFailed(f"remote bot {name} left the task {left or 'unfinished'}")
        for artifact in found.get("artifacts") or []:
            if isinstance(artifact, dict):
                parts += list(artifact.get("parts") or [])
    for part in parts:
        if (
            isinstance(part, dict)
            and part.get("kind", "data") == "data"
            and isinstance(part.get("data"), dict)
        ):
            return dict(part["data"])
    raise SkillFailed(f"remote bot {name} sent a malformed reply (no data part)")
