"""The built-in forecasters' model: an exponential moving average, and its one-step backtest."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


def ema(closes: Sequence[float], alpha: float) -> float:
    """Exponential moving average of ``closes`` (oldest first), seeded with the first close."""
    level = closes[0]
    for price in closes[1:]:
        level += alpha * (price - level)
    return level


@dataclass(frozen=True)
class Backtest:
    """One-step-ahead EMA forecasts over a window: each EMA predicts the next close."""

    forecasts: int
    mean_abs_error: float | None
    hit_rate: float | None


def backtest_ema(closes: Sequence[float], alpha: float) -> Backtest:
    """Mean absolute error and directional hit rate (sign of EMA - close vs the next move;
    bars that do not move, or forecasts equal to the close, do not count for direction)."""
    if len(closes) < 2:
        return Backtest(0, None, None)
    level = closes[0]
    error = 0.0
    hits = calls = 0
    for i in range(1, len(closes)):
        previous, actual = closes[i - 1], closes[i]
        error += abs(level - actual)
        predicted, moved = level - previous, actual - previous
        if predicted and moved:
            calls += 1
            hits += (predicted > 0) == (moved > 0)
        level += alpha * (actual - level)
    forecasts = len(closes) - 1
    return Backtest(forecasts, error / forecasts, hits / calls if calls else None)
