"""Price series for forecasters: imported OHLCV bars, else a seeded synthetic feed (labelled so).

A symbol's series comes from the ``price_bars`` table when ``fleet data import`` put bars there;
otherwise it is :func:`synthetic_series`: a random walk with regime changes (trending up or
down, ranging, volatile), seeded by the symbol so every process and every call sees the same
prices. Synthetic bars say ``source="synthetic"`` and forecasts made on them say
``synthetic_data=True``.

The small analytics the built-in bots need live here too (EMA forecast and backtest, regime
detection), so the worker and the reference remote bot compute the same way.
"""

from __future__ import annotations

import csv
import hashlib
import io
import math
import random
import re
import statistics
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from pathlib import Path

from pydantic import BaseModel, Field
from sqlalchemy import Insert, and_
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlmodel import col, select

from agentfleet import db
from agentfleet.errors import FleetError
from agentfleet.models import PriceBar

SYMBOL_PATTERN = re.compile(r"^[A-Z0-9]{2,20}$")
SYNTHETIC = "synthetic"


class Regime(StrEnum):
    TRENDING_UP = "trending_up"
    TRENDING_DOWN = "trending_down"
    RANGING = "ranging"
    VOLATILE = "volatile"


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


@dataclass(frozen=True)
class Closes:
    """The close prices a forecaster works on, oldest first (cheaper than full bars)."""

    symbol: str
    closes: list[float]
    last_ts: datetime | None
    synthetic: bool


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


TIME_COLUMNS = ("timestamp", "date", "time", "open_time", "datetime")
HEADERLESS_COLUMNS = ("open_time", "open", "high", "low", "close", "volume")
"""A file without a header (e.g. Binance klines) is read in this order."""


class BadRow(BaseModel):
    line: int
    reason: str


class ImportReport(BaseModel):
    """What ``import_csv`` did: ``imported`` new bars, ``updated`` bars whose values changed,
    ``unchanged`` bars already stored as they are (a re-import is all unchanged)."""

    path: str
    symbols: list[str]
    rows: int
    imported: int = 0
    updated: int = 0
    unchanged: int = 0
    first_ts: datetime | None = None
    last_ts: datetime | None = None
    header: bool = True
    bad: list[BadRow] = Field(default_factory=list)


class CsvImportError(FleetError):
    """A file that cannot be imported; nothing was written. ``bad`` lists every bad row."""

    def __init__(self, message: str, bad: list[BadRow] | None = None) -> None:
        super().__init__(message)
        self.bad = bad or []


Progress = Callable[[str, int, int], None]
"""``progress(phase, done, total)``, phase ``"validate"`` or ``"write"``."""


def normalize_symbol(symbol: str) -> str:
    """``"btc/usdt"`` -> ``"BTCUSDT"``; ValueError unless 2-20 letters and digits remain."""
    cleaned = re.sub(r"[\s/_-]", "", symbol).upper()
    if not SYMBOL_PATTERN.match(cleaned):
        raise ValueError(f"symbol {symbol!r} must be 2-20 letters and digits (like BTCUSDT)")
    return cleaned


def parse_timestamp(raw: str) -> datetime:
    """Seconds, milliseconds or microseconds since the epoch, or ISO 8601 (naive means UTC)."""
    text = raw.strip()
    try:
        number = float(text)
    except ValueError:
        number = None
    if number is not None:
        if not math.isfinite(number) or number < 0:
            raise ValueError(f"timestamp {raw!r} is not a time")
        scale = 1e6 if number >= 1e14 else 1e3 if number >= 1e11 else 1.0
        return datetime.fromtimestamp(number / scale, UTC)
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"timestamp {raw!r} is neither epoch seconds/ms nor ISO 8601") from None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _number(row: dict[str, str], name: str, default: float | None = None) -> float:
    raw = (row.get(name) or "").strip()
    if not raw:
        if default is None:
            raise ValueError(f"{name} is empty")
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"{name} {raw!r} is not a number") from None
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{name} {raw!r} must be a finite number >= 0")
    return value


def _columns(header: list[str]) -> dict[str, int] | None:
    """Column index of each field we read; None when ``header`` is not a header."""
    names = [name.strip().lower().replace(" ", "_") for name in header]
    found: dict[str, int] = {}
    for field_name in ("open", "high", "low", "close", "volume", "symbol"):
        if field_name in names:
            found[field_name] = names.index(field_name)
    for alias in TIME_COLUMNS:
        if alias in names:
            found["time"] = names.index(alias)
            break
    return found or None


