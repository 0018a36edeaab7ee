"""The MCP server's tools: one per skill the fleet's bots sell over HTTP, plus ``list_bots`` and
``payment_status``. Each tool's arguments are a pydantic model, so its input schema is typed and
bad input is refused in one line before anything is called."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, TypeVar

from mcp.types import Tool, ToolAnnotations
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from agentfleet.bots.cards import SKILL_CARDS
from agentfleet.bots.model import NAME_PATTERN, ForecastRequest, Skill
from agentfleet.payments.terms import DEFAULT_PRICES, SELLABLE

_FORECAST_FIELDS = ForecastRequest.model_json_schema()["properties"]

BotName = Annotated[
    str,
    Field(
        pattern=NAME_PATTERN.pattern,
        max_length=48,
        description="The bot's name (list_bots shows the fleet).",
    ),
]
Symbol = Annotated[
    str,
    Field(
        pattern=_FORECAST_FIELDS["symbol"]["pattern"],
        description="Market symbol, e.g. BTCUSDT; the bot's own symbol when omitted.",
    ),
]
Horizon = Annotated[
    str,
    Field(
        pattern=_FORECAST_FIELDS["horizon"]["pattern"],
        description="How far ahead: minutes, hours or days, e.g. 15m, 1h, 1d.",
    ),
]
Window = Annotated[
    str,
    Field(
        pattern=r"^[1-9][0-9]*[smhdw]$",
        description="The backtest's span, e.g. 7d; the bot's lookback when omitted.",
    ),
]


class ToolArgs(BaseModel):
    """Arguments of a tool; unknown arguments are refused."""

    model_config = ConfigDict(extra="forbid")


class BotArgs(ToolArgs):
    bot: BotName


class ForecastArgs(BotArgs):
    symbol: Symbol | None = None
    horizon: Horizon = "1h"


class PerformanceArgs(BotArgs):
    window: Window | None = None


class PatternArgs(BotArgs):
    symbol: Symbol | None = None


class StatusArgs(BotArgs):
    pass


class NoArgs(ToolArgs):
    pass


class PaymentStatusArgs(ToolArgs):
    payment_id: str = Field(
        pattern=r"^payment-[0-9]+-0x[0-9a-f]{40}-0x[0-9a-f]{40}-0x[0-9a-f]{64}$",
        description="The payment's id, as a pending answer gave it.",
    )
    token: str | None = Field(
        default=None,
        max_length=200,
        description="The payment's result token (from the pending answer): with it the "
        "settled result comes back too.",
    )


@dataclass(frozen=True)
class SkillTool:
    """A tool that calls one skill of a bot through the fleet's HTTP gateway."""

    skill: Skill
    args: type[BotArgs]

    @property
    def name(self) -> str:
        return self.skill.value

    def description(self) -> str:
        card = SKILL_CARDS[self.skill]
        price = DEFAULT_PRICES[self.skill]
        if price == 0:
            cost = "Free by default (a bot's own prices may differ: list_bots)."
        else:
            cost = (
                f"Priced per bot (default {price} fUSD; list_bots shows each bot's price), "
                "paid with x402 (MCP transport): a call without payment answers the "
                "PaymentRequired (isError, structuredContent); call again with the signed "
                "PaymentPayload in _meta['x402/payment']; the settlement comes back in "
                "_meta['x402/payment-response']."
            )
        return f"{card['description']} {cost}"

    def tool(self) -> Tool:
        return Tool(
            name=self.name,
            title=str(SKILL_CARDS[self.skill]["name"]),
            description=self.description(),
            input_schema=self.args.model_json_schema(),
            annotations=ToolAnnotations(read_only_hint=True, open_world_hint=False),
        )


SKILL_ARGS: dict[Skill, type[BotArgs]] = {
    Skill.FORECAST: ForecastArgs,
    Skill.STATUS: StatusArgs,
    Skill.PERFORMANCE: PerformanceArgs,
    Skill.SHARE_PATTERN: PatternArgs,
}
SKILL_TOOLS: dict[str, SkillTool] = {
    skill.value: SkillTool(skill, SKILL_ARGS[skill])
    for skill in dict.fromkeys(s for skills in SELLABLE.values() for s in skills)
}
"""A tool per skill some built-in kind sells over HTTP (``agentfleet.payments.terms.SELLABLE``)."""

LIST_BOTS = Tool(
    name="list_bots",
    title="The fleet's bots",
    description="Every bot of the fleet: kind, state, whether it sells now, and the price of "
    "each skill it sells in fUSD (0: free; paid ones with x402).",
    input_schema=NoArgs.model_json_schema(),
    annotations=ToolAnnotations(read_only_hint=True, open_world_hint=False),
)
PAYMENT_STATUS = Tool(
    name="payment_status",
    title="A payment's state",
    description="The state of a payment still settling (a pending answer's payment_id): "
    "steps, status, transaction; its result too with the payment's token. Never pay again "
    "for a pending payment.",
    input_schema=PaymentStatusArgs.model_json_schema(),
    annotations=ToolAnnotations(read_only_hint=True, open_world_hint=False),
)
TOOLS: list[Tool] = [LIST_BOTS, *(t.tool() for t in SKILL_TOOLS.values()), PAYMENT_STATUS]


Args = TypeVar("Args", bound=ToolArgs)


class BadInput(Exception):
    """A tool call's input refused before anything is called (one line)."""


def read_args(model: type[Args], arguments: dict[str, Any] | None) -> Args:
    """``arguments`` as ``model``; BadInput (one line: the first problem) when they do not fit."""
    try:
        return model.model_validate(arguments or {})
    except ValidationError as exc:
        error = exc.errors()[0]
        where = ".".join(str(part) for part in error["loc"]) or "arguments"
        problem = error["msg"]
        if error["type"] == "string_pattern_mismatch":
            problem = f"{str(error['input'])[:60]!r} does not match {error['ctx']['pattern']}"
        raise BadInput(f"{where}: {problem}") from None
