"""The payments benchmark runs end to end in its quick mode and reports every path in JSON;
it never asserts timings."""

from __future__ import annotations

import json

import pytest

from bench.payments import ACTIVITIES, SHAPE, aims, aims_text, amain

FIGURES = {"name", "shape", "activities", "runs", "burst", "p50_ms", "p95_ms", "mean_ms"}


async def test_quick_run_reports_skeleton_gateway_and_sdk_rows_as_json(
    capsys: pytest.CaptureFixture[str],
) -> None:
    status = await amain(["--quick", "--relayers", "1,2", "--json"])

    assert status == 0
    report = json.loads(capsys.readouterr().out)
    assert report["benchmark"] == "payments"
    assert (report["purchases"], report["concurrent"], report["warmup"]) == (2, 3, 1)

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

    rows = report["rows"]
    assert [row["kind"] for row in rows] == ["skeleton", "gateway", "gateway", "sdk"]
    assert [row.get("relayers") for row in rows[1:3]] == [1, 2]
    assert rows[1]["relayers_used_in_burst"] == 1
    for row in rows:
        assert row.keys() >= FIGURES | {"throughput_per_s", "burst_p50_ms", "burst_p95_ms"}
        assert (row["runs"], row["burst"]) == (2, 3)
        assert 0 < row["p50_ms"] <= row["p95_ms"]
        assert row["throughput_per_s"] > 0
    for row in rows[1:]:
        assert row["reverted"] == 0, "no settlement the chain refuses is ever broadcast"
    for row in rows[:3]:
        assert (row["shape"], row["activities"]) == (SHAPE, ACTIVITIES)
    for row in rows[1:3]:
        for key in ("p50_vs_skeleton", "throughput_vs_skeleton", "p50_vs_sdk"):
            assert row[key] > 0, key
        phases = row["phases_ms"]
        for step in ("verify", "skill", "settle", "record", "queued", "workflow_tasks"):
            assert 0 <= phases[step] <= phases["saga"] <= phases["total"], step
        assert min(phases["tx_nonce"], phases["tx_send"]) >= 0
        assert phases["tx_nonce"] + phases["tx_send"] <= phases["settle"] + 1, "inside the span"
    sdk = rows[3]
    assert set(sdk["phases_ms"]) == {"total", "outside", "verify", "skill", "settle"}
    assert sdk["p50_vs_skeleton"] is None, "the SDK has no workflow to compare with"
    assert 0 < sdk["facilitator_share_of_burst"] <= 1

    aim = report["aims"]
    assert aim["budget_vs_skeleton_ms"] == pytest.approx(1.3 * rows[0]["p50_ms"])
    assert aim["budget_vs_sdk_ms"] == pytest.approx(2.5 * sdk["p50_ms"])
    assert aim["sdk_chain_ms"] == pytest.approx(
        sdk["phases_ms"]["verify"] + sdk["phases_ms"]["settle"]
    )
    assert aim["floor_ms"] == pytest.approx(rows[0]["p50_ms"] + aim["sdk_chain_ms"])


def test_aims_floor_is_the_skeleton_plus_the_sdks_chain_calls() -> None:
    rows = [
        {"kind": "skeleton", "p50_ms": 20.0},
        {"kind": "gateway", "p50_ms": 60.0},
        {"kind": "sdk", "p50_ms": 12.0, "phases_ms": {"verify": 4.0, "settle": 6.0}},
    ]

    aim = aims(rows)

    assert aim is not None
    assert aim["floor_ms"] == pytest.approx(30.0)
    assert aim["budget_vs_skeleton_ms"] == pytest.approx(26.0)
    assert aim["budget_vs_sdk_ms"] == pytest.approx(30.0)
    assert "misses 1.3x the skeleton." in aims_text(aim), "30 ms is within 2.5 x 12 ms"
    assert aims(rows[:2]) is None, "no SDK row, no floor"
