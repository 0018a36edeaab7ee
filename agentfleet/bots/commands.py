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
- the summary being computed from the answers only (pure functions below, used by the workflow
  and, batch by batch, by the activity that answers a stored command);
- every answer in ``FleetCommandResult.answers`` when the command reached at most
  ``FLEET_COMMAND_INLINE_ANSWERS`` bots; beyond, ``answers`` is empty and ``answers_ref`` says where
  they are (``clients.commands.answers_page`` reads them), so the result stays a few KB whatever
  the fleet's size.
"""

from __future__ import annotations

import json
import math
import statistics
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

BOT_WORKFLOW_TYPE = "BotLifecycleWorkflow"
COMMAND_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$"
CALLABLE_STATUSES = frozenset({BotStatus.ACTIVE, BotStatus.DEGRADED})
"""Bots in these states are called; every other state is answered without calling the bot."""
NAMES_SHOWN = 5
"""Names a target description lists before it says how many more (memo, result, CLI)."""
UNKNOWN_STATUS = "unknown"
"""The status of a target name that is no bot."""
ISSUES_KEPT = 100
"""Failed, skipped and unknown bots a stored command's result names, of each (counts: all)."""


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


AnswerRow = dict[str, Any]
"""A :class:`BotAnswer` as plain values (what a large command's batch builds and stores: a
model per bot costs more than the bot's forecast)."""


def answer_row(
    name: str,
    kind: str | None,
    status: str,
    outcome: AnswerOutcome,
    *,
    ok: bool = False,
    data: dict[str, Any] | None = None,
    error: str | None = None,
    elapsed_ms: float = 0.0,
) -> AnswerRow:
    return {
        "name": name,
        "kind": kind,
        "status": status,
        "outcome": outcome,
        "ok": ok,
        "data": {} if data is None else data,
        "error": error,
        "elapsed_ms": elapsed_ms,
    }


def skipped_row(name: str, kind: str, status: str, reason: str | None) -> AnswerRow:
    """The answer of a bot whose status takes no commands (``reason``: why, as recorded)."""
    error = f"bot is {status}" + (f": {reason}" if reason else "")
    return answer_row(
        name, kind, status, AnswerOutcome.SKIPPED, data={"status": status}, error=error
    )


def unknown_row(name: str) -> AnswerRow:
    """The answer of a target name that is no bot."""
    return answer_row(name, None, UNKNOWN_STATUS, AnswerOutcome.UNKNOWN, error="no such bot")


def called_row(
    name: str,
    kind: str,
    status: str,
    ok: bool,
    data: dict[str, Any],
    error: str | None,
    elapsed_ms: float,
) -> AnswerRow:
    """The answer of a bot that was called (``kind`` and ``status``: its values): its skill's
    outcome."""
    if ok:
        return answer_row(
            name, kind, status, AnswerOutcome.OK, ok=True, data=data, elapsed_ms=elapsed_ms
        )
    error = error or "failed without a reason"
    return answer_row(
        name, kind, status, AnswerOutcome.FAILED, data=data, error=error, elapsed_ms=elapsed_ms
    )


def failed_row(name: str, kind: str, status: str, reason: str, elapsed_ms: float) -> AnswerRow:
    """The answer of a bot whose call failed with no answer of its own (its batch failed)."""
    return answer_row(name, kind, status, AnswerOutcome.FAILED, error=reason, elapsed_ms=elapsed_ms)


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


class AnswersRef(BaseModel):
    """Where a stored command's answers are: the ``command_answers`` table, one row per batch,
    keyed by command id, workflow run id and batch (``agentfleet.bots.command_store``)."""

    command_id: str
    run_id: str
    batches: int
    answers: int
    """Answers stored (bots in batches that failed as a whole have none)."""


class BatchFailure(BaseModel):
    """A batch that failed as a whole (retries spent): its bots count as failed and have no
    stored answer; they are the answer positions ``position`` to ``position + bots - 1``."""

    batch: int
    position: int
    bots: int
    first: str
    last: str
    reason: str


