"""Learning rounds in one process, without Temporal: the numerics the workflow will orchestrate.

Each round every participant trains from the champion on its own data, the updates are screened
and aggregated, the candidate is scored on the task's holdout, and it becomes the champion only
when it beats it by more than ``margin``; otherwise the champion stays (a rollback). The
sequence is the learning-round workflow's, so tests and benchmarks here prove what the workflow
will compute. Deterministic: the same arguments give the same reports and weights.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from pydantic import BaseModel, Field

from agentfleet.learning import drift
from agentfleet.learning.rounds import TrainFrom
from agentfleet.learning.store import ArtifactStore
from agentfleet.learning.strategies import (
    Exclusion,
    FedAvg,
    ScreeningPolicy,
    Strategy,
    Update,
    screen,
)
from agentfleet.learning.tasks.interface import (
    BotParams,
    LearningTask,
    TrainConfig,
    Weights,
    derive_seed,
    improves,
    train_participant,
)

Attack = Callable[[Weights, Weights], Weights]
"""``attack(reference, honest)`` -> the weights a misbehaving participant sends instead."""


def scaled_update(factor: float) -> Attack:
    """A participant that sends its update multiplied by ``factor`` (model replacement)."""

    def attack(reference: Weights, honest: Weights) -> Weights:
        return {key: reference[key] + factor * (honest[key] - reference[key]) for key in honest}

    return attack


def nan_update(reference: Weights, honest: Weights) -> Weights:
    """A participant whose training diverged: every weight NaN."""
    return {key: np.full_like(value, np.nan) for key, value in honest.items()}


class RoundReport(BaseModel):
    """What one round did: the candidate's holdout metrics (empty when every update was
    excluded), whether it was promoted, and the champion's metrics after the decision."""

    round: int
    candidate: dict[str, float] = Field(default_factory=dict)
    champion: dict[str, float]
    promoted: bool
    included: list[str]
    excluded: list[Exclusion] = Field(default_factory=list)
    champion_ref: str | None = None


@dataclass(frozen=True)
class Simulation:
    """The reports of every round and the final champion's weights."""

    task: str
    strategy: str
    initial: dict[str, float]
    rounds: list[RoundReport]
    champion: Weights

    @property
    def final(self) -> dict[str, float]:
        """The final champion's holdout metrics."""
        return self.rounds[-1].champion if self.rounds else self.initial


def simulate(
    task: LearningTask,
    participants: Sequence[str],
    *,
    rounds: int = 10,
    strategy: Strategy | None = None,
    config: TrainConfig | None = None,
    seed: int = 0,
    margin: float = 0.0,
    screening: ScreeningPolicy | None = None,
    screen_scores: bool = False,
    attacks: Mapping[str, Attack] | None = None,
    params: BotParams | None = None,
    store: ArtifactStore | None = None,
    train_from: TrainFrom = TrainFrom.CANDIDATE,
    drift_correction: bool = True,
) -> Simulation:
    """Run ``rounds`` learning rounds of ``task`` among ``participants``.

    ``strategy`` defaults to FedAvg, ``config`` to the task's ``default_config`` (its ``seed`` is
    replaced per round and participant), ``screening`` to :class:`ScreeningPolicy` defaults;
    ``screen_scores`` also drops updates that score far below the champion on the holdout.
    ``attacks`` makes the named participants misbehave. With ``store``, every champion is put
    there and its ref reported, as the workflow would pass it on. ``train_from`` and
    ``drift_correction`` as in :class:`~agentfleet.learning.rounds.RoundOrder`.
    """
    strategy = strategy or FedAvg()
    config = config or task.default_config
    policy = screening or ScreeningPolicy()
    attacks = attacks or {}
    data = task.partition(participants, seed, params)
    holdout = task.holdout()
    metric, higher = task.primary_metric, task.higher_is_better

    def score(weights: Weights) -> float:
        return task.evaluate(weights, holdout)[metric]

    champion = task.init(seed)
    champion_metrics = task.evaluate(champion, holdout)
    initial = dict(champion_metrics)
    head: Weights = champion
    fleet_control: Weights | None = None
    controls: dict[str, Weights] = {}
    head_controls: dict[str, Weights] = {}
    champion_state: tuple[Weights | None, dict[str, Weights]] = (None, {})
    reports: list[RoundReport] = []
    for number in range(1, rounds + 1):
        updates = []
        new_controls: dict[str, Weights] = {}
        for name in sorted(data):
            own = config.model_copy(update={"seed": derive_seed(seed, number, name)})
            mine = head_controls.get(name)
            shift = drift.correction(fleet_control, mine, head) if drift_correction else None
            result = train_participant(task, head, data[name], own, shift)
            weights = result.weights
            if name in attacks:
                weights = attacks[name](head, weights)
            if drift_correction:
                new_controls[name] = drift.participant_control(
                    head,
                    weights,
                    steps=result.steps,
                    learning_rate=own.learning_rate,
                    fleet=fleet_control,
                    own=mine,
                )
            updates.append(Update(name, weights, result.num_examples, result.metrics))
        kept, excluded = screen(
            updates,
            reference=head,
            champion_score=champion_metrics[metric],
            evaluate=score if screen_scores else None,
            higher_is_better=higher,
            norm_factor=policy.norm_factor,
            score_drop=policy.score_drop,
        )
        candidate_metrics: dict[str, float] = {}
        promoted = False
        if kept:
            candidate = strategy.aggregate(kept)
            candidate_metrics = task.evaluate(candidate, holdout)
            promoted = improves(
                candidate_metrics[metric],
                champion_metrics[metric],
                higher_is_better=higher,
                margin=margin,
            )
            candidate_control = fleet_control
            if drift_correction:
                zero = drift.zeros_like(head)
                changes = [
                    {
                        k: new_controls[u.participant][k]
                        - head_controls.get(u.participant, zero)[k]
                        for k in head
                    }
                    for u in kept
                ]
                candidate_control = drift.fleet_control(fleet_control, changes, len(data), head)
                controls = head_controls | {
                    u.participant: new_controls[u.participant] for u in kept
                }
            if promoted:
                champion, champion_metrics = candidate, candidate_metrics
                champion_state = (candidate_control, controls)
            if promoted or train_from is TrainFrom.CANDIDATE:
                head, fleet_control, head_controls = candidate, candidate_control, controls
            else:
                head = champion
                fleet_control, head_controls = champion_state
        reports.append(
            RoundReport(
                round=number,
                candidate=candidate_metrics,
                champion=champion_metrics,
                promoted=promoted,
                included=[update.participant for update in kept],
                excluded=excluded,
                champion_ref=store.put(champion) if store is not None else None,
            )
        )
    return Simulation(task.name, strategy.name, initial, reports, champion)