def _read_rows(
    path: Path, symbol: str | None, progress: Progress | None
) -> tuple[list[PriceBarData], list[BadRow], bool]:
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise CsvImportError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise CsvImportError(f"{path}: cannot read it ({exc})") from None
    sample = text[:4096]
    delimiter = max(",;\t", key=sample.split("\n", 1)[0].count)
    reader = csv.reader(io.StringIO(text), delimiter=delimiter)
    first = next(reader, None)
    while first is not None and not any(cell.strip() for cell in first):
        first = next(reader, None)
    if first is None:
        raise CsvImportError(f"{path}: the file is empty")
    first_line = reader.line_num
    columns = _columns(first)
    header = columns is not None
    if columns is None:
        if len(first) < 5 or not first[0].strip().replace(".", "").isdigit():
            raise CsvImportError(
                f"{path}: no header found; the first line needs column names "
                f"({'/'.join(TIME_COLUMNS)}, open, high, low, close, volume[, symbol])"
            )
        columns = {name: i for i, name in enumerate(HEADERLESS_COLUMNS) if i < len(first)}
        columns["time"] = columns.pop("open_time")
    found = ", ".join(cell.strip() for cell in first) if header else ""
    if "close" not in columns:
        raise CsvImportError(f"{path}: no close column (found: {found})")
    if "time" not in columns:
        raise CsvImportError(
            f"{path}: no time column; name one {', '.join(TIME_COLUMNS)} (found: {found})"
        )
    if "symbol" not in columns and symbol is None:
        raise CsvImportError(f"{path}: the file has no symbol column; pass --symbol")
    fixed = normalize_symbol(symbol) if symbol is not None else None
    total = text.count("\n")
    rows: list[PriceBarData] = []
    bad: list[BadRow] = []
    seen: dict[tuple[str, datetime], int] = {}
    width = max(columns.values()) + 1
    pending = [] if header else [(first_line, first)]
    for line, cells in [*pending, *((reader.line_num, cells) for cells in reader)]:
        if not any(cell.strip() for cell in cells):
            continue
        if progress is not None and line % 10_000 == 0:
            progress("validate", line, total)
        try:
            if len(cells) < width:
                raise ValueError(f"{len(cells)} fields, expected at least {width}")
            row = {name: cells[i] for name, i in columns.items()}
            bar = _bar(row, fixed)
            key = (bar.symbol, bar.ts)
            if key in seen:
                raise ValueError(f"duplicate of line {seen[key]} ({bar.symbol} {bar.ts})")
            seen[key] = line
            rows.append(bar)
        except ValueError as exc:
            bad.append(BadRow(line=line, reason=str(exc)))
    return rows, bad, header


def _bar(row: dict[str, str], fixed: str | None) -> PriceBarData:
    symbol = fixed
    if "symbol" in row:
        own = normalize_symbol(row["symbol"])
        if fixed is not None and own != fixed:
            raise ValueError(f"symbol {own} differs from --symbol {fixed}")
        symbol = own
    assert symbol is not None  # noqa: S101 (_read_rows requires a column or --symbol)
    close = _number(row, "close")
    open_ = _number(row, "open", close)
    high = _number(row, "high", max(open_, close))
    low = _number(row, "low", min(open_, close))
    if close <= 0 or open_ <= 0 or low <= 0:
        raise ValueError("prices must be above 0")
    if high < max(open_, close, low) or low > min(open_, close):
        raise ValueError(f"high {high:g} / low {low:g} do not contain open {open_:g} and close")
    return PriceBarData(
        symbol=symbol,
        ts=parse_timestamp(row["time"]),
        open=open_,
        high=high,
        low=low,
        close=close,
        volume=_number(row, "volume", 0.0),
        source="import",
    )


def _upsert(dialect: str, columns: Sequence[str]) -> Insert:
    """``INSERT ... ON CONFLICT (symbol, ts) DO UPDATE`` of ``columns`` on either backend."""
    keys = ["symbol", "ts"]
    if dialect == "postgresql":
        pg = postgresql_insert(PriceBar)
        return pg.on_conflict_do_update(
            index_elements=keys, set_={c: pg.excluded[c] for c in columns}
        )
    if dialect == "sqlite":
        lite = sqlite_insert(PriceBar)
        return lite.on_conflict_do_update(
            index_elements=keys, set_={c: lite.excluded[c] for c in columns}
        )
    raise FleetError(f"price import: unsupported database backend {dialect!r}")


def import_csv(
    database_url: str,
    path: str | Path,
    symbol: str | None = None,
    progress: Progress | None = None,
    chunk: int = 2000,
) -> ImportReport:
    """Import an OHLCV CSV into ``price_bars``, all or nothing.

    Every row is validated first; any bad row raises :class:`CsvImportError` listing every bad
    line and nothing is written. Then the bars are upserted on (symbol, ts) in one transaction,
    so importing the same file again changes nothing and a corrected file updates in place.
    ``symbol`` (``--symbol``) names the symbol of a file without a symbol column; with one, rows
    must match it.
    """
    path = Path(path)
    rows, bad, header = _read_rows(path, symbol, progress)
    if bad:
        shown = "; ".join(f"line {b.line}: {b.reason}" for b in bad[:3])
        more = f"; and {len(bad) - 3} more" if len(bad) > 3 else ""
        raise CsvImportError(
            f"{path}: {len(bad)} bad row{'s' if len(bad) > 1 else ''}, nothing imported "
            f"({shown}{more})",
            bad,
        )
    if not rows:
        raise CsvImportError(f"{path}: no data rows")
    report = ImportReport(
        path=str(path),
        symbols=sorted({bar.symbol for bar in rows}),
        rows=len(rows),
        first_ts=min(bar.ts for bar in rows),
        last_ts=max(bar.ts for bar in rows),
        header=header,
    )
    values = ("open", "high", "low", "close", "volume")
    with db.session_scope(database_url) as session:
        stored: dict[tuple[str, datetime], tuple[float, ...]] = {}
        for name in report.symbols:
            span = [bar.ts for bar in rows if bar.symbol == name]
            found = session.exec(
                select(PriceBar).where(
                    and_(
                        col(PriceBar.symbol) == name,
                        col(PriceBar.ts) >= min(span),
                        col(PriceBar.ts) <= max(span),
                    )
                )
            ).all()
            for row in found:
                stored[(row.symbol, row.ts)] = tuple(getattr(row, v) for v in values)
        changed = []
        for bar in rows:
            before = stored.get((bar.symbol, bar.ts))
            if before is None:
                report.imported += 1
            elif before != tuple(getattr(bar, v) for v in values):
                report.updated += 1
            else:
                report.unchanged += 1
                continue
            changed.append(bar.model_dump())
        statement = _upsert(session.get_bind().dialect.name, (*values, "source"))
        for start in range(0, len(changed), chunk):
            session.execute(statement, changed[start : start + chunk])
            if progress is not None:
                progress("write", min(start + chunk, len(changed)), len(changed))
    return report
