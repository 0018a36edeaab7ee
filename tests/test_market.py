"""Price series: the seeded synthetic feed with regimes, and all-or-nothing CSV import."""

from __future__ import annotations

import json
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner

from agentfleet.bots.market import csv_import, ema, feed, regimes, storage
from starters.cli.main import app

END = datetime(2025, 3, 1, 12, tzinfo=UTC)

GOOD_CSV = """date,open,high,low,close,volume
2025-01-01T00:00:00Z,100,110,95,105,1000
2025-01-01T01:00:00Z,105,108,101,102,900
2025-01-01T02:00:00Z,102,104,99,103.5,
2025-01-01T03:00:00Z,103.5,107,103,106,1200
"""


def _write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(text)
    return path


def test_synthetic_series_is_the_same_for_the_same_symbol() -> None:
    first = feed.synthetic_series("BTCUSDT", 500, end=END)
    again = feed.synthetic_series("BTCUSDT", 500, end=END)
    other = feed.synthetic_series("ETHUSDT", 500, end=END)
    assert [b.model_dump() for b in first] == [b.model_dump() for b in again]
    assert [b.close for b in first] != [b.close for b in other]
    assert {b.source for b in first} == {"synthetic"}
    assert first[-1].ts == END and first[1].ts - first[0].ts == timedelta(hours=1)
    longer = feed.synthetic_series("BTCUSDT", 2000, end=END)
    assert [b.close for b in longer[-500:]] == [b.close for b in first], "one market per symbol"
    assert feed.synthetic_closes("BTCUSDT", 500) == [b.close for b in first]
    for bar in first:
        assert bar.low <= min(bar.open, bar.close) <= max(bar.open, bar.close) <= bar.high
        assert bar.low > 0 and bar.volume > 0
    assert all(a.close == b.open for a, b in zip(first, first[1:], strict=False))


def test_synthetic_series_changes_regime_every_few_hundred_bars() -> None:
    spans = feed.synthetic_regimes("BTCUSDT", 3000)
    assert {span.regime for span in spans} == set(regimes.Regime)
    inner = spans[1:-1]
    assert all(150 <= span.end - span.start <= 400 for span in inner)
    assert all(a.regime is not b.regime for a, b in zip(spans, spans[1:], strict=False))


def test_detect_regime_recognizes_the_generators_regimes() -> None:
    right = Counter[bool]()
    for symbol in ("BTCUSDT", "ETHUSDT", "SOLUSDT", "EURUSD"):
        closes = feed.synthetic_closes(symbol, 6000)
        for span in feed.synthetic_regimes(symbol, 6000)[1:]:
            if span.end - span.start >= 150 and span.start >= 200:
                regime, confidence = regimes.detect_regime(closes[span.start - 200 : span.end])
                assert 0 <= confidence <= 1
                right[regime is span.regime] += 1
    assert right[True] / right.total() > 0.8, right


def test_ema_backtest_scores_one_step_ahead_forecasts() -> None:
    closes = [10.0, 11.0, 12.0, 11.0]
    assert ema.ema(closes, 1.0) == 11.0
    assert ema.ema(closes, 0.5) == pytest.approx(11.125)
    result = ema.backtest_ema(closes, 1.0)  # "tomorrow like today"
    assert result.forecasts == 3 and result.mean_abs_error == pytest.approx(1.0)
    assert result.hit_rate is None  # a forecast equal to the close calls no direction
    lagging = ema.backtest_ema(closes, 0.5)
    assert lagging.hit_rate == pytest.approx(
        0.5
    )  # below the close in the rise (miss), above at the fall (hit)


