"""``fleet data import``: an OHLCV CSV (with a header, or headerless like Binance klines) into the
``price_bars`` table, validated first and written all or nothing."""

from __future__ import annotations

import csv
import io
import math
import re
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path

from pydantic import BaseModel, Field
from sqlalchemy import Insert, and_
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlmodel import col, select

from agentfleet import db
from agentfleet.bots.market.feed import PriceBarData
from agentfleet.errors import FleetError
from agentfleet.models import PriceBar

SYMBOL_PATTERN = re.compile(r"^[A-Z0-9]{2,20}$")
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
