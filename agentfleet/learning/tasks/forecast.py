"""The ``forecast`` task: the next-bar return of each forecaster's own price series, learnt by a
linear autoregressive model."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from agentfleet.bots.market.csv_import import normalize_symbol
from agentfleet.bots.market.storage import Closes, load_closes
from agentfleet.bots.model import ForecasterParams
from agentfleet.learning.tasks.interface import (
    BotParams,
    Dataset,
    LocalData,
    TrainConfig,
    TrainResult,
    Weights,
    minibatches,
)

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

    def closes(self, symbol: str) -> Closes:
        """The last ``bars`` closes a participant trading ``symbol`` learns from: the bot's own
        series, read as its forecasts read it (``database_url``, default the fleet's)."""
        url = self.database_url
        if url is None:
            from agentfleet.settings import get_settings  # read env on use

            url = get_settings().effective_database_url
        return load_closes(url, symbol, self.bars)

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
        return normalize_symbol(str(params.get("symbol") or ForecasterParams().symbol))

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

    def train(
        self,
        weights: Weights,
        data: Dataset,
        config: TrainConfig,
        correction: Weights | None = None,
    ) -> TrainResult:
        w, b = weights["w"].copy(), weights["b"].copy()
        rng = np.random.default_rng(config.seed)
        targets = np.asarray(data.y, dtype=np.float64)
        rate = config.learning_rate
        steps = 0
        for _ in range(config.epochs_for(len(data))):
            for batch in minibatches(len(data), config.batch_size, rng):
                x = data.x[batch]
                error = (x @ w + b[0] - targets[batch]) / len(batch)
                w -= rate * 2.0 * (x.T @ error)
                b -= rate * 2.0 * error.sum()
                if correction is not None:
                    w -= rate * correction["w"]
                    b -= rate * correction["b"]
                steps += 1
        trained = {"w": w, "b": b}
        return TrainResult(trained, len(data), self.evaluate(trained, data), steps)

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
