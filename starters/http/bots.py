"""Each bot over HTTP: its ERC-8004 registration file, its A2A agent card, its A2A endpoint.

=====================================================  ==========================================
``GET  /bots/{name}/registration.json``                ERC-8004 registration-v1: the agent URI the
                                                       bot registers on-chain
``GET  /bots/{name}/.well-known/agent-card.json``      A2A 0.3 agent card (a remote bot: a 307 to
                                                       its own card)
``POST /bots/{name}/a2a``                              JSON-RPC 2.0 ``message/send`` whose data
                                                       part is ``{"skill": ..., "args": {...}}``
=====================================================  ==========================================

Everything is read from the ``bots`` table and the deployment manifest (what each document
says: :mod:`agentfleet.bots.cards`): nothing here starts a workflow, signs or touches the chain,
so the routes stay cheap. The A2A endpoint answers the read-only skills
(:data:`agentfleet.bots.cards.HTTP_SKILLS`) in-process with the code the workers run
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
from typing import Any

from fastapi import APIRouter, FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse
from sqlalchemy.exc import SQLAlchemyError

from activities.skills import SkillActivities
from agentfleet import db
from agentfleet.bots import a2a, cards
from agentfleet.bots.a2a import CARD_PATH, SKILL_FAILED, RpcError
from agentfleet.bots.model import BotKind, check_name
from agentfleet.chain.deployment.manifest import Deployment, load_deployment
from agentfleet.errors import FleetError
from agentfleet.models import BotRecord
from agentfleet.settings import Settings
from starters.http.wire import problem

SKILL_TIMEOUT_S = 10.0


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


def deployment_or_none(settings: Settings) -> Deployment | None:
    """The contracts on this chain, if a manifest can be read (the documents omit them else)."""
    try:
        return load_deployment(settings)
    except FleetError:
        return None


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

    def load_row(name: str) -> BotRecord:
        return bot_row(settings, name)

    @router.get("/{name}/registration.json", responses=BOT_ANSWERS)
    def registration(name: str) -> dict[str, Any]:
        """ERC-8004 registration-v1 file: the bot's agent URI on the IdentityRegistry."""
        row = load_row(name)
        return cards.registration_file(row, base, deployment_or_none(settings))

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
        if BotKind(row.kind) is BotKind.REMOTE:
            moved = cards.remote_card(row)
            return JSONResponse(moved, status_code=307, headers={"location": moved["agentCard"]})
        return cards.agent_card(row, base, deployment_or_none(settings), settings.chain_id)

    async def answer(row: BotRecord, skill_name: str, args: dict[str, Any]) -> dict[str, Any]:
        call = cards.a2a_call(row, base, skill_name, args)
        try:
            async with asyncio.timeout(SKILL_TIMEOUT_S):
                result = await skills.run_skill(call)
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
