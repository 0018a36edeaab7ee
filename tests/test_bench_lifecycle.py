"""The lifecycle benchmark runs end to end with tiny numbers and reports every part in JSON;
it never asserts timings."""

from __future__ import annotations

import json

import pytest

from bench.lifecycle import amain

FIGURES = {"name", "shape", "activities", "runs", "burst", "p50_ms", "p95_ms", "mean_ms"}


async def test_tiny_run_reports_creation_commands_and_idle_cost_as_json(
    capsys: pytest.CaptureFixture[str],
) -> None:
    argv = ["--create", "1", "--create-runs", "1", "--command-sizes", "5", "--command-runs", "2"]
    argv += ["--command-burst", "1", "--idle", "5", "--idle-window", "0.5", "--json"]
    argv += ["--inline-sizes", "5"]

    status = await amain(argv)

    assert status == 0
    report = json.loads(capsys.readouterr().out)
    assert report["benchmark"] == "lifecycle"

    creation = report["creation"]
    assert creation["bots"] == 1
    per_bot = creation["per_bot"]
    assert per_bot["activities"] == sum(per_bot["activity_types"].values())
    assert per_bot["child_workflows"] == 3, "two funding transactions and one registration"
    assert [row["name"] for row in creation["rows"]] == ["skeleton", "bot creation"] * 2
    for row in creation["rows"]:
        assert row.keys() >= FIGURES
        assert row["activities"] == per_bot["activities"]
        assert row["p50_vs_skeleton"] is not None, "every row has a skeleton of its shape"

    commands = report["commands"]
    assert [size["bots"] for size in commands["sizes"]] == [5]
    assert commands["sizes"][0]["batches"] == 1
    assert commands["sizes"][0]["activities"] == 2, "resolve, then one batch"
    [row] = commands["rows"]
    assert row.keys() >= FIGURES
    assert (row["shape"], row["activities"]) == ("1 + 1 parallel", 2)
    assert row["p50_vs_skeleton"] is not None

    inline = report["inline"]
    assert [row["name"] for row in inline["rows"]] == ["inline, forecast to 5"]
    assert inline["rows"][0]["p50_vs_skeleton"] is not None and inline["failures"] == []

    idle = report["idle"]
    assert idle["entities"] == 5
    assert [p["process"] for p in idle["processes"]] == ["dev server", "worker (this process)"]
    for process in idle["processes"]:
        assert {"rss_before_mb", "rss_after_mb", "cpu_before_pct", "cpu_after_pct"} <= set(process)
