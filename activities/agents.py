"""Activities of agent runs (``workflows/agent_run.py``): the run's context, the budget hold,
usage records, finding sellers, shared patterns and MCP tools.

The model calls themselves are the OpenAI Agents SDK integration's activity
(``invoke_model_activity``, registered by ``OpenAIAgentsPlugin`` on the agents queue).
"""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, date, datetime, time
from typing import Any

from mcp import Client as McpClient
from sqlalchemy.exc import IntegrityError
from sqlmodel import col, select
from temporalio import activity
from temporalio.client import WorkflowUpdateFailedError
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError, RPCStatusCode

from agentfleet import db, taskqueues
from agentfleet.agents import roster, usage
from agentfleet.agents.model import (
    AgentContext,
    AgentRunRequest,
    BudgetAsk,
    McpCall,
    McpListAsk,
    McpToolList,
    McpToolSpec,
    PatternsAsk,
    Seller,
    SellersAnswer,
    SellersAsk,
    UsageEntry,
    fusd,
)
from agentfleet.bots.model import BotKind, disclosure_for
from agentfleet.chaos import chaos_point
from agentfleet.content import store as content_store
from agentfleet.errors import FleetError
from agentfleet.models import BotRecord, PatternRecord, UsageRecord
from agentfleet.operations import metrics
from agentfleet.payments.spending import HoldAnswer, SpendingHold
from agentfleet.payments.terms import price_of
from agentfleet.settings import Settings
from clients import bots

FLEET_MCP = "fleet"


def refused(message: str) -> ApplicationError:
    """A run that must not go on: not retried, the message is what the operator reads."""
    return ApplicationError(message, type="AgentRefused", non_retryable=True)


