"""Each bot over HTTP: its ERC-8004 registration file, its A2A agent card, its A2A endpoint.

=====================================================  ==========================================
``GET  /bots/{name}/registration.json``                ERC-8004 registration-v1: the agent URI the
                                                       bot registers on-chain
``GET  /bots/{name}/.well-known/agent-card.json``      A2A 0.3 agent card (a remote bot: a 307 to
                                                       its own card)
``POST /bots/{name}/a2a``                              JSON-RPC 2.0 ``message/send`` whose data
                                                       part is ``{"skill": ..., "args": {...}}``
=====================================================  ==========================================

Everything is read from the ``bots`` table and the deployment manifest: nothing here starts a
workflow, signs or touches the chain, so the routes stay cheap. The A2A endpoint answers the
read-only skills (:data:`HTTP_SKILLS`) in-process with the code the workers run
(:mod:`activities.skills`), from the bot's row; a paused or retired bot answers ``status`` only.
Commands that change a bot (``tune``, ``configure`` ...) go through its entity workflow (CLI).

URLs are built on ``settings.http_url``, the base the agent URI was registered with
(:func:`activities.identity.registration_url`), so the file, the card and the chain agree.
Unknown bots are a 404 with a JSON ``detail``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from fastapi import APIRouter, FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse
from sqlalchemy.exc import SQLAlchemyError

from activities.skills import SkillActivities
from agentfleet import db
from agentfleet.bots import a2a
from agentfleet.bots.a2a import (
    INVALID_PARAMS,
    PAYMENT_REQUIRED,
    SKILL_FAILED,
    UNSUPPORTED_OPERATION,
    RpcError,
)
from agentfleet.bots.model import (
    BotKind,
    BotRef,
    BotStatus,
    RemoteParams,
    Skill,
    SkillCall,
    check_name,
    disclosure_for,
)
from agentfleet.chain.deployment import load_deployment
from agentfleet.errors import FleetError
from agentfleet.models import BotRecord
from agentfleet.payments.terms import A2A_X402_EXTENSION, SELLABLE, price_of
from agentfleet.settings import Settings
from starters.http.wire import problem

REGISTRATION_TYPE = "https://eips.ethereum.org/EIPS/eip-8004#registration-v1"
A2A_VERSION = "0.3.0"
CARD_PATH = ".well-known/agent-card.json"
INACTIVE = frozenset({BotStatus.RETIRING, BotStatus.RETIRED})
"""States in which the registration file says ``"active": false``."""
SKILL_TIMEOUT_S = 10.0
CAPABILITIES = {"streaming": False, "pushNotifications": False, "stateTransitionHistory": False}

SKILL_CARDS: dict[Skill, dict[str, Any]] = {
    Skill.FORECAST: {
        "id": "forecast",
        "name": "Forecast",
        "description": "Next value of a symbol's price (EMA over the bot's series; synthetic "
        "data unless real bars were imported).",
        "tags": ["forecast", "price", "ema"],
        "examples": ['{"skill": "forecast", "args": {"symbol": "BTCUSDT", "horizon": "1h"}}'],
    },
    Skill.STATUS: {
        "id": "status",
        "name": "Status",
        "description": "The bot's state, parameters and disclosure.",
        "tags": ["status"],
        "examples": ['{"skill": "status", "args": {}}'],
    },
    Skill.PERFORMANCE: {
        "id": "performance",
        "name": "Performance",
        "description": "Backtest of its one-step-ahead forecasts: mean abs error, hit rate.",
        "tags": ["performance", "backtest"],
        "examples": ['{"skill": "performance", "args": {"window": "7d"}}'],
    },
    Skill.SHARE_PATTERN: {
        "id": "share_pattern",
        "name": "Share pattern",
        "description": "The market regime the bot sees now, with its confidence.",
        "tags": ["pattern", "regime"],
        "examples": ['{"skill": "share_pattern", "args": {"symbol": "BTCUSDT"}}'],
    },
}
HTTP_SKILLS = SELLABLE
"""What each built-in kind answers over HTTP: the skills that only read (priced skills are
sold through ``/bots/{name}/skills/{skill}`` with x402)."""
KIND_BLURBS: dict[BotKind, str] = {
    BotKind.FORECASTER: "agentfleet forecaster bot.",
    BotKind.PUBLISHER: "agentfleet publisher bot.",
    BotKind.REMOTE: "agentfleet remote bot (runs elsewhere, speaks A2A).",
}


def _package_version() -> str:
    try:
        return version("agentfleet")
    except PackageNotFoundError:
        return "0.0.0"


def remote_card_url(params: dict[str, Any]) -> str:
    """A remote bot's own agent card: ``params.url`` itself, or the card under that base (the
    rule :mod:`activities.skills` follows when it calls the bot)."""
    return a2a.card_url(str(RemoteParams.model_validate(params).url))


def bot_row(settings: Settings, name: str) -> BotRecord:
    """The bot's row; 404 for a name that is not a bot, 503 when the table cannot be read."""
    try:
        check_name(name)
    except ValueError:
        raise HTTPException(404, f"no bot named {name!r}") from None
    try:
        with db.session_scope(settings.effective_database_url) as session:
            row = session.get(BotRecord, name)
    except SQLAlchemyError as exc:
        reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()
        raise HTTPException(
            503, f"cannot read the bots table: {reason[0] if reason else 'error'}"
        ) from None
    if row is None:
        raise HTTPException(404, f"no bot named {name}")
    return row


