"""What an agent bot is and what one run of it looks like.

An agent bot (kind ``agent``) has instructions, a model, the tools it may use, a daily budget in
fUSD that covers its model tokens and its purchases together (tokens priced by
``settings.model_prices``), and approval rules: which tool calls wait for a human. A run answers
one task (``fleet agent ask``, Telegram ``/ask``, an A2A text message, a Schedule) and is the
workflow ``AgentRunWorkflow`` (id :func:`run_workflow_id`).
"""

from __future__ import annotations

import hashlib
import re
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from agentfleet.agents.prices import ModelPrice
from agentfleet.bots.model import MONEY, Price, Skill, SpendingPolicy

TOKEN_UNITS = 10**6
"""fUSD has 6 decimals: budgets and costs are counted in these units."""
TASK_MAX = 4000
"""Longest task text a run takes (characters)."""
RUN_ID_PATTERN = re.compile(r"^agent-[a-z0-9-]{1,48}-[A-Za-z0-9:-]{6,80}$")
"""A run's workflow id: ``agent-{bot}-{key}``, and a Schedule's runs add ``-{time}`` to theirs."""


class AgentTool(StrEnum):
    """The built-in tools an agent may be allowed; each one is the fleet's durable path."""

    FORECAST = "forecast"
    """A forecast from one of the fleet's own bots (its skill, free inside the fleet)."""
    STATUS = "status"
    PERFORMANCE = "performance"
    PATTERNS = "patterns"
    """The patterns the fleet's bots shared (learning)."""
    FIND_SELLERS = "find_sellers"
    """Which bots sell a skill, at what price (their agent cards' x402 offers)."""
    BUY_SKILL = "buy_skill"
    """Buy another bot's skill call: ``BuyerPurchaseWorkflow`` (spending policy, x402, once)."""
    SUBMIT_POST = "submit_post"
    """Submit a post to the content pipeline (policy checks and human approval, always)."""
    SHARE_PATTERN = "share_pattern"


DEFAULT_TOOLS = list(AgentTool)
MCP_TOOL_PATTERN = re.compile(r"^mcp:[a-z0-9][a-z0-9_-]{0,39}$")
"""``mcp:<server>``: every tool of the MCP server of that name in ``settings.mcp_servers``."""
FREE_SKILL_TOOLS = {
    AgentTool.FORECAST: Skill.FORECAST,
    AgentTool.STATUS: Skill.STATUS,
    AgentTool.PERFORMANCE: Skill.PERFORMANCE,
}


class AgentBudget(BaseModel):
    model_config = ConfigDict(extra="forbid")

    per_day: Price = Decimal("1")
    """fUSD a UTC day for model tokens and purchases together."""


class ApprovalRules(BaseModel):
    """Which tool calls wait for a human, and for how long."""

    model_config = ConfigDict(extra="forbid")

    purchase_over: Price = Decimal("0.05")
    """A purchase whose price is above this (fUSD) waits for approval."""
    tools: list[str] = Field(default_factory=list)
    """Tools every call of which waits for approval (names as in ``tools``)."""
    budget_overrun: bool = False
    """An overrun waits for a human to raise the day's budget for this run (else it ends)."""
    timeout_s: int = Field(default=3600, ge=5, le=7 * 86400)
    """How long a call waits before it is refused (expired)."""
    remind_after_s: int = Field(default=900, ge=5, le=7 * 86400)
    """When the approval is still open after this, an ``approval_overdue`` alert goes out."""


