"""What learning rounds send between the workflow and its activities (pydantic, by reference).

Weights never travel in a payload: every model is a ``sha256:`` ref into the artifact store
(Temporal's payload and history limits), so a round's history holds names, refs and metrics.
"""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, Field

from agentfleet.learning.strategies import Exclusion, ScreeningPolicy
from agentfleet.learning.tasks.interface import TrainConfig


def round_workflow_id(task: str, round_number: int) -> str:
    return f"learning-{task}-{round_number}"


class ModelStatus(StrEnum):
    CHAMPION = "champion"
    CANDIDATE = "candidate"
    REJECTED = "rejected"
    RETIRED = "retired"


class TrainFrom(StrEnum):
    """Where a round's participants start: the latest candidate (rejected or not) or the
    champion. Either way only the promotion gate decides what bots serve."""

    CANDIDATE = "candidate"
    CHAMPION = "champion"


class RoundStatus(StrEnum):
    RUNNING = "running"
    PROMOTED = "promoted"
    ROLLED_BACK = "rolled_back"
    FAILED = "failed"


class RoundOrder(BaseModel):
    """The input of ``LearningRoundWorkflow``."""

    task: str
    round: int = Field(ge=1)
    strategy: str = "fedavg"
    max_participants: int | None = Field(default=None, ge=1)
    min_participants: int = Field(default=2, ge=1)
    fraction: float = Field(default=1.0, gt=0, le=1)
    """Share of the eligible bots asked to train (at least ``min_participants``)."""
    participant_timeout_s: float = Field(default=60.0, gt=0, le=3600)
    margin: float = Field(default=0.0, ge=0)
    """How much the candidate must beat the champion's primary metric by to be promoted."""
    train: TrainConfig | None = None
    """None: the task's tuned default."""
    screening: ScreeningPolicy = Field(default_factory=ScreeningPolicy)
    seed: int = Field(default=0, ge=0)
    """Fixes the data partition and training shuffles (the same seed, the same round)."""
    train_from: TrainFrom = TrainFrom.CANDIDATE
    """Start from the latest candidate (the task's head) or from the champion."""
    drift_correction: bool = True
    """Control variates (:mod:`agentfleet.learning.drift`) keep non-IID participants on course."""


class ModelRef(BaseModel):
    version_id: str
    version: int
    artifact: str
    metrics: dict[str, float] = Field(default_factory=dict)
    controls: dict[str, str] = Field(default_factory=dict)
    """Participant -> the artifact holding its drift-correction control as of this version."""


class Selection(BaseModel):
    """Who trains this round, who was left out and why, and the champion they start from."""

    participants: list[str]
    skipped: list[Exclusion] = Field(default_factory=list)
    params: dict[str, dict[str, object]] = Field(default_factory=dict)
    champion: ModelRef
    start: ModelRef | None = None
    """The version participants train from (the order's ``train_from``); None: the champion."""
    population: int = 0
    """Eligible bots, drawn or not (drift correction averages controls over them)."""


class TrainOrder(BaseModel):
    task: str
    round_id: str
    participant: str
    participants: list[str]
    """Everyone in the round: the partition depends on the whole set, never on the order."""
    params: dict[str, dict[str, object]] = Field(default_factory=dict)
    start: str
    """The artifact every participant starts from (the round's start version)."""
    config: TrainConfig
    seed: int
    drift_correction: bool = False
    control: str | None = None
    """The artifact holding this participant's control (None: it has none yet)."""


class TrainOutcome(BaseModel):
    participant: str
    artifact: str
    num_examples: int
    metrics: dict[str, float] = Field(default_factory=dict)


class AggregateOrder(BaseModel):
    task: str
    round_id: str
    strategy: str
    start: str
    updates: list[TrainOutcome]
    screening: ScreeningPolicy
    drift_correction: bool = False
    population: int = 0


class Aggregated(BaseModel):
    candidate: str | None
    """The candidate's ref; None when screening left nothing to aggregate."""
    kept: list[str]
    excluded: list[Exclusion]
    controls: dict[str, str] = Field(default_factory=dict)
    """The kept participants' new controls (their training artifacts) under drift correction."""


class EvaluateOrder(BaseModel):
    task: str
    round_id: str
    candidate: str
    champion: str
    participants: list[str]
    params: dict[str, dict[str, object]] = Field(default_factory=dict)
    seed: int


class Evaluation(BaseModel):
    """Both models on the held-out split, and the candidate on the participants' validation
    data (mean per metric); ``primary`` names the metric that decides."""

    primary: str
    higher_is_better: bool
    candidate: dict[str, float]
    champion: dict[str, float]
    validation: dict[str, float] = Field(default_factory=dict)


class RoundRecord(BaseModel):
    """Everything the round decided, written in one activity (idempotent by ``round_id``)."""

    task: str
    round: int
    round_id: str
    strategy: str
    status: RoundStatus
    participants: list[str]
    dropped: list[Exclusion] = Field(default_factory=list)
    excluded: list[Exclusion] = Field(default_factory=list)
    parent: str
    candidate: str | None = None
    metrics: dict[str, float] = Field(default_factory=dict)
    reason: str = ""
    controls: dict[str, str] = Field(default_factory=dict)
    """The participants' new controls; the candidate keeps the parent's, updated by these."""
    train_from: TrainFrom = TrainFrom.CHAMPION
    """CANDIDATE: the candidate becomes the task's head even when it is not promoted."""
    tell: bool = False
    """Signal the participants' entities the champion they serve (else the workflow does)."""


class Recorded(BaseModel):
    candidate: str | None
    """The candidate's version id (None when the round produced none)."""
    champion: str
    """The champion's version id after the round."""


class RoundReport(BaseModel):
    """The round's result (``fleet learn`` prints it)."""

    task: str
    round: int
    round_id: str
    status: RoundStatus
    participants: list[str] = Field(default_factory=list)
    dropped: list[Exclusion] = Field(default_factory=list)
    excluded: list[Exclusion] = Field(default_factory=list)
    champion: str | None = None
    candidate_version: str | None = None
    evaluation: Evaluation | None = None
    reason: str = ""


def campaign_workflow_id(task: str, first_round: int) -> str:
    return f"learning-campaign-{task}-{first_round}"


class CampaignOrder(BaseModel):
    """The input of ``LearningCampaignWorkflow``: rounds until a target, a budget, or no
    improvement for ``patience`` rounds."""

    task: str
    rounds: int = Field(default=10, ge=1, le=1000)
    first_round: int = Field(default=1, ge=0)
    """0: the task's next free round number, looked up when the campaign starts (schedules)."""
    target: float | None = None
    """Stop once the champion's primary metric reaches this (in the task's direction)."""
    patience: int | None = Field(default=None, ge=1)
    """Stop after this many rounds in a row without a promotion."""
    round: RoundOrder
    """The settings of every round (its ``round`` number is replaced per round)."""


class RoundSummary(BaseModel):
    round: int
    round_id: str
    status: RoundStatus
    champion: str | None
    metric: float | None
    """The champion's primary metric after the round (held-out split)."""
    loss: float | None = None
    """The same model's loss (``loss``, or ``mae`` for error-scored tasks)."""
    participants: int
    dropped: int
    excluded: int
    reason: str = ""


class CampaignView(BaseModel):
    task: str
    primary: str | None = None
    rounds_planned: int
    rounds: list[RoundSummary] = Field(default_factory=list)
    champion: str | None = None
    stopped: str = ""
    """Why it stopped (empty while it runs)."""
