"""What a learning round learns: the :class:`LearningTask` interface and the built-in tasks.

A task owns everything model-specific (initial weights, local training, evaluation, and which
data each participant holds); the round loop (:mod:`agentfleet.learning.simulate`, later the
learning-round workflow) only moves weights between these calls, like Flower's client/strategy
split. Every call is a pure function of its arguments and seeds: the same inputs give the same
bytes of weights, so a retried activity produces the artifact it produced before.

Built in: ``digits`` (scikit-learn's bundled 8x8 digits, non-IID across participants, multinomial
logistic regression) and ``forecast`` (each forecaster's own price series from
:mod:`agentfleet.bots.market`, a linear autoregressive model of the next return).
"""

from __future__ import annotations

import functools
import hashlib
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
from numpy.typing import NDArray
from pydantic import BaseModel, ConfigDict, Field

from agentfleet.bots.market import csv_import, storage
from agentfleet.bots.model import ForecasterParams

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


@dataclass(frozen=True)
class TrainResult:
    """A participant's new weights, how many examples they saw, and its metrics on them."""

    weights: Weights
    num_examples: int
    metrics: dict[str, float] = field(default_factory=dict)


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

    def train(self, weights: Weights, data: Dataset, config: TrainConfig) -> TrainResult:
        """Start from ``weights``, learn from ``data``; never modifies ``weights``."""
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
    task: LearningTask, weights: Weights, data: LocalData, config: TrainConfig
) -> TrainResult:
    """Train on ``data.train`` and add the new weights' ``val_*`` metrics on ``data.validation``
    (what a bot's ``train`` activity returns next to its weights' ref)."""
    result = task.train(weights, data.train, config)
    if not len(data.validation):
        return result
    validation = task.evaluate(result.weights, data.validation)
    metrics = {**result.metrics, **{f"val_{key}": value for key, value in validation.items()}}
    return TrainResult(result.weights, result.num_examples, metrics)


def _minibatches(n: int, batch_size: int, rng: np.random.Generator) -> list[NDArray[np.intp]]:
    order = rng.permutation(n)
    return [order[start : start + batch_size] for start in range(0, n, batch_size)]


def _split_off(
    indices: NDArray[np.intp], fraction: float, rng: np.random.Generator
) -> tuple[NDArray[np.intp], NDArray[np.intp]]:
    """(rest, held) where ``held`` is ``fraction`` of ``indices`` (at least one when any)."""
    shuffled = rng.permutation(indices)
    held = max(1, round(fraction * len(shuffled))) if len(shuffled) > 1 and fraction > 0 else 0
    return np.sort(shuffled[held:]), np.sort(shuffled[:held])


DIGITS_SCALE = 16.0
"""Digits pixels are 0-16; dividing by this fixed constant (not by data statistics) keeps every
participant's inputs on the same scale without sharing anything."""


@functools.cache
def _digits() -> tuple[Array, NDArray[np.int64]]:
    from sklearn.datasets import load_digits  # type: ignore[import-untyped]

    bunch = load_digits()
    return (
        np.asarray(bunch.data, dtype=np.float64) / DIGITS_SCALE,
        np.asarray(bunch.target, dtype=np.int64),
    )


def _softmax(logits: Array) -> Array:
    shifted = logits - logits.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    out: Array = exp / exp.sum(axis=1, keepdims=True)
    return out