class AgentParams(BaseModel):
    """An agent bot's parameters (``fleet bot create NAME --kind agent -p key=value``)."""

    model_config = ConfigDict(extra="forbid")

    instructions: str = Field(
        default=(
            "You are an analyst bot of an automated fleet. Answer the task with the tools you "
            "have; say that you are an automated agent."
        ),
        min_length=1,
        max_length=8000,
    )
    model: str = Field(default="gpt-4o-mini", min_length=1, max_length=100)
    """A model named in ``settings.model_prices`` (its price counts against the budget)."""
    tools: list[str] = Field(default_factory=lambda: [t.value for t in DEFAULT_TOOLS])
    """Built-in tools (:class:`AgentTool`) and ``mcp:<server>`` entries."""
    publisher: str | None = Field(default=None, pattern=r"^[a-z0-9](?:[a-z0-9-]{0,46}[a-z0-9])?$")
    """The publisher bot ``submit_post`` submits through; None: the fleet's first publisher."""
    max_turns: int = Field(default=8, ge=1, le=50)
    budget: AgentBudget = Field(default_factory=AgentBudget, json_schema_extra=MONEY)
    approvals: ApprovalRules = Field(default_factory=ApprovalRules, json_schema_extra=MONEY)
    prices: dict[Skill, Price] = Field(default_factory=dict, json_schema_extra=MONEY)
    spending: SpendingPolicy = Field(default_factory=SpendingPolicy, json_schema_extra=MONEY)

    @field_validator("tools")
    @classmethod
    def _known_tools(cls, tools: list[str]) -> list[str]:
        known = {t.value for t in AgentTool}
        for tool in tools:
            if tool not in known and not MCP_TOOL_PATTERN.match(tool):
                raise ValueError(
                    f"unknown tool {tool!r}: use {', '.join(sorted(known))} or mcp:<server>"
                )
        if len(set(tools)) != len(tools):
            raise ValueError("a tool is listed twice")
        return tools

    @model_validator(mode="after")
    def _approvals_name_its_tools(self) -> AgentParams:
        """Every tool ``approvals.tools`` names is one the agent has: a built-in one, or
        ``<server>__<tool>`` of an MCP server in its tools (a typo would wait for nobody)."""
        servers = set(self.mcp_servers())
        for tool in self.approvals.tools:
            server, sep, _ = tool.partition("__")
            if tool not in self.tools and not (sep and server in servers):
                raise ValueError(
                    f"approvals.tools: {tool!r} is not one of the agent's tools "
                    f"({', '.join(self.tools) or 'none'})"
                )
        return self

    def built_in(self) -> list[AgentTool]:
        return [AgentTool(t) for t in self.tools if not t.startswith("mcp:")]

    def mcp_servers(self) -> list[str]:
        return [t.removeprefix("mcp:") for t in self.tools if t.startswith("mcp:")]


class RunSource(StrEnum):
    CLI = "cli"
    TELEGRAM = "telegram"
    A2A = "a2a"
    SCHEDULE = "schedule"
    HTTP = "http"


class AgentRunRequest(BaseModel):
    """The input of ``AgentRunWorkflow``."""

    run_id: str
    bot: str
    task: str = Field(min_length=1, max_length=TASK_MAX)
    source: RunSource = RunSource.CLI
    requested_by: str = "operator"


class RunStatus(StrEnum):
    RUNNING = "running"
    WAITING_APPROVAL = "waiting_approval"
    COMPLETED = "completed"
    OVER_BUDGET = "over_budget"
    REFUSED = "refused"
    FAILED = "failed"


FINAL_RUN_STATES = frozenset(
    {RunStatus.COMPLETED, RunStatus.OVER_BUDGET, RunStatus.REFUSED, RunStatus.FAILED}
)


class RunStep(BaseModel):
    """One line of a run's progress: a model call, a tool call, an approval, a refusal."""

    at: datetime
    kind: str
    name: str
    detail: str = ""


class ApprovalAsk(BaseModel):
    """A tool call waiting for a human."""

    approval_id: str
    tool: str
    arguments: dict[str, Any] = Field(default_factory=dict)
    why: str
    asked_at: datetime
    expires_at: datetime


class ApprovalDecision(BaseModel):
    """``approve_tool`` / ``deny_tool`` (updates of the run; validated before anything moves)."""

    approval_id: str = Field(min_length=1, max_length=80)
    approver: str = Field(min_length=1, max_length=80)
    approved: bool
    note: str = Field(default="", max_length=500)


