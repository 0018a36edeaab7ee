"""A symbol's series as forecasters read it: the ``price_bars`` table when ``fleet data import``
put bars there, otherwise the synthetic feed (:mod:`agentfleet.bots.market.feed`)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlmodel import col, select

from agentfleet import db
from agentfleet.bots.market.feed import PriceBarData, synthetic_closes, synthetic_series
from agentfleet.models import PriceBar


@dataclass(frozen=True)
class Closes:
    """The close prices a forecaster works on, oldest first (cheaper than full bars)."""

    symbol: str
    closes: list[float]
    last_ts: datetime | None
    synthetic: bool


def load_series(database_url: str, symbol: str, n: int) -> tuple[list[PriceBarData], bool]:
    """The last ``n`` bars of ``symbol`` (oldest first) and whether they are synthetic.

    Imported bars when the ``price_bars`` table has any for the symbol, else the synthetic feed.
    """
    with db.session_scope(database_url) as session:
        rows = session.exec(
            select(PriceBar)
            .where(col(PriceBar.symbol) == symbol)
            .order_by(col(PriceBar.ts).desc())
            .limit(n)
        ).all()
    if not rows:
        return synthetic_series(symbol, n), True
    bars = [
        PriceBarData(
            symbol=row.symbol,
            ts=row.ts,
            open=row.open,
            high=row.high,
            low=row.low,
            close=row.close,
            volume=row.volume,
            source=row.source,
        )
        for row in reversed(rows)
    ]
    return bars, False


def load_closes(database_url: str, symbol: str, n: int) -> Closes:
    """Like :func:`load_series`, closes only (what forecasting needs, fast for long windows)."""
    with db.session_scope(database_url) as session:
        rows = session.exec(
            select(col(PriceBar.ts), col(PriceBar.close))
            .where(col(PriceBar.symbol) == symbol)
            .order_by(col(PriceBar.ts).desc())
            .limit(n)
        ).all()
    if not rows:
        return Closes(symbol, synthetic_closes(symbol, n), None, True)
    return Closes(symbol, [close for _, close in reversed(rows)], rows[0][0], False)
