"""What a bot is: its kinds, states, typed parameters, and the standard interface it answers.

Every bot answers ``forecast``, ``tune``, ``status``, ``performance``, ``share_pattern`` and
``receive_intelligence`` (the unified command system's interface). Built-in kinds run as
activities in our workers; ``remote`` bots run elsewhere and are called over HTTP (A2A card).
Parameters are a pydantic model per kind: ``configure`` validates against it and bad parameters
change nothing.
"""

from __future__ import annotations

import json
import re
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, HttpUrl

from agentfleet.netguard import UrlRule
from agentfleet.payments.spending import SpendingDay

NAME_PATTERN = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,46}[a-z0-9])?$")


class BotKind(StrEnum):
    FORECASTER = "forecaster"
    PUBLISHER = "publisher"
    REMOTE = "remote"
    AGENT = "agent"


class BotStatus(StrEnum):
    PROVISIONING = "provisioning"
    REGISTERING = "registering"
    ACTIVE = "active"
    PAUSED = "paused"
    DEGRADED = "degraded"
    RETIRING = "retiring"
    RETIRED = "retired"
    FAILED = "failed"


class Skill(StrEnum):
    FORECAST = "forecast"
    TUNE = "tune"
    STATUS = "status"
    PERFORMANCE = "performance"
    SHARE_PATTERN = "share_pattern"
    RECEIVE_INTELLIGENCE = "receive_intelligence"


MONEY: dict[str, Any] = {"guarded": "money"}
"""Marks a parameter that moves or prices money (:func:`guarded_params`)."""
URL: dict[str, Any] = {"guarded": "url"}
"""Marks a parameter naming where the fleet calls out to; checked by :class:`UrlRule`."""

Price = Annotated[Decimal, Field(ge=0, max_digits=18, decimal_places=6)]
"""fUSD per call (at most 6 decimals, the token's)."""
MAX_VALIDITY_CEILING_S = 3600
"""No spending policy signs an authorization a seller asked to keep valid longer than this."""


class SpendingPolicy(BaseModel):
    """What a bot may spend buying other bots' skills (``fleet pay``): per call, per UTC day,
    in which assets, how trusted the seller must be, and how long an authorization stays valid."""

    model_config = ConfigDict(extra="forbid")

    per_call: Price = Decimal("0.1")
    per_day: Price = Decimal("1")
    assets: list[str] = Field(default_factory=list)
    """Token addresses it pays in; empty: FleetUSD of the fleet's deployment only."""
    reputation_floor: Decimal | None = Field(default=None, ge=0, le=100)
    """Least average ERC-8004 feedback (0-100) from the fleet's own bots; None: no check."""
    max_validity_s: int = Field(default=1800, ge=1, le=MAX_VALIDITY_CEILING_S)
    """Longest validity window (the seller's ``maxTimeoutSeconds``) it signs; a longer ask is
    refused. The default covers what the fleet's own sellers ask on every chain profile."""


class ForecasterParams(BaseModel):
    """Exponential moving average over the bot's price series (a baseline until learning)."""

    model_config = ConfigDict(extra="forbid")

    symbol: str = Field(default="BTCUSDT", pattern=r"^[A-Z0-9]{2,20}$")
    alpha: float = Field(default=0.3, gt=0, le=1)
    lookback: int = Field(default=200, ge=10, le=100_000)
    prices: dict[Skill, Price] = Field(default_factory=dict, json_schema_extra=MONEY)
    """fUSD per call of a skill sold over HTTP with x402 (defaults: agentfleet.payments.terms)."""
    spending: SpendingPolicy = Field(default_factory=SpendingPolicy, json_schema_extra=MONEY)


class PublisherParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    channel: str | None = None
    max_per_hour: int = Field(default=30, ge=1, le=3600)
    prices: dict[Skill, Price] = Field(default_factory=dict, json_schema_extra=MONEY)
    spending: SpendingPolicy = Field(default_factory=SpendingPolicy, json_schema_extra=MONEY)


class RemoteParams(BaseModel):
    """A bot that runs elsewhere: ``url`` is its A2A agent card (or the base it is served at)."""

    model_config = ConfigDict(extra="forbid")

    url: HttpUrl = Field(json_schema_extra=URL)
    timeout_s: float = Field(default=5.0, gt=0, le=120)


def coerce_cli_params(pairs: list[str]) -> dict[str, Any]:
    """``["alpha=0.3", "symbol=ETHUSDT"]`` -> dict; values stay strings (the model coerces),
    except a JSON object or list (``prices={"forecast": "0.02"}``)."""
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"parameter {pair!r} is not key=value")
        value = value.strip()
        if value[:1] in ("{", "["):
            try:
                out[key.strip()] = json.loads(value)
            except ValueError:
                raise ValueError(f"parameter {key.strip()}: {value!r} is not JSON") from None
            continue
        out[key.strip()] = value
    return out


def check_name(name: str) -> str:
    if not NAME_PATTERN.match(name):
        raise ValueError(
            f"bot name {name!r} must be a slug: lowercase letters, digits and '-', 1-48 chars"
        )
    return name


def bot_workflow_id(name: str) -> str:
    """The bot's entity workflow id: its business key."""
    return f"bot-{name}"


def bot_schedule_prefix(name: str) -> str:
    """Schedules whose id starts with this belong to the bot (deleted when it retires)."""
    return f"{bot_workflow_id(name)}-"