class AgentActivities:
    task_queue = taskqueues.IO

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._url = settings.effective_database_url

    @activity.defn(name="agent_context")
    async def agent_context(self, request: AgentRunRequest) -> AgentContext:
        """The agent's row and parameters; refused for an unknown bot, one that is not an
        agent or not active, a model without a price, an MCP server not configured."""
        return await asyncio.to_thread(self._context, request)

    def _context(self, request: AgentRunRequest) -> AgentContext:
        try:
            row, params = roster.runnable(self._url, request.bot)
        except FleetError as exc:
            raise refused(str(exc)) from None
        with db.session_scope(self._url) as session:
            publishers = session.exec(
                select(BotRecord)
                .where(BotRecord.kind == BotKind.PUBLISHER.value)
                .where(col(BotRecord.status).in_(roster.RUNNING))
                .order_by(col(BotRecord.name))
            ).all()
        if not self._settings.agent_model_url:
            raise refused(
                "agent runs need a model: set FLEET_OPENAI_BASE_URL, or run the sandbox "
                "(FLEET_CHANNEL_SANDBOX=true, as `fleet up` does)"
            )
        price = self._settings.model_prices.get(params.model)
        if price is None:
            raise refused(
                f"model {params.model} has no price in FLEET_MODEL_PRICES; an agent's tokens "
                "must count against its budget"
            )
        urls = self._mcp_urls()
        missing = [name for name in params.mcp_servers() if name not in urls]
        if missing:
            raise refused(f"MCP server {missing[0]} is not configured (FLEET_MCP_SERVERS)")
        publisher = params.publisher
        channel = None
        by_name = {p.name: p for p in publishers}
        if publisher is None and publishers:
            publisher = publishers[0].name
        if publisher is not None and publisher in by_name:
            channel = (by_name[publisher].params or {}).get("channel")
            if channel is None:  # the publisher names none: the fleet's first channel
                channels = content_store.list_channels(self._url)
                channel = channels[0].name if channels else None
        return AgentContext(
            bot=row.name,
            owner=row.owner,
            disclosure=disclosure_for(row.owner),
            params=params,
            price=price,
            publisher=publisher if publisher in by_name else None,
            channel=channel,
            mcp_urls={name: urls[name] for name in params.mcp_servers()},
            max_output_tokens=self._settings.agent_max_output_tokens,
        )

    def _mcp_urls(self) -> dict[str, str]:
        urls = dict(self._settings.mcp_servers)
        port = getattr(self._settings, "mcp_port", None)
        if FLEET_MCP not in urls and port:
            urls[FLEET_MCP] = f"http://127.0.0.1:{port}/mcp"
        return urls

    @activity.defn(name="hold_agent_budget")
    async def hold_budget(self, ask: BudgetAsk) -> HoldAnswer:
        """The agent's entity holds ``ask.amount`` of today's budget (tokens and purchases
        together) or refuses it; a bot that is not running or not active is refused."""
        chaos_point("before_hold", ask.hold_id)
        day = datetime.now(UTC).date()
        seeded = await asyncio.to_thread(self._spent_today, ask.bot, day)
        hold = SpendingHold(
            purchase_id=ask.hold_id, amount=ask.amount, day=day, settled_today=seeded
        )
        try:
            return await bots.hold_budget(activity.client(), ask.bot, hold)
        except WorkflowUpdateFailedError as exc:
            cause = exc.cause
            if not isinstance(cause, ApplicationError):
                raise
            if cause.type == "StaleDay":
                raise ApplicationError(cause.message, type="StaleDay") from None
            raise refused(cause.message) from None
        except RPCError as exc:
            if exc.status is RPCStatusCode.NOT_FOUND:
                raise refused(f"bot {ask.bot} is not running") from None
            raise

    def _spent_today(self, bot: str, day: date) -> int:
        """Units the agent spent today before its entity counted: model calls and settled
        purchases in the database since 00:00 UTC (the figures ``fleet agent usage`` shows)."""
        midnight = datetime.combine(day, time(), tzinfo=UTC)
        with db.session_scope(self._url) as session:
            rows = usage.usage_since(session, midnight, bot)
        return sum(row.token_units + row.purchase_units for row in rows)

    @activity.defn(name="record_usage")
    async def record_usage(self, entry: UsageEntry) -> bool:
        """One row per (run, call): a retry finds its row and adds nothing. True when new (then
        the call's tokens and cost are counted in the worker's metrics too)."""
        chaos_point("before_usage", entry.run_id)
        new = await asyncio.to_thread(self._record, entry)
        if new:
            metrics.count_model_call(
                entry.bot, entry.model, entry.input_tokens, entry.output_tokens, entry.cost_units
            )
        return new

    def _record(self, entry: UsageEntry) -> bool:
        try:
            with db.session_scope(self._url) as session:
                if session.get(UsageRecord, (entry.run_id, entry.call_no)) is not None:
                    return False
                session.add(UsageRecord(**entry.model_dump()))
        except IntegrityError:  # a racing retry inserted it first
            return False
        return True

    @activity.defn(name="find_sellers")
    async def find_sellers(self, ask: SellersAsk) -> SellersAnswer:
        """Active bots of the fleet that sell ``ask.skill`` over x402, cheapest first."""
        return await asyncio.to_thread(self._sellers, ask)

    def _sellers(self, ask: SellersAsk) -> SellersAnswer:
        with db.session_scope(self._url) as session:
            rows = session.exec(
                select(BotRecord)
                .where(col(BotRecord.status).in_(roster.RUNNING))
                .order_by(col(BotRecord.name))
            ).all()
        found = []
        for row in rows:
            if row.name == ask.buyer:
                continue
            units = price_of(BotKind(row.kind), dict(row.params or {}), ask.skill)
            if not units:
                continue
            found.append(Seller(bot=row.name, skill=ask.skill, price=fusd(units), units=units))
        found.sort(key=lambda s: (s.units, s.bot))
        return SellersAnswer(sellers=found)

    @activity.defn(name="shared_patterns")
    async def shared_patterns(self, ask: PatternsAsk) -> list[dict[str, Any]]:
        """The latest patterns the fleet's bots shared (``fleet learn patterns``)."""
        return await asyncio.to_thread(self._patterns, ask)

    def _patterns(self, ask: PatternsAsk) -> list[dict[str, Any]]:
        with db.session_scope(self._url) as session:
            query = select(PatternRecord).order_by(col(PatternRecord.created_at).desc())
            if ask.symbol:
                query = query.where(PatternRecord.symbol == ask.symbol)
            rows = session.exec(query.limit(ask.limit)).all()
        return [
            {
                "symbol": r.symbol,
                "regime": r.regime,
                "confidence": r.confidence,
                "source": r.source,
                "status": r.status,
            }
            for r in rows
        ]

    @activity.defn(name="list_mcp_tools")
    async def list_mcp_tools(self, ask: McpListAsk) -> McpToolList:
        """The tools an MCP server offers (read once per run, so the run's tools are fixed)."""
        async with McpClient(ask.url) as session:
            listed = await session.list_tools()
        return McpToolList(
            tools=[
                McpToolSpec(
                    server=ask.server,
                    name=tool.name,
                    description=tool.description or "",
                    input_schema=dict(tool.input_schema or {}),
                )
                for tool in listed.tools
            ]
        )

    @activity.defn(name="call_mcp_tool")
    async def call_mcp_tool(self, call: McpCall) -> str:
        """One MCP tool call; its text content (a tool error is returned as text too, for the
        model to read)."""
        async with McpClient(call.url) as session:
            result = await session.call_tool(call.tool, call.arguments)
        parts = [getattr(part, "text", "") for part in result.content]
        text = "\n".join(p for p in parts if p) or json.dumps(
            getattr(result, "structured_content", None) or {}
        )
        return f"error: {text}" if result.is_error else text
