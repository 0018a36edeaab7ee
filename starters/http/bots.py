"""Each bot over HTTP: its ERC-8004 registration file, its A2A agent card, its A2A endpoint.

=====================================================  ==========================================
``GET  /bots/{name}/registration.json``                ERC-8004 registration-v1: the agent URI the
                                                       bot registers on-chain
``GET  /bots/{name}/.well-known/agent-card.json``      A2A agent card, 1.0 shape, read by 0.3
                                                       clients too (a remote bot: a 307 to its
                                                       own card)
``POST /bots/{name}/a2a``                              A2A JSON-RPC 2.0: ``SendMessage`` /
                                                       ``GetTask`` (1.0, ``A2A-Version: 1.0``),
                                                       ``message/send`` / ``tasks/get`` (0.3)
=====================================================  ==========================================

Everything is read from the ``bots`` table and the deployment manifest (what each document
says: :mod:`agentfleet.bots.cards`). A message's data part ``{"skill": ..., "args": {...}}``, or
a skill named in its text ("forecast BTC"), is answered in-process for the read-only skills
(:data:`agentfleet.bots.cards.HTTP_SKILLS`) with the code the workers run
(:mod:`activities.skills`), from the bot's row; a paused or retired bot answers ``status``
only, and a priced skill is sold through the x402 route, never answered here. A text message to
an agent bot starts an agent run (:mod:`clients.agents`): its answer, or a task to poll.
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
from temporalio.client import Client

from activities.skills import SkillActivities
from agentfleet import db
from agentfleet.agents.model import (
    FINAL_RUN_STATES,
    RUN_ID_PATTERN,
    AgentRunView,
    RunSource,
    RunStatus,
    run_workflow_id,
)
from agentfleet.bots import a2a, cards
from agentfleet.bots.a2a import (
    CARD_PATH,
    INTERNAL_ERROR,
    INVALID_PARAMS,
    SKILL_FAILED,
    TASK_NOT_FOUND,
    TOO_MANY_RUNS,
    UNSUPPORTED_OPERATION,
    Data,
    Incoming,
    MessageReply,
    Reply,
    RpcError,
    TaskReply,
    TaskState,
    Text,
)
from agentfleet.bots.model import BotKind, check_name
from agentfleet.chain.deployment.manifest import Deployment, load_deployment
from agentfleet.errors import FleetError
from agentfleet.models import BotRecord
from agentfleet.settings import Settings
from clients import agents
from clients.checkout import Checkout
from starters.http.ratelimit import RateLimits
from starters.http.wire import problem

SKILL_TIMEOUT_S = 10.0
RUN_STATES: dict[RunStatus, TaskState] = {
    RunStatus.RUNNING: TaskState.WORKING,
    RunStatus.WAITING_APPROVAL: TaskState.INPUT_REQUIRED,
    RunStatus.COMPLETED: TaskState.COMPLETED,
    RunStatus.REFUSED: TaskState.REJECTED,
    RunStatus.OVER_BUDGET: TaskState.FAILED,
    RunStatus.FAILED: TaskState.FAILED,
}
"""The A2A task state of an agent run."""


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


def run_task(view: AgentRunView, context_id: str | None = None) -> TaskReply:
    """An agent run as an A2A task: working, waiting for a human (input-required), or ended
    with its answer (completed) or its reason."""
    state = RUN_STATES[view.status]
    note = None
    if view.status is RunStatus.RUNNING:
        note = f"{view.bot} is working on it: poll this task (GetTask / tasks/get)"
    elif view.status is RunStatus.WAITING_APPROVAL:
        pending = view.pending
        waits = f" {pending.tool}: {pending.why}" if pending else ""
        note = f"waiting for a human to approve{waits}"
    elif view.status is not RunStatus.COMPLETED:
        note = f"{view.status.value}: {view.reason or 'no reason given'}"
    answer = view.answer if view.status is RunStatus.COMPLETED else None
    return TaskReply(
        id=view.run_id, state=state, note=note, answer=answer or None, context_id=context_id
    )


class BotEndpoint:
    """The A2A handler of one built-in bot (:class:`agentfleet.bots.a2a.Handler`)."""

    def __init__(self, routes: BotRoutes, row: BotRecord) -> None:
        self._routes = routes
        self._row = row

    async def send(self, message: Incoming) -> Reply:
        row = self._row
        kind = BotKind(row.kind)
        if kind is BotKind.REMOTE:
            raise RpcError(
                UNSUPPORTED_OPERATION,
                f"{row.name} runs elsewhere; call it through its own card "
                f"{cards.remote_card_url(row.params)}",
            )
        if message.call is not None:
            data = await self._routes.answer(row, *message.call)
            return MessageReply([Data(data)])
        if kind is BotKind.AGENT:
            return await self._routes.ask(row, message)
        asked = cards.text_call(row, message.text)
        if asked is None:
            return MessageReply([Text(cards.offers_text(row, self._routes.base))])
        data = await self._routes.answer(row, *asked)
        return MessageReply([Text(cards.describe(asked[0], data)), Data(data)])

    async def task(self, task_id: str) -> TaskReply:
        row = self._row
        if BotKind(row.kind) is not BotKind.AGENT:
            raise RpcError(TASK_NOT_FOUND, f"no task {task_id[:80]!r}: {row.name} answers at once")
        view = await self._routes.run_view(row, task_id)
        return run_task(view)


class BotRoutes:
    """What the ``/bots`` routes share: settings, the skill runner, and the gateway's Temporal
    client for agent runs (connected on first use, so the app starts before Temporal does)."""

    def __init__(self, settings: Settings, checkout: Checkout) -> None:
        self.settings = settings
        self.base = settings.http_url
        self.skills = SkillActivities(settings)
        self.checkout = checkout
        self.limits = RateLimits(settings)
        self.runs_per_caller = RateLimits.parse(settings.a2a_runs_per_caller)

    async def client(self) -> Client:
        try:
            return await self.checkout.client()
        except FleetError as exc:
            why = str(exc).removeprefix("payments are unavailable: ")
            raise RpcError(INTERNAL_ERROR, f"agent runs are unavailable: {why}") from None

    async def answer(self, row: BotRecord, skill_name: str, args: dict[str, Any]) -> dict[str, Any]:
        call = cards.a2a_call(row, self.base, skill_name, args)
        try:
            async with asyncio.timeout(SKILL_TIMEOUT_S):
                result = await self.skills.run_skill(call)
        except TimeoutError:
            raise RpcError(SKILL_FAILED, f"no answer within {SKILL_TIMEOUT_S:g} s") from None
        if not result.ok:
            raise RpcError(SKILL_FAILED, result.error or "the skill failed")
        return result.data

    async def ask(self, row: BotRecord, message: Incoming) -> Reply:
        """Start (or, for the same message id, join) an agent run on the message's text; its
        answer once it ends within ``a2a_wait_s``, else its task."""
        task = message.text.strip()
        if not task:
            raise RpcError(INVALID_PARAMS, f"the message's text is empty: send {row.name} a task")
        if message.message_id is None:
            raise RpcError(INVALID_PARAMS, "the message needs a messageId: it keys the run")
        passed = await self.limits.exceeded(self.runs_per_caller, f"agent-runs:{message.caller}")
        if passed is not None:
            rate, wait = passed
            raise RpcError(
                TOO_MANY_RUNS,
                f"too many agent runs from {message.caller} ({rate}); retry in {wait} s",
            )
        client = await self.client()
        try:
            run_id = await agents.ask(
                client,
                self.settings,
                row.name,
                task,
                source=RunSource.A2A,
                requested_by=message.caller,
                # Scoped by caller: two clients that both number their messages "1" get
                # runs of their own; one client resending its message joins its run.
                key=f"{message.caller}|{message.message_id}",
            )
            if message.wait:
                view = await agents.wait(client, run_id, timeout_s=self.settings.a2a_wait_s)
            else:
                view = await agents.show(client, run_id)
        except FleetError as exc:
            raise RpcError(SKILL_FAILED, str(exc)) from None
        if view.status not in FINAL_RUN_STATES:
            return run_task(view, message.context_id)
        if view.status is RunStatus.COMPLETED and view.answer:
            text = view.answer
        else:
            text = f"{view.status.value}: {view.reason or 'no reason given'}"
        return MessageReply([Text(text)], metadata={"run_id": view.run_id})

    async def run_view(self, row: BotRecord, task_id: str) -> AgentRunView:
        """The run ``task_id`` of agent ``row`` that an A2A message started; TASK_NOT_FOUND for
        any other id (another bot's run, or one started from the CLI or Telegram)."""
        missing = RpcError(TASK_NOT_FOUND, f"no task {task_id[:80]!r} at {row.name}")
        prefix = run_workflow_id(row.name, "")
        if not task_id.startswith(prefix) or not RUN_ID_PATTERN.match(task_id):
            raise missing
        try:
            view = await agents.show(await self.client(), task_id)
        except FleetError:
            raise missing from None
        if view.bot != row.name or view.source is not RunSource.A2A:
            raise missing
        return view


def create_router(settings: Settings, checkout: Checkout) -> APIRouter:
    """The ``/bots`` routes of the HTTP app, bound to ``settings`` (database, chain, base URL)
    and the gateway's ``checkout`` (its Temporal client starts agent runs)."""
    routes = BotRoutes(settings, checkout)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        yield
        await routes.skills.close()

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
                "description": "The bot's A2A agent card (A2A 1.0, with the fields A2A 0.3 "
                "clients read).",
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

    @router.post(
        "/{name}/a2a",
        name="bot_a2a",
        responses={
            200: {
                "description": "A JSON-RPC 2.0 response: `result` (A2A 1.0: `{message}` or "
                "`{task}`; 0.3: the message or task itself) or `error` (JSON-RPC errors are "
                "answered with HTTP 200; an `A2A-Version` the bot does not speak is -32009).",
                "content": {"application/json": {"schema": {"type": "object"}}},
                "headers": {
                    a2a.VERSION_HEADER: {
                        "description": "The A2A version of the answer: 1.0 or 0.3.",
                        "schema": {"type": "string"},
                    },
                    a2a.EXTENSIONS_HEADER: {
                        "description": "The requested extensions this bot activated.",
                        "schema": {"type": "string"},
                    },
                },
            },
            413: problem("The body is larger than FLEET_HTTP_MAX_BODY_BYTES."),
            **BOT_ANSWERS,
        },
        openapi_extra={
            "requestBody": {
                "description": "A JSON-RPC 2.0 request: A2A 1.0 `SendMessage` / `GetTask` "
                "(header `A2A-Version: 1.0`) or A2A 0.3 `message/send` / `tasks/get`; anything "
                "else is answered with a JSON-RPC error. A message carries a data part "
                '`{"skill": ..., "args": {...}}`, or text.',
                "content": {"application/json": {"schema": {}}},
            }
        },
    )
    async def a2a_endpoint(name: str, request: Request) -> JSONResponse:
        """A2A JSON-RPC 2.0 in the version the request names (``A2A-Version``; none: 0.3)."""
        row = await asyncio.to_thread(load_row, name)
        return await a2a.serve(
            request, BotEndpoint(routes, row), extensions=cards.extension_uris(row)
        )

    return router
