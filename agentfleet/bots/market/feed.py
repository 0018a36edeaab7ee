"""The synthetic price feed: a random walk with regime changes (trending up or down, ranging,
volatile), seeded by the symbol so every process and every call sees the same prices. Synthetic
bars say ``source="synthetic"`` and forecasts made on them say ``synthetic_data=True``."""

from __future__ import annotations

import hashlib
import math
import random
import re
import threading
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from pydantic import BaseModel

from agentfleet.bots.market.regimes import Regime

SYNTHETIC = "synthetic"


class PriceBarData(BaseModel):
    """One OHLCV bar as the rest of agentfleet passes it around (``ts`` is the bar's open)."""

    symbol: str
    ts: datetime
    open: float
    high: float
    low: float
    close: float
    volume: float = 0.0
    source: str = SYNTHETIC


@dataclass(frozen=True)
class RegimeSpan:
    """Bars ``start`` (inclusive) to ``end`` (exclusive) of a synthetic series, in one regime."""

    start: int
    end: int
    regime: Regime


_DRIFT = 0.002
_VOL = {
    Regime.TRENDING_UP: 0.005,
    Regime.TRENDING_DOWN: 0.005,
    Regime.RANGING: 0.004,
    Regime.VOLATILE: 0.02,
}
_REVERSION = 0.08


class _Walk:
    """A symbol's synthetic history, generated backwards from the present bar and extended on
    demand, so the last ``n`` bars are the same whatever ``n`` (every bot sees one market)."""

    def __init__(self, seed: int) -> None:
        self._rng = random.Random(seed)  # noqa: S311 (a price simulation, not a secret)
        self.base = 10 ** self._rng.uniform(1.0, 4.5)
        self.volume = 10 ** self._rng.uniform(2.0, 5.0)
        self.closes = [self.base]  # closes[k]: close of the bar k steps before the newest
        self.opens: list[float] = []
        self.highs: list[float] = []
        self.lows: list[float] = []
        self.volumes: list[float] = []
        self.regimes: list[Regime] = []
        self._segment_left = 0
        self._regime = Regime.RANGING
        self._anchor = math.log(self.base)
        self.lock = threading.Lock()

    def extend(self, n: int) -> None:
        rng = self._rng
        while len(self.opens) < n:
            if self._segment_left == 0:
                self._next_regime()
            self._segment_left -= 1
            close = self.closes[-1]
            regime, vol = self._regime, _VOL[self._regime]
            if regime is Regime.RANGING:
                # Going back in time, pull the earlier close towards the segment's level.
                step = _REVERSION * (self._anchor - math.log(close)) + rng.gauss(0, vol)
            else:
                drift = {Regime.TRENDING_UP: -_DRIFT, Regime.TRENDING_DOWN: _DRIFT}.get(regime, 0)
                step = drift + rng.gauss(0, vol)
            opened = close * math.exp(step)
            self.opens.append(opened)
            self.closes.append(opened)
            self.highs.append(max(opened, close) * math.exp(abs(rng.gauss(0, vol / 2))))
            self.lows.append(min(opened, close) * math.exp(-abs(rng.gauss(0, vol / 2))))
            busy = 2.0 if regime is Regime.VOLATILE else 1.0
            self.volumes.append(self.volume * busy * (1 + abs(rng.gauss(0, 0.5))))
            self.regimes.append(regime)

    def _next_regime(self) -> None:
        rng = self._rng
        self._segment_left = rng.randint(150, 400)
        choices = [r for r in Regime if r is not self._regime]
        regime = rng.choice(choices)
        if regime in (Regime.TRENDING_UP, Regime.TRENDING_DOWN):
            # Keep the long walk near its base: above it, the earlier past was more likely lower
            # (an up-trend read backwards), so prices stay in a plausible band.
            drift = math.log(self.closes[-1] / self.base)
            up = rng.random() < 0.5 + max(-0.35, min(0.35, drift))
            regime = Regime.TRENDING_UP if up else Regime.TRENDING_DOWN
        self._regime = regime
        self._anchor = math.log(self.closes[-1])


_walks: dict[int, _Walk] = {}
_walks_lock = threading.Lock()
_MAX_WALKS = 64


def _walk(symbol: str, n: int, seed: int | None) -> _Walk:
    key = seed if seed is not None else symbol_seed(symbol)
    with _walks_lock:
        walk = _walks.get(key)
        if walk is None:
            if len(_walks) >= _MAX_WALKS:
                _walks.pop(next(iter(_walks)))
            walk = _walks[key] = _Walk(key)
    with walk.lock:
        walk.extend(n)
    return walk


def symbol_seed(symbol: str) -> int:
    """The seed of a symbol's synthetic series (stable across processes and Python versions)."""
    return int.from_bytes(hashlib.sha256(symbol.encode()).digest()[:8], "big")


def parse_interval(interval: str) -> timedelta:
    """``"15m"``, ``"1h"``, ``"1d"`` ... as a timedelta; ValueError for anything else."""
    match = re.fullmatch(r"([1-9][0-9]*)([smhdw])", interval)
    if match is None:
        raise ValueError(f"interval {interval!r} is not like 15m, 1h or 1d")
    unit = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
    return timedelta(**{unit[match[2]]: int(match[1])})


def _floor(moment: datetime, step: timedelta) -> datetime:
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    return epoch + ((moment - epoch) // step) * step


def synthetic_series(
    symbol: str,
    n: int,
    end: datetime | None = None,
    interval: str = "1h",
    seed: int | None = None,
) -> list[PriceBarData]:
    """``n`` synthetic bars of ``symbol``, oldest first, the newest opening at ``end``.

    Prices depend only on the symbol (or ``seed``) and the bar's distance from the newest, so
    the same symbol gives the same prices in every process, and a longer series only adds
    older bars. ``end`` defaults to the current time floored to ``interval``; timestamps are
    the only thing that moves with the clock.
    """
    if n < 1:
        return []
    step = parse_interval(interval)
    end = _floor(end or datetime.now(UTC), step)
    walk = _walk(symbol, n, seed)
    return [
        PriceBarData.model_construct(
            symbol=symbol,
            ts=end - k * step,
            open=walk.opens[k],
            high=walk.highs[k],
            low=walk.lows[k],
            close=walk.closes[k],
            volume=walk.volumes[k],
            source=SYNTHETIC,
        )
        for k in range(n - 1, -1, -1)
    ]


def synthetic_closes(symbol: str, n: int, seed: int | None = None) -> list[float]:
    """The closes of :func:`synthetic_series` without building bars (oldest first)."""
    walk = _walk(symbol, n, seed)
    return walk.closes[n - 1 :: -1] if n > 0 else []


def synthetic_regimes(symbol: str, n: int, seed: int | None = None) -> list[RegimeSpan]:
    """The regimes the generator used for the bars of ``synthetic_series(symbol, n)``."""
    walk = _walk(symbol, n, seed)
    labels = walk.regimes[n - 1 :: -1] if n > 0 else []
    spans: list[RegimeSpan] = []
    start = 0
    for i in range(1, len(labels) + 1):
        if i == len(labels) or labels[i] is not labels[start]:
            spans.append(RegimeSpan(start, i, labels[start]))
            start = i
    return spans