def test_load_series_is_synthetic_until_bars_are_imported(
    migrated_database_url: str, tmp_path: Path
) -> None:
    bars, synthetic = storage.load_series(migrated_database_url, "TESTUSD", 3)
    assert synthetic and len(bars) == 3 and bars[0].source == "synthetic"
    csv_import.import_csv(migrated_database_url, _write(tmp_path, "p.csv", GOOD_CSV), "TESTUSD")
    bars, synthetic = storage.load_series(migrated_database_url, "TESTUSD", 3)
    assert not synthetic
    assert [b.close for b in bars] == [102, 103.5, 106]
    assert bars[-1].ts == datetime(2025, 1, 1, 3, tzinfo=UTC) and bars[-1].source == "import"
    series = storage.load_closes(migrated_database_url, "TESTUSD", 10)
    assert series.closes == [105, 102, 103.5, 106] and not series.synthetic


def test_csv_import_is_idempotent_and_updates_in_place(
    migrated_database_url: str, tmp_path: Path
) -> None:
    path = _write(tmp_path, "p.csv", GOOD_CSV)
    first = csv_import.import_csv(migrated_database_url, path, "btc/usdt")
    assert (first.symbols, first.rows, first.imported, first.updated) == (["BTCUSDT"], 4, 4, 0)
    assert first.first_ts == datetime(2025, 1, 1, tzinfo=UTC)
    again = csv_import.import_csv(migrated_database_url, path, "BTCUSDT")
    assert (again.imported, again.updated, again.unchanged) == (0, 0, 4)
    corrected = GOOD_CSV.replace("103.5,107,103,106,1200", "103.5,107,103,106.5,1200")
    fixed = csv_import.import_csv(
        migrated_database_url, _write(tmp_path, "q.csv", corrected), "BTCUSDT"
    )
    assert (fixed.imported, fixed.updated, fixed.unchanged) == (0, 1, 3)
    closes = storage.load_closes(migrated_database_url, "BTCUSDT", 100).closes
    assert closes == [105, 102, 103.5, 106.5]


def test_bad_csv_imports_nothing_and_names_every_bad_line(
    migrated_database_url: str, tmp_path: Path
) -> None:
    text = (
        GOOD_CSV
        + "2025-01-01T04:00:00Z,106,107,105,abc,1\n"  # line 6
        + "2025-01-01T05:00:00Z,106,104,105,105,1\n"  # line 7: high below low
        + "2025-01-01T01:00:00Z,105,108,101,102,900\n"  # line 8: duplicate of line 3
        + "yesterday,1,1,1,1,1\n"  # line 9
        + "2025-01-01T06:00:00Z,1\n"  # line 10: too short
    )
    with pytest.raises(csv_import.CsvImportError) as caught:
        csv_import.import_csv(migrated_database_url, _write(tmp_path, "bad.csv", text), "BTCUSDT")
    assert [row.line for row in caught.value.bad] == [6, 7, 8, 9, 10]
    assert "5 bad rows, nothing imported" in str(caught.value)
    assert "line 6: close 'abc' is not a number" in str(caught.value)
    assert "duplicate of line 3" in caught.value.bad[2].reason
    assert "\n" not in str(caught.value)
    assert storage.load_closes(migrated_database_url, "BTCUSDT", 10).synthetic


def test_csv_timestamps_and_columns_are_detected(
    migrated_database_url: str, tmp_path: Path
) -> None:
    ms = 1_735_689_600_000  # 2025-01-01T00:00Z
    binance = "".join(
        f"{ms + i * 3_600_000},1,2,0.5,{1 + i / 10},10,{ms + i * 3_600_000 + 3_599_999},0,0,0,0,0\n"
        for i in range(3)
    )
    report = csv_import.import_csv(
        migrated_database_url, _write(tmp_path, "k.csv", binance), "ETHUSDT"
    )
    assert not report.header and report.rows == 3
    assert report.first_ts == datetime(2025, 1, 1, tzinfo=UTC)
    mixed = (
        "Symbol;Timestamp;Close\n"
        "SOLUSDT;1735689600;10\n"
        "SOLUSDT;1735689600000000;10\n"  # microseconds, same moment
        "EURUSD;2025-01-01 00:00:00+01:00;1.03\n"
    )
    with pytest.raises(csv_import.CsvImportError) as caught:
        csv_import.import_csv(migrated_database_url, _write(tmp_path, "m.csv", mixed))
    assert [row.line for row in caught.value.bad] == [3]
    report = csv_import.import_csv(
        migrated_database_url, _write(tmp_path, "m2.csv", mixed.replace("1735689600000000", "1"))
    )
    assert report.symbols == ["EURUSD", "SOLUSDT"] and report.rows == 3
    bars, _ = storage.load_series(migrated_database_url, "EURUSD", 1)
    assert bars[0].ts == datetime(2024, 12, 31, 23, tzinfo=UTC)
    assert bars[0].open == bars[0].high == bars[0].low == bars[0].close == 1.03