class FleetCommandResult(BaseModel):
    command_id: str
    skill: Skill
    targets: str
    answers: list[BotAnswer] = Field(default_factory=list)
    """Every answer, in target order, when they are inline (``answers_ref`` is None)."""
    summary: CommandSummary = Field(default_factory=CommandSummary)
    failed: list[BotIssue] = Field(default_factory=list)
    skipped: list[BotIssue] = Field(default_factory=list)
    unknown: list[str] = Field(default_factory=list)
    """Failed, skipped and unknown bots: all of them with inline answers, else the first
    :data:`ISSUES_KEPT` of each (the summary counts them all)."""
    started_at: datetime
    finished_at: datetime
    elapsed_s: float
    total: int = 0
    """Bots the command reached (unknown names included); 0 in results of older versions."""
    answers_ref: AnswersRef | None = None
    """Set when the answers are stored instead of inline."""
    failed_batches: list[BatchFailure] = Field(default_factory=list)

    @property
    def answer_count(self) -> int:
        """How many answers can be read, inline or stored."""
        return len(self.answers) if self.answers_ref is None else self.answers_ref.answers


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


def forecast_of(data: dict[str, Any]) -> Forecast | None:
    """``data`` as a forecast, or None when it has another shape (ok, but not in statistics)."""
    try:
        return Forecast.model_validate(data)
    except ValidationError:
        return None


def performance_of(data: dict[str, Any]) -> Performance | None:
    try:
        return Performance.model_validate(data)
    except ValidationError:
        return None


FORECAST_REQUIRED = frozenset(
    name for name, field in Forecast.model_fields.items() if field.is_required()
)


class ForecastTally(BaseModel):
    """The forecasts of some answers: their values (the median needs them all) and directions."""

    values: list[float] = Field(default_factory=list)
    up: int = 0
    down: int = 0
    flat: int = 0

    def add_data(self, data: dict[str, Any], tolerance: float) -> None:
        """Count a forecast answer's data; data of another shape is left out."""
        value, last = data.get("value"), data.get("last")
        if type(value) is float and type(last) is float and data.keys() >= FORECAST_REQUIRED:
            # What forecasters (and remote bots' checked replies) give: no model to validate.
            self._add(value, last, tolerance)
            return
        forecast = forecast_of(data)
        if forecast is not None:
            self._add(forecast.value, forecast.last, tolerance)

    def add(self, forecast: Forecast, tolerance: float) -> None:
        self._add(forecast.value, forecast.last, tolerance)

    def _add(self, value: float, last: float, tolerance: float) -> None:
        self.values.append(value)
        direction = direction_of(value, last, tolerance)
        if direction is Direction.UP:
            self.up += 1
        elif direction is Direction.DOWN:
            self.down += 1
        else:
            self.flat += 1

    def merge(self, other: ForecastTally) -> None:
        self.values += other.values
        self.up += other.up
        self.down += other.down
        self.flat += other.flat

    def summary(self) -> ForecastSummary | None:
        values = self.values
        if not values:
            return None
        directions = {Direction.UP: self.up, Direction.DOWN: self.down, Direction.FLAT: self.flat}
        top = max(directions.values())
        leaders = [direction for direction, count in directions.items() if count == top]
        mean = statistics.fmean(values)
        return ForecastSummary(
            count=len(values),
            mean=mean,
            median=statistics.median(values),
            min=min(values),
            max=max(values),
            spread=max(values) - min(values),
            stdev=math.sqrt(math.fsum((value - mean) ** 2 for value in values) / len(values)),
            up=self.up,
            down=self.down,
            flat=self.flat,
            direction=leaders[0] if len(leaders) == 1 else None,
            agreement=top / len(values),
        )


class PerformanceTally(BaseModel):
    """Sums of some performance reports (means are taken at the end)."""

    bots: int = 0
    forecasts: int = 0
    error_sum: float = 0.0
    errors: int = 0
    hit_sum: float = 0.0
    hits: int = 0

    def add(self, report: Performance) -> None:
        self.bots += 1
        self.forecasts += report.forecasts
        if report.mean_abs_error is not None:
            self.error_sum += report.mean_abs_error
            self.errors += 1
        if report.hit_rate is not None:
            self.hit_sum += report.hit_rate
            self.hits += 1

    def merge(self, other: PerformanceTally) -> None:
        self.bots += other.bots
        self.forecasts += other.forecasts
        self.error_sum += other.error_sum
        self.errors += other.errors
        self.hit_sum += other.hit_sum
        self.hits += other.hits

    def summary(self) -> PerformanceSummary | None:
        if not self.bots:
            return None
        return PerformanceSummary(
            bots=self.bots,
            forecasts=self.forecasts,
            mean_abs_error=self.error_sum / self.errors if self.errors else None,
            hit_rate=self.hit_sum / self.hits if self.hits else None,
        )


