"""``fleet data import`` / ``fleet data show``: the price series forecasters read."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import BarColumn, Progress, TaskID, TextColumn
from rich.table import Table

from agentfleet.errors import FleetError, first_line
from starters.cli.output import JsonOpt, console, emit_json, err_console, fail
from starters.cli.settings_arg import load_settings

app = typer.Typer(
    help="Market data: import OHLCV CSV files, show the series a symbol's forecasters read.",
    no_args_is_help=True,
)

PROGRESS_FROM_BYTES = 1_000_000
"""Files at least this big show a progress bar while they are validated and written."""


@app.command("import")
def import_(
    file: Annotated[Path, typer.Argument(help="OHLCV CSV file.", show_default=False)],
    symbol: Annotated[
        str | None,
        typer.Option(
            "--symbol",
            help="Symbol of every row (files without a symbol column).",
            show_default=False,
        ),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Import an OHLCV CSV into the database, all or nothing; importing again is harmless.

    The header names the columns: timestamp, date, time or open_time (epoch seconds, ms or ISO
    8601), open, high, low, close, volume and optionally symbol; a file without a header is read
    as open_time, open, high, low, close, volume (Binance klines). Any bad row stops the import
    and every bad line is listed; nothing is written.
    """
    from sqlalchemy.exc import SQLAlchemyError

    from agentfleet import db
    from agentfleet.bots.market import csv_import

    settings = load_settings(as_json)
    url = settings.effective_database_url
    if not file.is_file():
        fail(f"{file}: no such file", as_json=as_json)
    try:
        db.validate_database_url(url)
        db.upgrade_database(url)
        with _ImportProgress(file, quiet=as_json) as progress:
            report = csv_import.import_csv(url, file, symbol=symbol, progress=progress)
    except csv_import.CsvImportError as exc:
        if as_json:
            bad = [row.model_dump() for row in exc.bad]
            emit_json({"ok": False, "error": str(exc), "bad_rows": bad})
        fail(str(exc), exc.exit_code)
    except ValueError as exc:  # --symbol that is not a symbol
        fail(str(exc), as_json=as_json)
    except FleetError as exc:
        fail(str(exc), exc.exit_code, as_json=as_json)
    except SQLAlchemyError as exc:
        fail(f"cannot write price bars: {first_line(exc)}", as_json=as_json)
    if as_json:
        emit_json({"ok": True, **report.model_dump(mode="json", exclude={"bad"})})
        return
    span = f"{report.first_ts:%Y-%m-%d %H:%M} to {report.last_ts:%Y-%m-%d %H:%M} UTC"
    console.print(
        f"{', '.join(report.symbols)}: {report.rows} bars ({span}): "
        f"{report.imported} imported, {report.updated} updated, {report.unchanged} unchanged",
        highlight=False,
        soft_wrap=True,
    )


@app.command("show")
def show(
    symbol: Annotated[str, typer.Argument(help="Symbol, e.g. BTCUSDT.", show_default=False)],
    last: Annotated[int, typer.Option("--last", min=1, max=10_000, help="How many bars.")] = 10,
    as_json: JsonOpt = False,
) -> None:
    """The last bars of SYMBOL as forecasters see them: imported, else the synthetic feed."""
    from sqlalchemy.exc import SQLAlchemyError

    from agentfleet import db
    from agentfleet.bots.market import csv_import, feed, storage

    settings = load_settings(as_json)
    url = settings.effective_database_url
    try:
        name = csv_import.normalize_symbol(symbol)
    except ValueError as exc:
        fail(str(exc), as_json=as_json)
    try:
        db.validate_database_url(url)
        if url.startswith("sqlite:///") and not Path(url.removeprefix("sqlite:///")).exists():
            bars, synthetic = feed.synthetic_series(name, last), True
        else:
            bars, synthetic = storage.load_series(url, name, last)
    except FleetError as exc:
        fail(str(exc), exc.exit_code, as_json=as_json)
    except SQLAlchemyError as exc:
        fail(
            f"cannot read price bars: {first_line(exc)}; run `fleet setup` (or `fleet up`) to "
            "migrate the database",
            as_json=as_json,
        )
    if as_json:
        emit_json(
            {
                "ok": True,
                "symbol": name,
                "synthetic": synthetic,
                "bars": [bar.model_dump(mode="json") for bar in bars],
            }
        )
        return
    table = Table(box=None, header_style="bold")
    for column in ("time (UTC)", "open", "high", "low", "close", "volume"):
        table.add_column(column, justify="left" if column.startswith("time") else "right")
    for bar in bars:
        table.add_row(
            f"{bar.ts:%Y-%m-%d %H:%M}",
            *(f"{value:,.6g}" for value in (bar.open, bar.high, bar.low, bar.close, bar.volume)),
        )
    console.print(table)
    if synthetic:
        console.print(
            f"[yellow]synthetic[/] series: no imported bars for {name} "
            "(`fleet data import FILE.csv` adds real ones)",
            highlight=False,
            soft_wrap=True,
        )


class _ImportProgress:
    """A Rich progress bar fed by ``import_csv``'s callback; silent for small files or --json."""

    def __init__(self, file: Path, *, quiet: bool) -> None:
        self._show = not quiet and file.stat().st_size >= PROGRESS_FROM_BYTES
        self._bar = Progress(
            TextColumn("{task.description}"), BarColumn(), console=err_console, transient=True
        )
        self._tasks: dict[str, TaskID] = {}

    def __enter__(self) -> Any:
        if not self._show:
            return None
        self._bar.start()
        return self._update

    def __exit__(self, *exc: object) -> None:
        if self._show:
            self._bar.stop()

    def _update(self, phase: str, done: int, total: int) -> None:
        task = self._tasks.get(phase)
        if task is None:
            task = self._tasks[phase] = self._bar.add_task(f"{phase} rows", total=total)
        self._bar.update(task, completed=done, total=total)