@pytest.mark.parametrize(
    ("text", "symbol", "message"),
    [
        ("date,open,high,low,volume\n2025-01-01,1,1,1,1\n", "BTCUSDT", "no close column"),
        ("date,close\n2025-01-01,1\n", None, "no symbol column; pass --symbol"),
        ("open,close\n1,1\n", "BTCUSDT", "no time column"),
        ("", "BTCUSDT", "the file is empty"),
        ("date,close\n", "BTCUSDT", "no data rows"),
    ],
)
def test_unusable_csv_is_one_clear_error(
    text: str, symbol: str | None, message: str, tmp_path: Path
) -> None:
    with pytest.raises(csv_import.CsvImportError, match=message):
        csv_import.import_csv("sqlite:///unused.db", _write(tmp_path, "x.csv", text), symbol)


def test_fleet_data_import_and_show(
    migrated_database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("FLEET_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("FLEET_DATABASE_URL", migrated_database_url)
    runner = CliRunner()
    path = _write(tmp_path, "p.csv", GOOD_CSV)

    synthetic = runner.invoke(app, ["data", "show", "BTCUSDT", "--last", "5", "--json"])
    assert synthetic.exit_code == 0, synthetic.output
    shown = json.loads(synthetic.stdout)
    assert shown["synthetic"] and len(shown["bars"]) == 5

    imported = runner.invoke(app, ["data", "import", str(path), "--symbol", "BTCUSDT", "--json"])
    assert imported.exit_code == 0, imported.output
    report = json.loads(imported.stdout)
    assert report["ok"] and report["imported"] == 4 and report["symbols"] == ["BTCUSDT"]
    again = runner.invoke(app, ["data", "import", str(path), "--symbol", "BTCUSDT"])
    assert again.exit_code == 0 and "0 imported, 0 updated, 4 unchanged" in again.stdout

    shown = json.loads(runner.invoke(app, ["data", "show", "btcusdt", "--json"]).stdout)
    assert not shown["synthetic"] and [b["close"] for b in shown["bars"]] == [105, 102, 103.5, 106]
    table = runner.invoke(app, ["data", "show", "BTCUSDT", "--last", "2"])
    assert table.exit_code == 0 and "103.5" in table.stdout and "synthetic" not in table.stdout

    bad = _write(tmp_path, "bad.csv", GOOD_CSV + "2025-01-02,1,1,1,x,1\n")
    failed = runner.invoke(app, ["data", "import", str(bad), "--symbol", "BTCUSDT", "--json"])
    assert failed.exit_code == 1
    answer = json.loads(failed.stdout)
    assert not answer["ok"] and answer["bad_rows"] == [
        {"line": 6, "reason": "close 'x' is not a number"}
    ]
    assert failed.stderr.count("\n") == 1 and "nothing imported" in failed.stderr

    missing = runner.invoke(app, ["data", "import", str(tmp_path / "nope.csv"), "--symbol", "X1"])
    assert missing.exit_code == 1 and "no such file" in missing.stderr
    no_close = _write(tmp_path, "nc.csv", "date,open\n2025-01-01,1\n")
    failed = runner.invoke(app, ["data", "import", str(no_close), "--symbol", "BTCUSDT"])
    assert failed.exit_code == 1 and "no close column" in failed.stderr