class AnswerTally(BaseModel):
    """Counts and statistics of some answers (one batch's, or a whole command's): what the
    summary is made of, small enough to travel in a payload whatever the batch's size, and
    mergeable batch by batch. ``keep`` bounds the bots named per kind of issue (None: all)."""

    ok: int = 0
    failed: int = 0
    skipped: int = 0
    unknown: int = 0
    by_status: dict[str, int] = Field(default_factory=dict)
    failed_bots: list[BotIssue] = Field(default_factory=list)
    skipped_bots: list[BotIssue] = Field(default_factory=list)
    unknown_bots: list[str] = Field(default_factory=list)
    forecast: ForecastTally = Field(default_factory=ForecastTally)
    performance: PerformanceTally = Field(default_factory=PerformanceTally)

    @property
    def answered(self) -> int:
        return self.ok + self.failed + self.skipped + self.unknown

    def add(
        self,
        skill: Skill,
        row: AnswerRow,
        options: SummaryOptions | None = None,
        keep: int | None = None,
    ) -> None:
        """Count one answer (a :data:`AnswerRow`, or a :class:`BotAnswer`'s ``model_dump()``)."""
        status, outcome = row["status"], row["outcome"]
        self.by_status[status] = self.by_status.get(status, 0) + 1
        if outcome == AnswerOutcome.OK:
            self.ok += 1
            if skill is Skill.FORECAST:
                tolerance = (options or SummaryOptions()).flat_tolerance
                self.forecast.add_data(row["data"], tolerance)
            elif skill is Skill.PERFORMANCE:
                report = performance_of(row["data"])
                if report is not None:
                    self.performance.add(report)
            return
        if outcome == AnswerOutcome.UNKNOWN:
            self.unknown += 1
            _keep(self.unknown_bots, [row["name"]], keep)
            return
        issue = BotIssue(name=row["name"], status=status, reason=row["error"] or "")
        if outcome == AnswerOutcome.FAILED:
            self.failed += 1
            _keep(self.failed_bots, [issue], keep)
        else:
            self.skipped += 1
            _keep(self.skipped_bots, [issue], keep)

    def merge(self, other: AnswerTally, keep: int | None = None) -> None:
        self.ok += other.ok
        self.failed += other.failed
        self.skipped += other.skipped
        self.unknown += other.unknown
        for status, count in other.by_status.items():
            self.by_status[status] = self.by_status.get(status, 0) + count
        _keep(self.failed_bots, other.failed_bots, keep)
        _keep(self.skipped_bots, other.skipped_bots, keep)
        _keep(self.unknown_bots, other.unknown_bots, keep)
        self.forecast.merge(other.forecast)
        self.performance.merge(other.performance)

    def summary(self, skill: Skill) -> CommandSummary:
        summary = CommandSummary(
            ok=self.ok,
            failed=self.failed,
            skipped=self.skipped,
            unknown=self.unknown,
            by_status=dict(sorted(self.by_status.items())),
        )
        if skill is Skill.FORECAST:
            summary.forecast = self.forecast.summary()
        elif skill is Skill.PERFORMANCE:
            summary.performance = self.performance.summary()
        return summary


T = TypeVar("T")


def _keep(kept: list[T], more: Sequence[T], keep: int | None) -> None:
    room = len(more) if keep is None else max(0, keep - len(kept))
    kept += more[:room]


def summarize_forecasts(
    forecasts: Sequence[Forecast], tolerance: float = 0.0
) -> ForecastSummary | None:
    """Mean, median, spread and agreement of ``forecasts``; None when there are none."""
    tally = ForecastTally()
    for forecast in forecasts:
        tally.add(forecast, tolerance)
    return tally.summary()


def summarize_performance(reports: Sequence[Performance]) -> PerformanceSummary | None:
    tally = PerformanceTally()
    for report in reports:
        tally.add(report)
    return tally.summary()


def tally_answers(
    skill: Skill,
    answers: Iterable[BotAnswer | AnswerRow],
    options: SummaryOptions | None = None,
    keep: int | None = None,
) -> AnswerTally:
    """The tally of ``answers`` (deterministic: workflows and activities call it)."""
    tally = AnswerTally()
    for answer in answers:
        row = answer if isinstance(answer, dict) else answer.model_dump()
        tally.add(skill, row, options, keep)
    return tally


def summarize(
    skill: Skill, answers: Sequence[BotAnswer], options: SummaryOptions | None = None
) -> CommandSummary:
    """The summary of a command's answers (deterministic: the workflow calls it)."""
    return tally_answers(skill, answers, options).summary(skill)
