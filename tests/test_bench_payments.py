"""The payments benchmark runs end to end in its quick mode and reports every path in JSON;
it never asserts timings."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from bench.harness import figures_from
from bench.payments import ACTIVITIES, SHAPE, BlockPhase, aims, aims_text, amain, with_latencies

FIGURES = {"name", "shape", "activities", "runs", "burst", "p50_ms", "p95_ms", "mean_ms"}


async def test_quick_run_reports_skeleton_gateway_and_sdk_rows_as_json(
    capsys: pytest.CaptureFixture[str],
) -> None:
    status = await amain(["--quick", "--relayers", "1,2", "--json"])

    assert status == 0
    report = json.loads(capsys.readouterr().out)
    assert report["benchmark"] == "payments"
    assert (report["purchases"], report["concurrent"], report["warmup"]) == (2, 3, 1)
    assert report["sdk_burst"] == 3

    per_payment = report["per_payment"]
    assert per_payment["activities"] + per_payment["local_activities"] == ACTIVITIES
    assert per_payment["activity_types"] == {
        "verify_payment": 1,
        "run_skill": 1,
        "send_with_relayer": 1,
    }
    assert per_payment["local_activities"] == 1, "record"
    assert per_payment["workflow_tasks"] == 4
    assert "child_workflows" not in per_payment, "the settlement is an activity"
    assert "signals" not in per_payment, "the nonce comes by update, the outcome from the activity"

    assert report["block_times"] == [0, 1]
    rows = report["rows"]
    assert [(row["block_time_s"], row["kind"]) for row in rows] == [
        (block_time, kind)
        for block_time in (0, 1)
        for kind in ("skeleton", "gateway", "gateway", "sdk")
    ]
    for row in rows:
        assert row.keys() >= FIGURES | {"throughput_per_s", "burst_p50_ms", "burst_p95_ms"}
        assert (row["runs"], row["burst"]) == (2, 3)
        assert 0 < row["p50_ms"] <= row["p95_ms"]
        assert row["throughput_per_s"] > 0
    for block_time in (0, 1):
        skeleton, one, two, sdk = (row for row in rows if row["block_time_s"] == block_time)
        assert [one["relayers"], two["relayers"]] == [1, 2]
        assert one["relayers_used_in_burst"] == 1
        for row in (one, two, sdk):
            assert row["reverted"] == 0, "no settlement the chain refuses is ever broadcast"
            assert row["failures"] == 0, row["failure_samples"]
        for row in (skeleton, one, two):
            assert (row["shape"], row["activities"]) == (SHAPE, ACTIVITIES)
        for row in (one, two):
            for key in ("p50_vs_skeleton", "throughput_vs_skeleton", "p50_vs_sdk"):
                assert row[key] > 0, key
            phases = row["phases_ms"]
            for step in ("verify", "skill", "settle", "record", "queued", "workflow_tasks"):
                assert 0 <= phases[step] <= phases["saga"] <= phases["total"], step
            assert min(phases["tx_nonce"], phases["tx_send"]) >= 0
            assert phases["tx_nonce"] + phases["tx_send"] <= phases["settle"] + 1, "in the span"
        assert set(sdk["phases_ms"]) == {"total", "outside", "verify", "skill", "settle"}
        assert sdk["p50_vs_skeleton"] is None, "the SDK has no workflow to compare with"
        assert 0 < sdk["facilitator_share_of_burst"] <= 1

    instant, blocks = report["aims"]
    assert (instant["block_time_s"], blocks["block_time_s"]) == (0, 1)
    instant_skeleton, _, _, instant_sdk = rows[:4]
    assert instant["sdk_chain_ms"] == pytest.approx(
        instant_sdk["phases_ms"]["verify"] + instant_sdk["phases_ms"]["settle"]
    )
    assert instant["floor_ms"] == pytest.approx(
        instant_skeleton["p50_ms"] + instant["sdk_chain_ms"]
    )
    assert instant["overhead_ms"]["1"] == pytest.approx(rows[1]["p50_ms"] - instant["floor_ms"])
    assert len(blocks["checks"]) == 3 * 2 + 1, "failures, throughput, p50 per row; relayers"


def test_aims_check_overhead_at_instant_mining_and_burst_and_latency_at_1_s_blocks() -> None:
    rows: list[dict[str, Any]] = []
    for block_time, sdk_ms in ((0, 12.0), (1, 1000.0)):
        at = {"block_time_s": block_time}
        rows += [
            {**at, "kind": "skeleton", "p50_ms": 20.0, "throughput_per_s": 40.0},
            {
                **at,
                "kind": "gateway",
                "name": "gateway via 1 relayer",
                "relayers": 1,
                "p50_ms": 50.0 if block_time == 0 else 700.0,
                "throughput_per_s": 30.0,
                "throughput_vs_skeleton": 0.75,
                "p50_vs_sdk": 700.0 / sdk_ms,
                "failures": 0,
            },
            {
                **at,
                "kind": "sdk",
                "p50_ms": sdk_ms,
                "phases_ms": {"verify": 4.0, "settle": 6.0 if block_time == 0 else 990.0},
            },
        ]

    instant, blocks = aims(rows)

    assert instant["floor_ms"] == pytest.approx(30.0)
    assert instant["overhead_ms"] == {"1": pytest.approx(20.0)}
    [overhead] = instant["checks"]
    assert (overhead["limit"], overhead["met"]) == (15.0, False), "20 ms over a 15 ms aim"
    assert "NOT met" in aims_text(instant)
    assert [check["met"] for check in blocks["checks"]] == [True, True, True]
    assert aims(rows[:2]) == [], "no SDK row, no floor"


def test_sequential_figures_come_from_the_purchases_own_timings() -> None:
    measured = figures_from(
        "gateway via 1 relayer",
        shape=SHAPE,
        activities=ACTIVITIES,
        latencies_s=[1.9, 2.4, 2.1],
        burst=200,
        burst_wall_s=20.0,
    )

    row = with_latencies(measured, [0.5, 0.7, 0.6, 0.9])

    assert (row.runs, row.burst, row.throughput_per_s) == (4, 200, 10.0)
    assert row.p50_ms == pytest.approx(650.0), "the pauses before each purchase are left out"
    assert row.mean_ms == pytest.approx(675.0)


async def test_block_phase_pauses_less_than_a_block_and_not_at_all_with_instant_mining() -> None:
    pauses = BlockPhase(2, seed=1)
    draws = [pauses.rng.uniform(0, 2) for _ in range(50)]
    assert all(0 <= draw < 2 for draw in draws) and len(set(draws)) == 50
    assert BlockPhase(2, seed=1).rng.random() == BlockPhase(2, seed=1).rng.random(), "seeded"

    started = time.perf_counter()
    await BlockPhase(0, seed=1).wait()
    assert time.perf_counter() - started < 0.5
