"""How participants' updates become one candidate model: screening, then a swappable strategy.

:func:`screen` drops updates that must not be averaged at all (non-finite, wrong shape, far
larger than the others, or far worse than the champion on its own) and says why in one line each;
a :class:`Strategy` (Flower's ``aggregate_fit``) combines what is left. ``FedAvg`` is the
standard; ``Median`` and ``TrimmedMean`` tolerate a minority of bad updates that screening let
through, at some cost in accuracy when the data are non-IID.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
from pydantic import BaseModel, Field

from agentfleet.learning.tasks.interface import Array, Weights


@dataclass(frozen=True)
class Update:
    """One participant's contribution to a round."""

    participant: str
    weights: Weights
    num_examples: int
    metrics: dict[str, float] = field(default_factory=dict)


class Exclusion(BaseModel):
    """An update left out of aggregation, and why (one line that gives the numbers)."""

    participant: str
    reason: str


class Strategy(Protocol):
    """Combines screened updates into the candidate weights (same names and shapes)."""

    name: str

    def aggregate(self, updates: Sequence[Update]) -> Weights:
        """The candidate; ValueError when ``updates`` is empty or their shapes differ."""
        ...


def _stacked(updates: Sequence[Update]) -> dict[str, Array]:
    """Each weight name -> the updates' arrays stacked on a new first axis."""
    if not updates:
        raise ValueError("no updates to aggregate")
    first = updates[0]
    for update in updates[1:]:
        problem = _shape_problem(update.weights, first.weights)
        if problem is not None:
            raise ValueError(f"update of {update.participant} vs {first.participant}: {problem}")
    return {
        key: np.stack([np.asarray(u.weights[key], dtype=np.float64) for u in updates])
        for key in sorted(first.weights)
    }


class FedAvg:
    """Average weighted by each update's ``num_examples`` (McMahan et al., 2017)."""

    name = "fedavg"

    def aggregate(self, updates: Sequence[Update]) -> Weights:
        stacked = _stacked(updates)
        counts = np.array([u.num_examples for u in updates], dtype=np.float64)
        if np.any(counts < 0) or counts.sum() <= 0:
            raise ValueError(f"FedAvg needs positive example counts, got {counts.tolist()}")
        shares = counts / counts.sum()
        return {key: np.tensordot(shares, arrays, axes=1) for key, arrays in stacked.items()}


class Median:
    """Coordinate-wise median (unweighted): one arbitrary update cannot move it far."""

    name = "median"

    def aggregate(self, updates: Sequence[Update]) -> Weights:
        return {key: np.median(arrays, axis=0) for key, arrays in _stacked(updates).items()}


class TrimmedMean:
    """Coordinate-wise mean after dropping the ``trim`` fraction of highest and of lowest
    values (unweighted; with 5 updates and ``trim`` 0.2, one from each end)."""

    name = "trimmed_mean"

    def __init__(self, trim: float = 0.2) -> None:
        if not 0 <= trim < 0.5:
            raise ValueError(f"trim must be in [0, 0.5), not {trim}")
        self.trim = trim

    def aggregate(self, updates: Sequence[Update]) -> Weights:
        stacked = _stacked(updates)
        cut = int(self.trim * len(updates))
        out: Weights = {}
        for key, arrays in stacked.items():
            ordered = np.sort(arrays, axis=0)
            out[key] = ordered[cut : len(updates) - cut].mean(axis=0)
        return out


STRATEGIES: dict[str, Strategy] = {s.name: s for s in (FedAvg(), Median(), TrimmedMean())}
"""The built-in strategies by name, with their default settings."""


def strategy_named(name: str) -> Strategy:
    """The registered strategy ``name``; ValueError listing the known ones."""
    try:
        return STRATEGIES[name]
    except KeyError:
        known = ", ".join(sorted(STRATEGIES))
        raise ValueError(f"unknown aggregation strategy {name!r}; known: {known}") from None


