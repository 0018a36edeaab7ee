"""The skeleton benchmark runs end to end and reports its figures; it never asserts timings."""

from __future__ import annotations

import json

import pytest
from temporalio.testing import WorkflowEnvironment

from bench.harness import Figures, dump_json
from bench.skeleton import amain


async def test_cli_json_reports_every_shape_with_positive_figures(
    dev_env: WorkflowEnvironment, capsys: pytest.CaptureFixture[str]
) -> None:
    address = dev_env.client.service_client.config.target_host
    argv = ["--activities", "0,1", "--runs", "2", "--burst", "3", "--warmup", "1"]

    status = await amain([*argv, "--address", address, "--json"])

    assert status == 0
    report = json.loads(capsys.readouterr().out)
    assert report["benchmark"] == "skeleton"
    shapes = [(row["shape"], row["activities"]) for row in report["rows"]]
    assert shapes == [("none", 0), ("regular", 1), ("local", 1)]
    for row in report["rows"]:
        assert row["runs"] == 2
        assert row["burst"] == 3
        assert row["p50_ms"] > 0
        assert row["p95_ms"] >= row["p50_ms"]
        assert row["mean_ms"] > 0
        assert row["throughput_per_s"] > 0


def _row(name: str, shape: str, activities: int, p50_ms: float, per_s: float) -> Figures:
    return Figures(
        name=name,
        shape=shape,
        activities=activities,
        runs=1,
        burst=1,
        p50_ms=p50_ms,
        p95_ms=p50_ms,
        mean_ms=p50_ms,
        throughput_per_s=per_s,
    )


def test_rows_are_compared_with_the_skeleton_of_their_own_shape() -> None:
    floors = [_row("skeleton", "regular", 3, 200, 40), _row("skeleton", "local", 3, 50, 50)]
    mine = [_row("chain", "local", 3, 100, 25), _row("chain", "regular", 7, 500, 10)]

    rows = json.loads(dump_json(mine, baseline=floors))["rows"]

    assert rows[0]["p50_vs_skeleton"] == pytest.approx(2.0)
    assert rows[0]["throughput_vs_skeleton"] == pytest.approx(0.5)
    assert rows[1]["p50_vs_skeleton"] is None
    assert rows[1]["throughput_vs_skeleton"] is None
