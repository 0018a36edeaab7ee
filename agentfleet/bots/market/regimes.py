"""Market regimes (trending up or down, ranging, volatile) and how to detect one from closes."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from enum import StrEnum


class Regime(StrEnum):
    TRENDING_UP = "trending_up"
    TRENDING_DOWN = "trending_down"
    RANGING = "ranging"
    VOLATILE = "volatile"


def detect_regime(closes: Sequence[float], window: int = 120) -> tuple[Regime, float]:
    """The regime of the last ``window`` bars and a confidence in [0, 1].

    Trending when the mean log return is significant (t-statistic); otherwise ranging when
    10-bar moves are much smaller than a random walk's (variance ratio), volatile when they are
    not and bars move far more than over the rest of the series (or over 1.2 % each).
    """
    if len(closes) < 22:
        return Regime.RANGING, 0.0
    returns = [math.log(b / a) for a, b in zip(closes[:-1], closes[1:], strict=True)]
    recent = returns[-window:]
    mean, spread = statistics.fmean(recent), statistics.pstdev(recent)
    if spread == 0:
        return Regime.RANGING, 1.0
    t = mean / (spread / math.sqrt(len(recent)))
    if abs(t) >= 2.5:
        return (Regime.TRENDING_UP if t > 0 else Regime.TRENDING_DOWN), min(1.0, abs(t) / 5)
    k = 10
    moves = [sum(recent[i : i + k]) for i in range(len(recent) - k + 1)]
    ratio = statistics.pvariance(moves) / (k * spread**2)
    reference = statistics.pstdev(returns)
    if ratio >= 0.6 and (spread >= 1.5 * reference or spread >= 0.012):
        return Regime.VOLATILE, min(1.0, ratio * max(spread / reference, spread / 0.012) / 2)
    return Regime.RANGING, min(1.0, max(0.2, 1.2 - ratio))