def update_norm(weights: Weights, reference: Weights) -> float:
    """``||weights - reference||``: the L2 norm of the whole update, all arrays together."""
    total = sum(float(np.sum((weights[key] - reference[key]) ** 2)) for key in reference)
    return math.sqrt(total)


def _shape_problem(weights: Weights, reference: Weights) -> str | None:
    if weights.keys() != reference.keys():
        return f"weights {sorted(weights)} do not match the model's {sorted(reference)}"
    for key, expected in reference.items():
        if weights[key].shape != expected.shape:
            return f"weight {key} has shape {weights[key].shape}, the model {expected.shape}"
    return None


def _non_finite(weights: Weights) -> str | None:
    for key in sorted(weights):
        bad = int(np.size(weights[key]) - np.count_nonzero(np.isfinite(weights[key])))
        if bad:
            return f"non-finite weights ({bad} NaN/inf values in {key})"
    return None


class ScreeningPolicy(BaseModel):
    """How strict :func:`screen` is (travels in the learning round's input)."""

    norm_factor: float = Field(default=3.0, gt=1)
    """Drop updates whose norm exceeds this multiple of the median norm (3 or more updates)."""
    score_drop: float = Field(default=0.8, gt=0)
    """Drop updates whose own score is worse than the champion's by more than this fraction of
    it (0.8: accuracy below a fifth of the champion's, or error above 1.8x the champion's). A
    participant's local model on non-IID data can score 0.3 where the champion scores 0.9 and
    still help the average; what falls below a fifth is noise or sabotage."""


def screen(
    updates: Sequence[Update],
    *,
    reference: Weights,
    champion_score: float | None = None,
    evaluate: Callable[[Weights], float] | None = None,
    higher_is_better: bool = True,
    norm_factor: float = 3.0,
    score_drop: float = 0.5,
) -> tuple[list[Update], list[Exclusion]]:
    """(kept, excluded) updates, in the order given.

    Checks, each on what the previous ones kept: the weights match ``reference`` in names and
    shapes and are all finite; with 3 or more updates, ``||w - reference||`` is at most
    ``norm_factor`` x the median of those norms (fewer updates have no meaningful median); when
    ``evaluate`` and ``champion_score`` are given, the update's own score is not worse than the
    champion's by more than ``score_drop`` of it (relative; see :class:`ScreeningPolicy`).
    An honest round can lose updates to the last check when data are very non-IID: it is off
    unless ``evaluate`` is passed.
    """
    kept: list[Update] = []
    excluded: list[Exclusion] = []
    for update in updates:
        problem = _shape_problem(update.weights, reference) or _non_finite(update.weights)
        if problem is not None:
            excluded.append(Exclusion(participant=update.participant, reason=problem))
        else:
            kept.append(update)
    if len(kept) >= 3:
        norms = [update_norm(update.weights, reference) for update in kept]
        median = float(np.median(norms))
        limit = norm_factor * median
        survivors = []
        for update, norm in zip(kept, norms, strict=True):
            if norm > limit:
                ratio = f"{norm / median:.1f}x" if median > 0 else "infinitely"
                reason = (
                    f"update norm {norm:.4g} is {ratio} the median {median:.4g} "
                    f"(limit {norm_factor:g}x)"
                )
                excluded.append(Exclusion(participant=update.participant, reason=reason))
            else:
                survivors.append(update)
        kept = survivors
    if evaluate is not None and champion_score is not None:
        survivors = []
        for update in kept:
            score = evaluate(update.weights)
            if higher_is_better:
                floor = champion_score - score_drop * abs(champion_score)
                worse = not score >= floor
                bound = f"below the floor {floor:.4g}"
            else:
                floor = champion_score + score_drop * abs(champion_score)
                worse = not score <= floor
                bound = f"above the ceiling {floor:.4g}"
            if worse:
                reason = (
                    f"own score {score:.4g} is {bound} (champion {champion_score:.4g}, "
                    f"allowed drop {score_drop:.0%})"
                )
                excluded.append(Exclusion(participant=update.participant, reason=reason))
            else:
                survivors.append(update)
        kept = survivors
    return kept, excluded
