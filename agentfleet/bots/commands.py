"""Fleet commands: one skill sent to many bots, answered as one aggregated result.

``FleetCommandWorkflow`` (id ``command-{command_id}``) resolves the targets (all bots, some kinds,
a list of names, or a visibility query on the bots' search attributes), answers at once for the
bots that cannot be called (paused, retired, provisioning, failed ..., and names that are no bot),
and sends the others in batches to the ``run_skill_batch`` activity, several batches at a time.
Every call is bounded by ``per_bot_timeout_s``, so a slow or failing bot never blocks the answer;
it is reported as failed with the reason.

A caller may rely on:

- the same ``command_id`` started twice (concurrently, or after it finished) runs once and
  answers the same :class:`FleetCommandResult` (``clients.commands.run_command``);
- ``clients.commands.command_progress`` while it runs (the CLI's live progress bar);
- the summary being computed from the answers only (pure functions below, used by the workflow).
"""

from __future__ import annotations

import json
import statistics
from collections import Counter
from collections.abc import Iterable, Sequence
from datetime import datetime
from enum import StrEnum
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from agentfleet.bots.model import (
    BotKind,
    BotRef,
    BotStatus,
    Forecast,
    Performance,
    Skill,
)

M = TypeVar("M", bound=BaseModel)

BOT_WORKFLOW_TYPE = "BotLifecycleWorkflow"
COMMAND_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$"
CALLABLE_STATUSES = frozenset({BotStatus.ACTIVE, BotStatus.DEGRADED})
"""Bots in these states are called; every other state is answered without calling the bot."""
NAMES_SHOWN = 5
"""Names a target description lists before it says how many more (memo, result, CLI)."""
UNKNOWN_STATUS = "unknown"
"""The status of a target name that is no bot."""


def command_workflow_id(command_id: str) -> str:
    return f"command-{command_id}"


class Targets(BaseModel):
    """Which bots a command goes to: exactly one of ``all``, ``kinds``, ``names``, ``query``.

    ``query`` is a Temporal visibility query on the bots' search attributes (``BotKind``,
    ``BotStatus``, ``BotOwner``, ``BotName``), e.g. ``BotKind = "forecaster" AND BotOwner =
    "desk-1"``; it is combined with ``WorkflowType = "BotLifecycleWorkflow"``.
    """

    model_config = ConfigDict(extra="forbid")

    all: bool = False
    kinds: list[BotKind] = Field(default_factory=list)
    names: list[str] = Field(default_factory=list)
    query: str | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> Targets:
        chosen = [
            self.all,
            bool(self.kinds),
            bool(self.names),
            bool(self.query and self.query.strip()),
        ]
        if sum(chosen) != 1:
            raise ValueError("choose exactly one target: all, kinds, names or a query")
        return self

    def describe(self) -> str:
        if self.all:
            return "all bots"
        if self.kinds:
            return "kind " + ", ".join(kind.value for kind in self.kinds)
        if self.names:
            shown = ", ".join(self.names[:NAMES_SHOWN])
            more = len(self.names) - NAMES_SHOWN
            return f"bots {shown}" + (f" and {more} more" if more > 0 else "")
        return f"query {self.query}"


class SummaryOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    flat_tolerance: float = Field(default=0.0, ge=0, lt=1)
    """A forecast within this fraction of the bot's last price counts as ``flat``, not up/down."""


class FleetCommand(BaseModel):
    """One skill for many bots. ``concurrency`` calls go in one ``run_skill_batch`` activity
    (run at once there); up to ``parallel_batches`` such activities are in flight at once."""

    model_config = ConfigDict(extra="forbid")

    command_id: str = Field(pattern=COMMAND_ID_PATTERN)
    skill: Skill
    args: dict[str, Any] = Field(default_factory=dict)
    targets: Targets
    per_bot_timeout_s: float = Field(default=3.0, gt=0, le=600)
    concurrency: int = Field(default=50, ge=1, le=1000)
    parallel_batches: int = Field(default=20, ge=1, le=200)
    summary: SummaryOptions = Field(default_factory=SummaryOptions)