class AgentRunView(BaseModel):
    """A run as ``fleet agent show`` and the ``status`` query see it."""

    run_id: str
    bot: str
    task: str
    source: RunSource
    requested_by: str
    status: RunStatus = RunStatus.RUNNING
    answer: str | None = None
    reason: str | None = None
    steps: list[RunStep] = Field(default_factory=list)
    model_calls: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    token_units: int = 0
    """Cost of the run's model calls, in token units."""
    purchase_units: int = 0
    """What the run's settled purchases paid, in token units."""
    purchases: list[str] = Field(default_factory=list)
    posts: list[str] = Field(default_factory=list)
    pending: ApprovalAsk | None = None
    decisions: list[ApprovalDecision] = Field(default_factory=list)


def run_workflow_id(bot: str, key: str) -> str:
    """The run's workflow id: ``agent-{bot}-{key}``; ``key`` is random for a new ask, or derived
    from the caller's own id (an A2A message id) so a resend attaches to the same run."""
    return f"agent-{bot}-{key}"


def key_from(external_id: str) -> str:
    """A run key from an id a caller chose (A2A ``messageId``): hashed, so any string fits."""
    return hashlib.sha256(external_id.encode()).hexdigest()[:24]


def run_slug(run_id: str) -> str:
    """The run id in lowercase letters, digits and '-' (a scheduled run's id carries a time
    such as ``2026-12-07T10:00:00Z``): the stem of the ids of its purchases, holds and posts."""
    return re.sub(r"[^a-z0-9-]", "", run_id.lower())


def units_of(amount: Decimal) -> int:
    return int(amount * TOKEN_UNITS)


def fusd(units: int) -> str:
    """Units as fUSD text: ``1234`` -> ``"0.001234"``."""
    return f"{Decimal(units) / TOKEN_UNITS:.6f}"


class AgentContext(BaseModel):
    """What a run reads once at its start (``agent_context``): the bot, its parameters, the
    price of its model, where ``submit_post`` goes, the MCP servers its tools name."""

    bot: str
    owner: str
    disclosure: str
    params: AgentParams
    price: ModelPrice
    publisher: str | None = None
    channel: str | None = None
    mcp_urls: dict[str, str] = Field(default_factory=dict)
    max_output_tokens: int = 800


class BudgetAsk(BaseModel):
    """Hold ``amount`` units of the agent's day for one model call or purchase (``hold_id``)."""

    bot: str
    hold_id: str
    amount: int = Field(gt=0)


class UsageEntry(BaseModel):
    """One model call's usage, as recorded in the ``usage`` table."""

    run_id: str
    call_no: int
    bot: str
    model: str
    input_tokens: int = Field(ge=0)
    output_tokens: int = Field(ge=0)
    cost_units: int = Field(ge=0)


class Seller(BaseModel):
    bot: str
    skill: Skill
    price: str
    """fUSD per call."""
    units: int


class SellersAsk(BaseModel):
    skill: Skill
    buyer: str


class SellersAnswer(BaseModel):
    sellers: list[Seller] = Field(default_factory=list)


class PatternsAsk(BaseModel):
    symbol: str | None = None
    limit: int = Field(default=10, ge=1, le=50)


class McpToolSpec(BaseModel):
    server: str
    name: str
    description: str = ""
    input_schema: dict[str, Any] = Field(default_factory=dict)


class McpListAsk(BaseModel):
    server: str
    url: str


class McpToolList(BaseModel):
    tools: list[McpToolSpec] = Field(default_factory=list)


class McpCall(BaseModel):
    server: str
    url: str
    tool: str
    arguments: dict[str, Any] = Field(default_factory=dict)


class UsageDay(BaseModel):
    """One agent's model usage over a window (``fleet agent usage``)."""

    bot: str
    model_calls: int
    input_tokens: int
    output_tokens: int
    token_units: int
    purchase_units: int
    budget_units: int | None = None
    """``budget.per_day`` in units (None for a bot that is no longer an agent)."""
