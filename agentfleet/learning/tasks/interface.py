"""The :class:`LearningTask` interface, the data and results it passes, and the helpers round
loops use with any task.

Every call of a task is a pure function of its arguments and seeds: the same inputs give the
same bytes of weights, so a retried activity produces the artifact it produced before.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
from numpy.typing import NDArray
from pydantic import BaseModel, ConfigDict, Field

Array = NDArray[np.float64]
Weights = dict[str, Array]
"""A model's parameters by name (``W``, ``b`` ...): what the artifact store keeps."""


@dataclass(frozen=True)
class Dataset:
    """Examples ``x`` (one row each) and their targets ``y`` (labels or values)."""

    x: Array
    y: NDArray[Any]

    def __len__(self) -> int:
        return len(self.y)


@dataclass(frozen=True)
class LocalData:
    """What one participant holds: ``train`` to learn from, ``validation`` to check itself on.
    ``source`` says where it came from (e.g. ``"BTCUSDT synthetic"``) for reports."""

    train: Dataset
    validation: Dataset
    source: str = ""


class TrainConfig(BaseModel):
    """How a participant trains in one round (travels in workflow payloads)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    epochs: int = Field(default=1, ge=1, le=1000)
    learning_rate: float = Field(default=0.1, gt=0)
    batch_size: int = Field(default=32, ge=1)
    seed: int = Field(default=0, ge=0)
    """Shuffling seed; round loops derive one per round and participant (:func:`derive_seed`)."""
    min_steps: int = Field(default=0, ge=0)
    """At least this many mini-batch steps: a participant with few examples trains more epochs
    (``epochs`` is then a floor), so small shares move as far per round as large ones."""

    def epochs_for(self, examples: int) -> int:
        """The epochs a participant holding ``examples`` trains for."""
        batches = max(1, math.ceil(examples / self.batch_size))
        return max(self.epochs, math.ceil(self.min_steps / batches))


@dataclass(frozen=True)
class TrainResult:
    """A participant's new weights, how many examples they saw, and its metrics on them."""

    weights: Weights
    num_examples: int
    metrics: dict[str, float] = field(default_factory=dict)
    steps: int = 0
    """Mini-batch steps taken (drift correction divides the update by them)."""


BotParams = Mapping[str, Mapping[str, Any]]
"""Participant name -> its bot parameters (``BotRef.params``); tasks read what they need."""


class LearningTask(Protocol):
    """A model and its data, swappable under a generic round loop.

    ``primary_metric`` (a key of :meth:`evaluate`'s result) decides promotion, in the direction
    ``higher_is_better``. ``default_config`` is the training setting the task was tuned with.
    """

    name: str
    primary_metric: str
    higher_is_better: bool
    default_config: TrainConfig

    def init(self, seed: int) -> Weights:
        """The initial global model."""
        ...

    def partition(
        self, participants: Sequence[str], seed: int, params: BotParams | None = None
    ) -> dict[str, LocalData]:
        """Each participant's local data (independent of the order of ``participants``)."""
        ...

    def holdout(self) -> Dataset:
        """The aggregator's held-out test data: fixed by the task, never in any partition."""
        ...

    def train(
        self,
        weights: Weights,
        data: Dataset,
        config: TrainConfig,
        correction: Weights | None = None,
    ) -> TrainResult:
        """Start from ``weights``, learn from ``data`` for ``config.epochs_for(len(data))``
        epochs; never modifies ``weights``. ``correction`` (same names and shapes) is added to
        every step's gradient (drift correction, :mod:`agentfleet.learning.drift`)."""
        ...

    def evaluate(self, weights: Weights, data: Dataset) -> dict[str, float]:
        """Metrics of ``weights`` on ``data`` (includes ``primary_metric``)."""
        ...


def derive_seed(*parts: object) -> int:
    """A seed from ``parts`` (e.g. round seed, round number, participant), the same in every
    process and Python version (unlike ``hash``)."""
    text = "\x1f".join(str(part) for part in parts)
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big") >> 1


def improves(candidate: float, champion: float, *, higher_is_better: bool, margin: float) -> bool:
    """True when ``candidate`` beats ``champion`` by more than ``margin`` (absolute; a tie keeps
    the champion). A non-finite candidate never improves."""
    if not math.isfinite(candidate):
        return False
    if higher_is_better:
        return candidate > champion + margin
    return candidate < champion - margin


def train_participant(
    task: LearningTask,
    weights: Weights,
    data: LocalData,
    config: TrainConfig,
    correction: Weights | None = None,
) -> TrainResult:
    """Train on ``data.train`` and add the new weights' ``val_*`` metrics on ``data.validation``
    (what a bot's ``train`` activity returns next to its weights' ref)."""
    result = task.train(weights, data.train, config, correction)
    if not len(data.validation):
        return result
    validation = task.evaluate(result.weights, data.validation)
    metrics = {**result.metrics, **{f"val_{key}": value for key, value in validation.items()}}
    return TrainResult(result.weights, result.num_examples, metrics, result.steps)


def minibatches(n: int, batch_size: int, rng: np.random.Generator) -> list[NDArray[np.intp]]:
    """The indices ``0..n-1`` in a random order, cut into batches of ``batch_size``."""
    order = rng.permutation(n)
    return [order[start : start + batch_size] for start in range(0, n, batch_size)]