class AnswerOutcome(StrEnum):
    OK = "ok"
    FAILED = "failed"
    """Called, and the call failed or timed out (``error`` says why)."""
    SKIPPED = "skipped"
    """Not called: the bot's status does not take commands (``status`` says which)."""
    UNKNOWN = "unknown"
    """A target name with no bot."""


class BotAnswer(BaseModel):
    name: str
    kind: BotKind | None = None
    status: str
    """The bot's status when the command resolved it (a BotStatus value), or ``unknown``."""
    outcome: AnswerOutcome
    ok: bool = False
    data: dict[str, Any] = Field(default_factory=dict)
    error: str | None = None
    elapsed_ms: float = 0.0


class BotIssue(BaseModel):
    name: str
    status: str
    reason: str


class CommandPhase(StrEnum):
    RESOLVING = "resolving"
    CALLING = "calling"
    DONE = "done"


class CommandProgress(BaseModel):
    """What the ``progress`` query answers while the command runs (and after)."""

    command_id: str
    phase: CommandPhase
    total: int = 0
    """Targets resolved so far (0 while resolving), unknown names included."""
    answered: int = 0
    ok: int = 0
    failed: int = 0
    skipped: int = 0
    unknown: int = 0
    pending: int = 0
    by_status: dict[str, int] = Field(default_factory=dict)
    """Answers so far by the bots' status (``active``, ``paused`` ..., ``unknown``)."""
    started_at: datetime | None = None


class Direction(StrEnum):
    UP = "up"
    DOWN = "down"
    FLAT = "flat"


class ForecastSummary(BaseModel):
    """Statistics over the successful forecasts (population statistics: the bots asked)."""

    count: int
    mean: float
    median: float
    min: float
    max: float
    spread: float
    """max - min."""
    stdev: float
    """Population standard deviation (0 for one forecast)."""
    up: int
    down: int
    flat: int
    direction: Direction | None
    """The majority direction relative to each bot's last price; None on a tie."""
    agreement: float
    """Share of forecasts on the most common direction (1.0: all agree)."""


class PerformanceSummary(BaseModel):
    bots: int
    forecasts: int
    mean_abs_error: float | None = None
    """Mean of the bots' mean absolute errors (bots without one left out)."""
    hit_rate: float | None = None
    """Mean of the bots' hit rates (bots without one left out)."""


class CommandSummary(BaseModel):
    ok: int = 0
    failed: int = 0
    skipped: int = 0
    unknown: int = 0
    by_status: dict[str, int] = Field(default_factory=dict)
    forecast: ForecastSummary | None = None
    performance: PerformanceSummary | None = None


class FleetCommandResult(BaseModel):
    command_id: str
    skill: Skill
    targets: str
    answers: list[BotAnswer] = Field(default_factory=list)
    summary: CommandSummary = Field(default_factory=CommandSummary)
    failed: list[BotIssue] = Field(default_factory=list)
    skipped: list[BotIssue] = Field(default_factory=list)
    unknown: list[str] = Field(default_factory=list)
    started_at: datetime
    finished_at: datetime
    elapsed_s: float


class ResolveTargets(BaseModel):
    targets: Targets


class ResolvedTargets(BaseModel):
    bots: list[BotRef] = Field(default_factory=list)
    unknown: list[str] = Field(default_factory=list)
    """Target names (or query matches) with no row in the ``bots`` table."""
    reasons: dict[str, str] = Field(default_factory=dict)
    """The recorded reason of bots that have one (why paused, failed ...)."""


def direction_of(value: float, last: float, tolerance: float = 0.0) -> Direction:
    """Up/down/flat of ``value`` against ``last``; within ``tolerance`` (a fraction) is flat."""
    band = abs(last) * tolerance
    if value > last + band:
        return Direction.UP
    if value < last - band:
        return Direction.DOWN
    return Direction.FLAT