class DigitsTask:
    """Handwritten digits (1797 8x8 images, 10 classes), multinomial logistic regression.

    The train/test split is fixed by ``split_seed`` (``test_fraction`` of the images, stratified
    by label); the test part is :meth:`holdout`. :meth:`partition` deals the train part out with
    Dirichlet(``alpha``) label skew, so participants see different mixes of digits (smaller
    ``alpha``: more skew), each with at least ``min_examples``, and each keeps
    ``validation_fraction`` of its share for local validation.

    Model: ``W`` [64x10], ``b`` [10]; softmax cross-entropy, mini-batch SGD on pixels / 16.
    ``default_config`` (10 local epochs, learning rate 1.0, batch 16) was tuned on 5
    participants and 10 rounds: at the default ``alpha`` 1.0 (still clearly non-IID) the
    federated model ends within a point of :meth:`train_centrally` for 13 of partition seeds
    0-15 (most by round 5); at 0.5 for 10 of 16, the rest 1-2.4 points short (and 30 rounds
    bring only one more).
    """

    name = "digits"
    primary_metric = "accuracy"
    higher_is_better = True
    classes = 10
    features = 64

    def __init__(
        self,
        *,
        alpha: float = 1.0,
        min_examples: int = 20,
        validation_fraction: float = 0.1,
        test_fraction: float = 0.25,
        split_seed: int = 0,
        default_config: TrainConfig | None = None,
    ) -> None:
        if alpha <= 0:
            raise ValueError(f"Dirichlet alpha must be above 0, not {alpha}")
        self.alpha = alpha
        self.min_examples = min_examples
        self.validation_fraction = validation_fraction
        self.test_fraction = test_fraction
        self.split_seed = split_seed
        self.default_config = default_config or TrainConfig(
            epochs=10, learning_rate=1.0, batch_size=16
        )

    @functools.cached_property
    def _split(self) -> tuple[NDArray[np.intp], NDArray[np.intp]]:
        _, labels = _digits()
        rng = np.random.default_rng(self.split_seed)
        train: list[NDArray[np.intp]] = []
        test: list[NDArray[np.intp]] = []
        for label in range(self.classes):
            rest, held = _split_off(np.flatnonzero(labels == label), self.test_fraction, rng)
            train.append(rest)
            test.append(held)
        return np.sort(np.concatenate(train)), np.sort(np.concatenate(test))

    def _dataset(self, indices: NDArray[np.intp]) -> Dataset:
        images, labels = _digits()
        return Dataset(images[indices], labels[indices])

    def pooled(self) -> Dataset:
        """The whole train part (every participant's share, validation included)."""
        return self._dataset(self._split[0])

    def holdout(self) -> Dataset:
        return self._dataset(self._split[1])

    def init(self, seed: int) -> Weights:
        rng = np.random.default_rng(seed)
        return {
            "W": rng.normal(0.0, 0.01, size=(self.features, self.classes)),
            "b": np.zeros(self.classes),
        }

    def partition(
        self, participants: Sequence[str], seed: int, params: BotParams | None = None
    ) -> dict[str, LocalData]:
        """Dirichlet label skew; raises ValueError when the train part cannot give every
        participant ``min_examples`` (too many participants) after 100 draws."""
        names = sorted(set(participants))
        if not names:
            raise ValueError("no participants to partition the digits among")
        train_indices = self._split[0]
        _, labels = _digits()
        rng = np.random.default_rng(seed)
        for _ in range(100):
            shares: list[list[NDArray[np.intp]]] = [[] for _ in names]
            for label in range(self.classes):
                members = rng.permutation(train_indices[labels[train_indices] == label])
                proportions = rng.dirichlet(np.full(len(names), self.alpha))
                cuts = (np.cumsum(proportions)[:-1] * len(members)).astype(np.intp)
                for share, part in zip(shares, np.split(members, cuts), strict=True):
                    share.append(part)
            merged = [np.sort(np.concatenate(share)) for share in shares]
            if min(len(share) for share in merged) >= self.min_examples:
                break
        else:
            raise ValueError(
                f"cannot give each of {len(names)} participants {self.min_examples} digits "
                f"from {len(train_indices)} (alpha {self.alpha}); use fewer participants"
            )
        out: dict[str, LocalData] = {}
        for name, indices in zip(names, merged, strict=True):
            rest, held = _split_off(indices, self.validation_fraction, rng)
            source = f"digits ({len(indices)} of {len(train_indices)} train images)"
            out[name] = LocalData(self._dataset(rest), self._dataset(held), source=source)
        return out

    def train(self, weights: Weights, data: Dataset, config: TrainConfig) -> TrainResult:
        w, b = weights["W"].copy(), weights["b"].copy()
        rng = np.random.default_rng(config.seed)
        labels = np.asarray(data.y, dtype=np.intp)
        for _ in range(config.epochs):
            for batch in _minibatches(len(data), config.batch_size, rng):
                x = data.x[batch]
                gradient = _softmax(x @ w + b)
                gradient[np.arange(len(batch)), labels[batch]] -= 1.0
                gradient /= len(batch)
                w -= config.learning_rate * (x.T @ gradient)
                b -= config.learning_rate * gradient.sum(axis=0)
        trained = {"W": w, "b": b}
        return TrainResult(trained, len(data), self.evaluate(trained, data))

    def evaluate(self, weights: Weights, data: Dataset) -> dict[str, float]:
        if not len(data):
            return {"accuracy": math.nan, "loss": math.nan}
        probabilities = _softmax(data.x @ weights["W"] + weights["b"])
        labels = np.asarray(data.y, dtype=np.intp)
        picked = probabilities[np.arange(len(labels)), labels]
        return {
            "accuracy": float(np.mean(probabilities.argmax(axis=1) == labels)),
            "loss": float(-np.mean(np.log(np.clip(picked, 1e-12, None)))),
        }

    def train_centrally(self, seed: int, config: TrainConfig | None = None) -> TrainResult:
        """The same model trained on the pooled train part (the yardstick federated rounds are
        compared with). Default: 50 epochs at learning rate 0.3, batch 16, by when its holdout
        accuracy has stopped moving (0.953-0.962 over seeds 0-15)."""
        config = config or TrainConfig(epochs=50, learning_rate=0.3, batch_size=16, seed=seed)
        return self.train(self.init(seed), self.pooled(), config)