def disclosure_for(owner: str) -> str:
    return f"Automated agent operated by {owner}."


class BotSpec(BaseModel):
    """What the operator asked for when creating the bot."""

    name: str
    kind: BotKind
    owner: str = "fleet"
    description: str = ""
    params: dict[str, Any] = Field(default_factory=dict)

    @property
    def disclosure(self) -> str:
        return disclosure_for(self.owner)


class BotEvent(BaseModel):
    at: datetime
    event: str
    detail: str = ""


class BotView(BaseModel):
    """A bot as ``status`` shows it (addresses only, never keys)."""

    name: str
    kind: BotKind
    owner: str
    description: str
    disclosure: str
    status: BotStatus
    reason: str | None = None
    params: dict[str, Any] = Field(default_factory=dict)
    address: str | None = None
    agent_id: int | None = None
    model_version: str | None = None
    created_at: datetime | None = None
    commands_handled: int = 0
    errors: int = 0


class ForecastRequest(BaseModel):
    symbol: str = Field(pattern=r"^[A-Z0-9]{2,20}$")
    horizon: str = Field(default="1h", pattern=r"^[1-9][0-9]*[mhd]$")


class Forecast(BaseModel):
    bot: str
    symbol: str
    horizon: str
    value: float
    last: float
    model: str
    synthetic_data: bool = True
    disclosure: str = ""


class Performance(BaseModel):
    bot: str
    window: str
    forecasts: int
    mean_abs_error: float | None = None
    hit_rate: float | None = None


class Pattern(BaseModel):
    symbol: str
    regime: str
    confidence: float = Field(ge=0, le=1)
    source: str | None = None


class BotRef(BaseModel):
    """Enough of a bot to call one of its skills (from the ``bots`` table or the entity)."""

    name: str
    kind: BotKind
    status: BotStatus
    owner: str = "fleet"
    params: dict[str, Any] = Field(default_factory=dict)


class SkillCall(BaseModel):
    bot: BotRef
    skill: Skill
    args: dict[str, Any] = Field(default_factory=dict)


class SkillResult(BaseModel):
    bot: str
    skill: Skill
    ok: bool
    data: dict[str, Any] = Field(default_factory=dict)
    error: str | None = None
    elapsed_ms: float = 0.0


class SkillBatch(BaseModel):
    """Many calls in one activity: built-in skills are cheap, a task per bot is not."""

    calls: list[SkillCall]
    per_call_timeout_s: float = 5.0


class SkillBatchResult(BaseModel):
    results: list[SkillResult]


class BotState(BaseModel):
    """What the bot entity carries across continue-as-new."""

    spec: BotSpec
    status: BotStatus = BotStatus.PROVISIONING
    reason: str | None = None
    failed_step: BotStatus | None = None
    params: dict[str, Any] = Field(default_factory=dict)
    address: str | None = None
    agent_id: int | None = None
    model_version: str | None = None
    created_at: datetime | None = None
    history: list[BotEvent] = Field(default_factory=list)
    commands_handled: int = 0
    errors: int = 0
    recent_updates: list[str] = Field(default_factory=list)
    """Ids of the latest updates: one the server delivers again after continue-as-new (a new run
    does not know the ids its predecessor accepted) is answered, not applied twice."""
    spending: SpendingDay | None = None
    """Today's budget as a buyer: spent and held (see agentfleet.payments.spending)."""
    budget: SpendingDay | None = None
    """Today's budget as an agent: model calls and purchases, spent and held."""


class BotLifecycleInput(BaseModel):
    spec: BotSpec
    state: BotState | None = None
    """Set when the entity continues as new."""


class ChainContext(BaseModel):
    """What a bot needs to know about the chain: where our contracts are, who funds it."""

    chain_id: int
    is_dev: bool
    fleet_usd: str
    identity_registry: str
    identity_registry_block: int = 0
    """Where the registry's history starts: event scans begin here, not at genesis."""
    funder: str | None = None
    fund_wei: int = 10**18
    fund_fusd_units: int = 100 * 10**6


class WalletRequest(BaseModel):
    bot: str


class Wallet(BaseModel):
    bot: str
    address: str


class FundingPlan(BaseModel):
    bot: str
    address: str
    context: ChainContext


class RegistrationQuery(BaseModel):
    bot: str
    address: str
    context: ChainContext


class Registration(BaseModel):
    agent_id: int | None
    agent_wallet: str | None = None


class RegistrationTx(BaseModel):
    to: str
    data: str
    agent_uri: str


class ReceiptQuery(BaseModel):
    tx_hash: str
    context: ChainContext


class BotRecordUpdate(BaseModel):
    """Upsert of the ``bots`` row (and one audit row per transition)."""

    name: str
    kind: BotKind
    owner: str
    status: BotStatus
    description: str = ""
    params: dict[str, Any] = Field(default_factory=dict)
    address: str | None = None
    agent_id: int | None = None
    reason: str | None = None
    model_version: str | None = None
    event: str = ""
    workflow_id: str | None = None


class ConfigureRequest(BaseModel):
    params: dict[str, Any]
    urls: UrlRule | None = None
    """The caller's fleet's rule for URL parameters (``UrlRule.of(settings)``); None: the
    validator applies the widest rule any fleet has (:data:`agentfleet.netguard.ANY_FLEET`)."""


class RetireRequest(BaseModel):
    reason: str = "retired by operator"


class BotHistory(BaseModel):
    events: list[BotEvent]