BOT_ANSWERS: dict[int | str, dict[str, Any]] = {
    404: problem("No bot of that name."),
    503: problem("The bots table cannot be read."),
}


def create_router(settings: Settings) -> APIRouter:
    """The ``/bots`` routes of the HTTP app, bound to ``settings`` (database, chain, base URL)."""
    skills = SkillActivities(settings)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        yield
        await skills.close()

    router = APIRouter(prefix="/bots", tags=["bots"], lifespan=lifespan)
    base = settings.http_url

    def bot_url(name: str, path: str) -> str:
        return f"{base}/bots/{name}/{path}"

    def load_row(name: str) -> BotRecord:
        return bot_row(settings, name)

    def description(row: BotRecord) -> str:
        text = row.description.strip() or KIND_BLURBS[BotKind(row.kind)]
        return f"{text} {disclosure_for(row.owner)}"

    @router.get("/{name}/registration.json", responses=BOT_ANSWERS)
    def registration(name: str) -> dict[str, Any]:
        """ERC-8004 registration-v1 file: the bot's agent URI on the IdentityRegistry."""
        row = load_row(name)
        kind = BotKind(row.kind)
        a2a: dict[str, Any] = {"name": "A2A"}
        if kind is BotKind.REMOTE:
            a2a["endpoint"] = remote_card_url(row.params)
        else:
            a2a.update(endpoint=bot_url(name, CARD_PATH), version=A2A_VERSION)
        registrations: list[dict[str, Any]] = []
        try:
            deployment = load_deployment(settings)
        except FleetError:
            deployment = None
        if deployment is not None and row.agent_id is not None:
            registry = deployment.address("IdentityRegistry")
            registrations.append(
                {
                    "agentId": row.agent_id,
                    "agentRegistry": f"eip155:{deployment.chain_id}:{registry}",
                }
            )
        return {
            "type": REGISTRATION_TYPE,
            "name": row.name,
            "description": description(row),
            "services": [a2a],
            "x402Support": any(
                price_of(kind, dict(row.params), skill) for skill in HTTP_SKILLS[kind]
            ),
            "active": BotStatus(row.status) not in INACTIVE,
            "registrations": registrations,
        }

    @router.get(
        f"/{{name}}/{CARD_PATH}",
        response_model=None,
        responses={
            200: {
                "description": "The bot's A2A agent card.",
                "content": {"application/json": {"schema": {"type": "object"}}},
            },
            307: {
                "description": "A remote bot: its own card is at `location`.",
                "content": {"application/json": {"schema": {"type": "object"}}},
                "headers": {"location": {"schema": {"type": "string"}}},
            },
            **BOT_ANSWERS,
        },
    )
    def agent_card(name: str) -> dict[str, Any] | JSONResponse:
        """A2A agent card of a built-in bot; a remote bot's card lives at its own URL (307)."""
        row = load_row(name)
        kind = BotKind(row.kind)
        if kind is BotKind.REMOTE:
            card = remote_card_url(row.params)
            return JSONResponse(
                {
                    "name": row.name,
                    "remote": True,
                    "agentCard": card,
                    "note": f"{row.name} runs elsewhere; its own agent card is {card}",
                },
                status_code=307,
                headers={"location": card},
            )
        return {
            "protocolVersion": A2A_VERSION,
            "name": row.name,
            "description": description(row),
            "url": bot_url(name, "a2a"),
            "preferredTransport": "JSONRPC",
            "version": _package_version(),
            "capabilities": CAPABILITIES,
            "defaultInputModes": ["application/json"],
            "defaultOutputModes": ["application/json"],
            "skills": [SKILL_CARDS[skill] for skill in HTTP_SKILLS[kind]],
        } | x402_extension(row)

    def x402_extension(row: BotRecord) -> dict[str, Any]:
        """The card's x402 extension: each skill's price and where to buy it (HTTP x402)."""
        kind = BotKind(row.kind)
        prices = {s: price_of(kind, dict(row.params), s) for s in HTTP_SKILLS[kind]}
        paid = {s: units for s, units in prices.items() if units}
        if not paid:
            return {}
        try:
            deployment = load_deployment(settings)
        except FleetError:
            deployment = None
        token = deployment.contracts.get("FleetUSD") if deployment else None
        network = f"eip155:{settings.chain_id}"
        offers = {
            skill.value: {
                "endpoint": bot_url(row.name, f"skills/{skill.value}"),
                "scheme": "exact",
                "network": network,
                "asset": token.address if token else None,
                "amount": str(units),
                "payTo": row.address,
            }
            for skill, units in paid.items()
        }
        extension = {
            "uri": A2A_X402_EXTENSION,
            "description": "Paid skills: POST the endpoint with an x402 v2 payment in fUSD.",
            "required": False,
            "params": {"skills": offers},
        }
        return {"capabilities": {**CAPABILITIES, "extensions": [extension]}}

    async def answer(row: BotRecord, skill_name: str, args: dict[str, Any]) -> dict[str, Any]:
        kind = BotKind(row.kind)
        if kind is BotKind.REMOTE:
            raise RpcError(
                UNSUPPORTED_OPERATION,
                f"{row.name} runs elsewhere; call it through its own card "
                f"{remote_card_url(row.params)}",
            )
        offered = HTTP_SKILLS[kind]
        skill = next((s for s in offered if s.value == skill_name), None)
        if skill is None:
            listed = ", ".join(s.value for s in offered)
            raise RpcError(
                INVALID_PARAMS, f"unknown skill {skill_name!r}; this agent offers {listed}"
            )
        price = price_of(kind, dict(row.params), skill)
        if price and BotStatus(row.status) in (BotStatus.ACTIVE, BotStatus.DEGRADED):
            raise RpcError(
                PAYMENT_REQUIRED,
                f"{skill.value} costs {price / 10**6:g} fUSD: POST "
                f"{bot_url(row.name, f'skills/{skill.value}')} with an x402 payment",
            )
        bot = BotRef(
            name=row.name,
            kind=kind,
            status=BotStatus(row.status),
            owner=row.owner,
            params=dict(row.params),
        )
        try:
            async with asyncio.timeout(SKILL_TIMEOUT_S):
                result = await skills.run_skill(SkillCall(bot=bot, skill=skill, args=args))
        except TimeoutError:
            raise RpcError(SKILL_FAILED, f"no answer within {SKILL_TIMEOUT_S:g} s") from None
        if not result.ok:
            raise RpcError(SKILL_FAILED, result.error or "the skill failed")
        return result.data

    @router.post(
        "/{name}/a2a",
        name="bot_a2a",
        responses={
            200: {
                "description": "A JSON-RPC 2.0 response: `result` (an agent message with one "
                "data part) or `error` (JSON-RPC errors are answered with HTTP 200).",
                "content": {"application/json": {"schema": {"type": "object"}}},
            },
            413: problem("The body is larger than FLEET_HTTP_MAX_BODY_BYTES."),
            **BOT_ANSWERS,
        },
        openapi_extra={
            "requestBody": {
                "description": "A JSON-RPC 2.0 request, method `message/send` (A2A); anything "
                "else is answered with a JSON-RPC error.",
                "content": {"application/json": {"schema": {}}},
            }
        },
    )
    async def a2a_endpoint(name: str, request: Request) -> JSONResponse:
        """JSON-RPC 2.0 ``message/send``: the reply is an agent message with one data part."""
        row = await asyncio.to_thread(load_row, name)
        return await a2a.serve_message_send(request, lambda skill, args: answer(row, skill, args))

    return router
