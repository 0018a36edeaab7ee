"""The command center benchmark runs end to end in its quick mode and reports Telegram round trips,
the direct calls and the skeleton in JSON; it never asserts timings."""

from __future__ import annotations

import json

import pytest

from bench.command_center import QUICK, amain

FIGURES = {"name", "shape", "activities", "runs", "burst", "p50_ms", "p95_ms", "mean_ms"}
PHASES = {"to_start_ms", "workflow_ms", "after_close_ms"}
COMPARED = {"added_p50_ms", "added_p95_ms", "telegram_vs_direct_p50", "telegram_vs_direct_p95"}


async def test_quick_run_reports_telegram_direct_and_skeleton_rows_as_json(
    capsys: pytest.CaptureFixture[str],
) -> None:
    status = await amain(["--quick", "--json"])

    assert status == 0
    report = json.loads(capsys.readouterr().out)
    assert report["benchmark"] == "command_center"
    assert (report["runs"], report["burst"], report["warmup"]) == (
        QUICK["runs"],
        QUICK["burst"],
        QUICK["warmup"],
    )

    forecast = report["forecast"]
    assert forecast["command"] == "/forecast all BTCUSDT 1h"
    assert [size["bots"] for size in forecast["sizes"]] == [10, 100]
    for size, batches, messages in zip(forecast["sizes"], (1, 2), (1, 2), strict=True):
        assert size["steps"] == [1, batches], "resolve, then the batches at once"
        assert size["activities"] == 1 + batches
        assert size["messages_per_reply"] == messages, "past 20 answers the table is a file"
        assert size.keys() >= COMPARED | {"cli_vs_skeleton_p50", "telegram_vs_skeleton_p50"}
        assert set(size["cli_phases_ms"]) == set(size["telegram_phases_ms"]) == PHASES
        assert size["telegram_phases_ms"]["workflow_ms"] > 0
    names = [row["name"] for row in forecast["rows"]]
    assert names == [
        f"{what} ({bots})" for bots in (10, 100) for what in ("skeleton", "CLI path", "Telegram")
    ]
    for index, row in enumerate(forecast["rows"]):
        batches = 1 + index // 3
        assert row.keys() >= FIGURES | {"throughput_per_s", "p50_vs_skeleton"}
        assert (row["shape"], row["activities"]) == (f"1 + {batches} parallel", 1 + batches)
        assert (row["runs"], row["burst"]) == (QUICK["runs"], QUICK["burst"])
        assert 0 < row["p50_ms"] <= row["p95_ms"]
        assert row["p50_vs_skeleton"] > 0, "every row has the skeleton of its own shape"

    query = report["status"]
    assert query["bot"].startswith("cc-status-")
    expected = ["show_bot", f"Telegram /status {query['bot']}"]
    assert [row["name"] for row in query["rows"]] == expected
    for row in query["rows"]:
        assert (row["shape"], row["activities"]) == ("query", 0)
        assert 0 < row["p50_ms"] <= row["p95_ms"]
        assert row["p50_vs_skeleton"] > 0, "compared with show_bot"
    assert query.keys() >= COMPARED

    telegram = report["telegram"]
    per_row = QUICK["warmup"] + QUICK["burst"] + QUICK["runs"]
    assert telegram["messages"] == per_row * (1 + 2 + 1), "one reply each, two past 20 answers"
    assert telegram["rate_limited_429"] == 0, "pacing is not what is measured"
    assert telegram["chat_interval_s"] == 0.0
