"""The learning benchmark runs end to end in its quick mode and reports each fleet's round shape,
skeleton and accuracy against the pooled model in JSON; it never asserts timings."""

from __future__ import annotations

import json

import pytest

from bench.learning import QUICK, amain

FIGURES = {"name", "shape", "activities", "runs", "burst", "p50_ms", "p95_ms", "mean_ms"}


async def test_quick_run_reports_round_shape_skeleton_and_accuracy_vs_pooled_as_json(
    capsys: pytest.CaptureFixture[str],
) -> None:
    status = await amain(["--quick", "--json"])

    assert status == 0
    report = json.loads(capsys.readouterr().out)
    assert report["benchmark"] == "learning" and report["task"] == "digits"
    assert (report["rounds"], report["runs"], report["warmup"]) == (
        QUICK["rounds"],
        QUICK["runs"],
        QUICK["warmup"],
    )
    pooled = report["pooled"]
    assert 0 <= pooled["accuracy"] <= 1
    assert pooled["target"] == pytest.approx(pooled["accuracy"] - 0.01)

    fleets = report["fleets"]
    assert [fleet["participants"] for fleet in fleets] == [5, 20]
    rows = report["rows"]
    assert len(rows) == 2 * len(fleets)
    pairs = zip(rows[::2], rows[1::2], strict=True)
    for fleet, (skeleton, measured) in zip(fleets, pairs, strict=True):
        bots = fleet["participants"]
        assert fleet["partition_error"] is None
        assert fleet["share_sizes"]["smallest"] >= 20, "DigitsTask's min_examples"
        shape = fleet["per_round"]
        assert shape["activity_types"] == {
            "select_participants": 1,
            "train_model": bots,
            "aggregate_updates": 1,
            "evaluate_candidate": 1,
            "record_round": 1,
        }
        assert shape["activities"] == bots + 4 and shape["steps"] == 5
        assert shape["parallel"] == [["train_model"] * bots]
        assert shape["split"] == [1, bots, 3]
        assert shape["signals"] == 0, "record_round tells the bots (patch learning-told-by-record)"

        assert skeleton["name"] == "skeleton" and measured["name"] == f"learning round, {bots} bots"
        for row in (skeleton, measured):
            assert row.keys() >= FIGURES | {"p50_vs_skeleton"}
            assert (row["shape"], row["activities"]) == (f"1 + {bots} parallel + 3", bots + 4)
            assert (row["runs"], row["burst"]) == (QUICK["runs"], 0)
        assert measured["p50_vs_skeleton"] is not None

        campaign = fleet["campaign"]
        rounds = campaign["rounds"]
        assert [r["round"] for r in rounds] == list(range(1, QUICK["rounds"] + 1))
        assert campaign["stopped"] == f"{QUICK['rounds']} rounds done"
        champions = [r["champion_accuracy"] for r in rounds]
        for value in [campaign["initial_accuracy"], *champions]:
            assert 0 <= value <= 1
        assert champions == sorted(champions), "the champion never gets worse"
        assert champions[0] > campaign["initial_accuracy"], "round 1 beats random weights"
        assert all(0 <= r["candidate_accuracy"] <= 1 for r in rounds)
        assert all(r["left_out"] == [] or ": " in r["left_out"][0] for r in rounds), "who: why"
        assert campaign["promoted"] == sum(r["status"] == "promoted" for r in rounds)
        assert campaign["final_accuracy"] == champions[-1]
        reached = campaign["rounds_to_target"]
        assert reached is None or isinstance(reached, int)
        target = pooled["target"]
        first = next((r["round"] for r in rounds if r["champion_accuracy"] >= target), None)
        assert reached == first
