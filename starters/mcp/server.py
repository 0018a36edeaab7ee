"""The MCP server (streamable HTTP at ``/mcp``): the fleet's skills as tools, priced ones paid
with x402 through the fleet's HTTP gateway (:mod:`starters.mcp.gateway`)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from decimal import Decimal
from typing import Any

from mcp.server import Server, ServerRequestContext
from mcp.types import (
    CallToolRequestParams,
    CallToolResult,
    ListToolsResult,
    PaginatedRequestParams,
)
from sqlalchemy.exc import SQLAlchemyError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from agentfleet.bots.cards import SELLING
from agentfleet.bots.model import BotKind, BotStatus
from agentfleet.errors import first_line
from agentfleet.payments.terms import FUSD_DECIMALS, SELLABLE, price_of
from agentfleet.settings import Settings
from clients.bots import bot_rows
from starters.mcp.gateway import Gateway, read_payment, text_result, tool_error
from starters.mcp.tools import (
    LIST_BOTS,
    PAYMENT_STATUS,
    SKILL_TOOLS,
    TOOLS,
    BadInput,
    NoArgs,
    PaymentStatusArgs,
    read_args,
)

PATH = "/mcp"
INSTRUCTIONS = (
    f"agentfleet's bots sell skills ({', '.join(SKILL_TOOLS)}). Call "
    "list_bots for the bots and their prices in fUSD. Free skills answer at once; a priced one "
    "answers an x402 PaymentRequired (isError, structuredContent): pay by calling it again with "
    "the signed PaymentPayload in _meta['x402/payment']. A pending answer is never to be paid "
    "again: read it with payment_status."
)
log = logging.getLogger("agentfleet.mcp")
GATEWAY_SLACK_S = 30.0
"""How much longer than a paid call's own wait (FLEET_PAYMENT_WAIT_S) the gateway may take."""


class FleetTools:
    """The tools' handlers over the gateway at ``settings.http_url`` and the bots table."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.gateway = Gateway(settings.http_url, settings.payment_wait_s + GATEWAY_SLACK_S)

    async def list_tools(
        self, _ctx: ServerRequestContext[Any], _params: PaginatedRequestParams | None
    ) -> ListToolsResult:
        return ListToolsResult(tools=TOOLS)

    async def call_tool(
        self, _ctx: ServerRequestContext[Any], params: CallToolRequestParams
    ) -> CallToolResult:
        try:
            return await self.call(params.name, params.arguments, dict(params.meta or {}))
        except BadInput as refused:
            return tool_error(str(refused))
        except Exception as exc:
            log.error("tool %s failed", params.name, exc_info=exc)
            return tool_error(f"internal error: {type(exc).__name__}: {first_line(exc, 200)}")

    async def call(
        self, name: str, arguments: dict[str, Any] | None, meta: dict[str, Any]
    ) -> CallToolResult:
        """Tool ``name`` with ``arguments`` and the request's ``_meta``; BadInput for input
        refused before anything is called."""
        if name == LIST_BOTS.name:
            read_args(NoArgs, arguments)
            return await self.list_bots()
        if name == PAYMENT_STATUS.name:
            status = read_args(PaymentStatusArgs, arguments)
            return await self.gateway.payment_status(status.payment_id, status.token)
        tool = SKILL_TOOLS.get(name)
        if tool is None:
            raise BadInput(f"no tool named {name!r}; tools: {', '.join(t.name for t in TOOLS)}")
        args = read_args(tool.args, arguments)
        payment = read_payment(meta)
        skill_args = args.model_dump(exclude={"bot"}, exclude_none=True)
        return await self.gateway.call_skill(args.bot, tool.name, skill_args, payment)

    async def list_bots(self) -> CallToolResult:
        try:
            rows = await asyncio.to_thread(bot_rows, self.settings.effective_database_url)
        except SQLAlchemyError as exc:
            return tool_error(f"cannot read the bots table: {first_line(exc, 200)}")
        bots = []
        for row in rows:
            kind = BotKind(row.kind)
            prices = {
                skill.value: _fusd(price_of(kind, dict(row.params), skill) or 0)
                for skill in SELLABLE[kind]
            }
            bots.append(
                {
                    "name": row.name,
                    "kind": row.kind,
                    "status": row.status,
                    "selling": BotStatus(row.status) in SELLING,
                    "prices_fusd": prices,
                }
            )
        return text_result({"bots": bots, "currency": "fUSD", "gateway": self.gateway.base_url})

    async def close(self) -> None:
        await self.gateway.close()


def _fusd(units: int) -> str:
    return f"{Decimal(units) / 10**FUSD_DECIMALS:f}"


def create_app(settings: Settings) -> Starlette:
    """The MCP server as an ASGI app: streamable HTTP at ``/mcp``, ``/healthz`` for probes."""
    tools = FleetTools(settings)
    server: Server[Any] = Server(
        "agentfleet",
        version="0.1.0",
        title="agentfleet",
        instructions=INSTRUCTIONS,
        on_list_tools=tools.list_tools,
        on_call_tool=tools.call_tool,
    )
    # Builds the session manager; its routes are mounted below, under a lifespan that also
    # closes the gateway's connections (the server's own lifespan runs once per session).
    transport = server.streamable_http_app(streamable_http_path=PATH, host=settings.bind_host)

    async def healthz(_request: Request) -> JSONResponse:
        return JSONResponse({"ok": True, "gateway": settings.http_url})

    @asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        async with server.session_manager.run():
            try:
                yield
            finally:
                await tools.close()

    return Starlette(routes=[*transport.routes, Route("/healthz", healthz)], lifespan=lifespan)
