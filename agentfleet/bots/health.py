"""Inputs and results of the fleet health check (FleetHealthWorkflow and its activities)."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from agentfleet.bots.model import BotRef, BotStatus, ChainContext


class HealthCheck(BaseModel):
    """What one health run checks against (the schedule starts it with these defaults)."""

    model_config = ConfigDict(extra="forbid")

    min_gas_wei: int = Field(default=10**15, ge=0)
    """A bot with less native balance than this is degraded (it cannot pay for gas)."""
    max_error_rate: float = Field(default=0.5, ge=0, le=1)
    min_commands: int = Field(default=10, ge=1)
    """The error rate counts once the bot has handled this many commands."""
    batch_size: int = Field(default=50, ge=1, le=1000)
    parallel_batches: int = Field(default=10, ge=1, le=200)
    per_bot_timeout_s: float = Field(default=10.0, gt=0, le=300)
    model_tolerance: float = Field(default=0.0, ge=0)
    """A champion model worse than its parent on fresh data by more than this (its primary
    metric, absolute) is rolled back to the parent."""


class HealthTarget(BaseModel):
    bot: BotRef
    address: str | None = None
    agent_id: int | None = None


class HealthTargets(BaseModel):
    bots: list[HealthTarget] = Field(default_factory=list)


class HealthBatch(BaseModel):
    targets: list[HealthTarget]
    context: ChainContext
    check: HealthCheck


class BotHealth(BaseModel):
    """One bot's verdict: healthy, or not with every reason (each one line)."""

    name: str
    status: BotStatus
    """The bot's status when checked (its entity's answer, else its row)."""
    healthy: bool
    reasons: list[str] = Field(default_factory=list)
    gas_wei: int | None = None
    fusd_units: int | None = None
    """Informational: never a reason on its own."""
    skill_ms: float | None = None
    errors: int | None = None
    commands_handled: int | None = None


class HealthBatchResult(BaseModel):
    results: list[BotHealth]


class FleetHealthSummary(BaseModel):
    """What a health run found and changed. ``reasons`` holds one line per bot that is not
    healthy (or was not checked)."""

    checked: int = 0
    healthy: int = 0
    degraded: list[str] = Field(default_factory=list)
    """Bots this run moved from active to degraded."""
    recovered: list[str] = Field(default_factory=list)
    """Bots this run moved from degraded back to active."""
    still_degraded: list[str] = Field(default_factory=list)
    unhealthy_other: list[str] = Field(default_factory=list)
    """Unhealthy bots in a state the verdict does not change (e.g. paused meanwhile)."""
    unchecked: list[str] = Field(default_factory=list)
    reasons: dict[str, str] = Field(default_factory=dict)
    signal_failures: dict[str, str] = Field(default_factory=dict)
    models_rolled_back: list[str] = Field(default_factory=list)
    """``digits: digits-v7 -> digits-v6 (accuracy 0.81 < 0.93)``: champions that did worse
    than their parent on fresh data, rolled back."""
    started_at: datetime | None = None
    finished_at: datetime | None = None


class ModelRollback(BaseModel):
    task: str
    from_version: str
    to_version: str
    reason: str
    bots: list[str] = Field(default_factory=list)
    """The bots that serve the task's models (each is told its new model)."""


class ModelHealth(BaseModel):
    checked: list[str] = Field(default_factory=list)
    """Tasks whose champion was compared with its parent."""
    rolled_back: list[ModelRollback] = Field(default_factory=list)