def describe_answer(skill: Skill, data: dict[str, Any]) -> str:
    """One short line for a bot's answer (the CLI's table and the Telegram command center)."""
    if skill is Skill.FORECAST and {"value", "last"} <= data.keys():
        value, last = float(data["value"]), float(data["last"])
        return f"{value:,.4f} (last {last:,.4f}, {direction_of(value, last).value})"
    if skill is Skill.PERFORMANCE and "forecasts" in data:
        hit, mae = data.get("hit_rate"), data.get("mean_abs_error")
        parts = [f"{data['forecasts']} forecasts"]
        parts += [f"hit {hit:.0%}"] if hit is not None else []
        parts += [f"MAE {mae:,.4f}"] if mae is not None else []
        return ", ".join(parts)
    if skill is Skill.STATUS and "status" in data:
        extra = {k: v for k, v in data.items() if k in {"commands_handled", "errors"}}
        return str(data["status"]) + "".join(f", {k} {v}" for k, v in extra.items())
    if skill is Skill.TUNE and "changes" in data:
        changes = data.get("changes") or {}
        now, then = data.get("current_mae"), data.get("suggested_mae")
        shown = ", ".join(f"{k}={v}" for k, v in changes.items()) or "keep current"
        if now is not None and then is not None:
            shown += f" (MAE {now:,.4f} -> {then:,.4f})"
        return shown
    text = json.dumps(data, default=str)
    return text if len(text) <= 60 else text[:57] + "..."


def summarize_forecasts(
    forecasts: Sequence[Forecast], tolerance: float = 0.0
) -> ForecastSummary | None:
    """Mean, median, spread and agreement of ``forecasts``; None when there are none."""
    if not forecasts:
        return None
    values = [f.value for f in forecasts]
    directions = Counter(direction_of(f.value, f.last, tolerance) for f in forecasts)
    ranked = directions.most_common()
    top = ranked[0][1]
    leaders = [direction for direction, count in ranked if count == top]
    return ForecastSummary(
        count=len(values),
        mean=statistics.fmean(values),
        median=statistics.median(values),
        min=min(values),
        max=max(values),
        spread=max(values) - min(values),
        stdev=statistics.pstdev(values),
        up=directions[Direction.UP],
        down=directions[Direction.DOWN],
        flat=directions[Direction.FLAT],
        direction=leaders[0] if len(leaders) == 1 else None,
        agreement=top / len(values),
    )


def summarize_performance(reports: Sequence[Performance]) -> PerformanceSummary | None:
    if not reports:
        return None
    errors = [r.mean_abs_error for r in reports if r.mean_abs_error is not None]
    hits = [r.hit_rate for r in reports if r.hit_rate is not None]
    return PerformanceSummary(
        bots=len(reports),
        forecasts=sum(r.forecasts for r in reports),
        mean_abs_error=statistics.fmean(errors) if errors else None,
        hit_rate=statistics.fmean(hits) if hits else None,
    )


def _parsed(model: type[M], answers: Iterable[BotAnswer]) -> list[M]:
    parsed: list[M] = []
    for answer in answers:
        if not answer.ok:
            continue
        try:
            parsed.append(model.model_validate(answer.data))
        except ValidationError:
            continue  # an answer of another shape counts as ok but not in the statistics
    return parsed


def summarize(
    skill: Skill, answers: Sequence[BotAnswer], options: SummaryOptions | None = None
) -> CommandSummary:
    """The summary of a command's answers (deterministic: the workflow calls it)."""
    options = options or SummaryOptions()
    outcomes = Counter(answer.outcome for answer in answers)
    summary = CommandSummary(
        ok=outcomes[AnswerOutcome.OK],
        failed=outcomes[AnswerOutcome.FAILED],
        skipped=outcomes[AnswerOutcome.SKIPPED],
        unknown=outcomes[AnswerOutcome.UNKNOWN],
        by_status=dict(sorted(Counter(answer.status for answer in answers).items())),
    )
    if skill is Skill.FORECAST:
        summary.forecast = summarize_forecasts(_parsed(Forecast, answers), options.flat_tolerance)
    elif skill is Skill.PERFORMANCE:
        summary.performance = summarize_performance(_parsed(Performance, answers))
    return summary