RETURN_SCALE = 100.0
"""Returns are log returns in percent: inputs near 1 keep SGD steps well conditioned."""


class ForecastTask:
    """Next-bar return of each forecaster's own series, a linear autoregressive model.

    Features are the last ``lags`` log returns (percent), the target the next one; weights
    ``w`` [lags] and ``b`` [1]; squared error, mini-batch SGD. Series come from
    :func:`agentfleet.bots.market.storage.load_closes` (imported bars, else the labelled
    synthetic feed) for the participant's ``symbol`` parameter (default: the forecaster
    default). The newest ``holdout_fraction`` of every series is never trained on:
    :meth:`holdout` is that tail of ``holdout_symbols``; each participant validates on the
    ``validation_fraction`` before it.
    Metrics: ``rmse`` (primary, lower is better), ``mae`` and ``zero_rmse`` (the naive
    "no change" forecast), all in percent.
    """

    name = "forecast"
    primary_metric = "rmse"
    higher_is_better = False

    def __init__(
        self,
        *,
        lags: int = 5,
        bars: int = 3000,
        holdout_fraction: float = 0.2,
        validation_fraction: float = 0.1,
        holdout_symbols: Sequence[str] = ("BTCUSDT", "ETHUSDT"),
        database_url: str | None = None,
        default_config: TrainConfig | None = None,
    ) -> None:
        self.lags = lags
        self.bars = bars
        self.holdout_fraction = holdout_fraction
        self.validation_fraction = validation_fraction
        self.holdout_symbols = tuple(holdout_symbols)
        self.database_url = database_url
        self.default_config = default_config or TrainConfig(
            epochs=5, learning_rate=0.01, batch_size=64
        )

    def closes(self, symbol: str) -> storage.Closes:
        """The last ``bars`` closes a participant trading ``symbol`` learns from: the bot's own
        series, read as its forecasts read it (``database_url``, default the fleet's)."""
        url = self.database_url
        if url is None:
            from agentfleet.settings import get_settings  # read env on use

            url = get_settings().effective_database_url
        return storage.load_closes(url, symbol, self.bars)

    def split(self, symbol: str) -> tuple[LocalData, Dataset]:
        """``symbol``'s examples in time order: (what a participant trading it holds, the newest
        ``holdout_fraction`` that nobody trains on). ValueError when the series is too short."""
        series = self.closes(symbol)
        prices = np.asarray(series.closes, dtype=np.float64)
        if len(prices) < 10 * (self.lags + 1) or not np.all(prices > 0):
            raise ValueError(
                f"{symbol}: {len(prices)} closes, need {10 * (self.lags + 1)} positive ones"
            )
        returns = np.diff(np.log(prices)) * RETURN_SCALE
        windows = np.lib.stride_tricks.sliding_window_view(returns, self.lags + 1)
        x, y = np.ascontiguousarray(windows[:, :-1]), np.ascontiguousarray(windows[:, -1])
        tail = max(1, round(self.holdout_fraction * len(y)))
        held = max(1, round(self.validation_fraction * len(y)))
        start = len(y) - tail - held
        local = LocalData(
            Dataset(x[:start], y[:start]),
            Dataset(x[start:-tail], y[start:-tail]),
            source=f"{symbol} {'synthetic' if series.synthetic else 'imported'}",
        )
        return local, Dataset(x[-tail:], y[-tail:])

    def _symbol(self, params: Mapping[str, Any]) -> str:
        return csv_import.normalize_symbol(str(params.get("symbol") or ForecasterParams().symbol))

    def init(self, seed: int) -> Weights:
        rng = np.random.default_rng(seed)
        return {"w": rng.normal(0.0, 0.01, size=self.lags), "b": np.zeros(1)}

    def partition(
        self, participants: Sequence[str], seed: int, params: BotParams | None = None
    ) -> dict[str, LocalData]:
        """Each participant's own series (``seed`` is unused: the series are what they are)."""
        params = params or {}
        out: dict[str, LocalData] = {}
        for name in sorted(set(participants)):
            out[name] = self.split(self._symbol(params.get(name, {})))[0]
        return out

    def holdout(self) -> Dataset:
        tails = [self.split(symbol)[1] for symbol in self.holdout_symbols]
        return Dataset(
            np.concatenate([tail.x for tail in tails]),
            np.concatenate([tail.y for tail in tails]),
        )

    def train(self, weights: Weights, data: Dataset, config: TrainConfig) -> TrainResult:
        w, b = weights["w"].copy(), weights["b"].copy()
        rng = np.random.default_rng(config.seed)
        targets = np.asarray(data.y, dtype=np.float64)
        for _ in range(config.epochs):
            for batch in _minibatches(len(data), config.batch_size, rng):
                x = data.x[batch]
                error = (x @ w + b[0] - targets[batch]) / len(batch)
                w -= config.learning_rate * 2.0 * (x.T @ error)
                b -= config.learning_rate * 2.0 * error.sum()
        trained = {"w": w, "b": b}
        return TrainResult(trained, len(data), self.evaluate(trained, data))

    def evaluate(self, weights: Weights, data: Dataset) -> dict[str, float]:
        if not len(data):
            return {"rmse": math.nan, "mae": math.nan, "zero_rmse": math.nan}
        targets = np.asarray(data.y, dtype=np.float64)
        error = data.x @ weights["w"] + weights["b"][0] - targets
        return {
            "rmse": float(np.sqrt(np.mean(error**2))),
            "mae": float(np.mean(np.abs(error))),
            "zero_rmse": float(np.sqrt(np.mean(targets**2))),
        }


TASKS: dict[str, LearningTask] = {"digits": DigitsTask(), "forecast": ForecastTask()}
"""The built-in tasks by name, with their default settings."""


def task_named(name: str) -> LearningTask:
    """The registered task ``name``; ValueError listing the known ones."""
    try:
        return TASKS[name]
    except KeyError:
        raise ValueError(
            f"unknown learning task {name!r}; known: {', '.join(sorted(TASKS))}"
        ) from None
