"""The content benchmark runs end to end in its quick mode and reports the pipeline, its skeleton
and the publisher's pacing in JSON; it never asserts timings."""

from __future__ import annotations

import json

import pytest

from bench.content import QUICK, SHORT, amain

FIGURES = {"name", "shape", "activities", "runs", "burst", "p50_ms", "p95_ms", "mean_ms"}


async def test_quick_run_reports_pipeline_skeleton_and_publisher_pacing_as_json(
    capsys: pytest.CaptureFixture[str],
) -> None:
    status = await amain(["--quick", "--json"])

    assert status == 0
    report = json.loads(capsys.readouterr().out)
    assert report["benchmark"] == "content"
    assert (report["items"], report["burst"], report["warmup"]) == (
        QUICK["items"],
        QUICK["burst"],
        QUICK["warmup"],
    )

    item = report["per_item"]
    assert item["activity_types"] == {
        "record_content": 5,
        "prepare_content": 1,
        "draft_content": 1,
        "score_content": 1,
        "check_content": 1,
        "hand_to_publisher": 1,
        "publish_to_channel": 1,
    }, "auto-approved: no wait for a person, one send by the publisher"
    assert item["activities"] == sum(item["activity_types"].values()) == 11
    assert item["parallel"] == [["score_content", "check_content"]]
    assert item["steps"] == item["activities"] - 1
    assert item["step_sizes"] == [1, 1, 1, 1, 2, 1, 1, 1, 1, 1], "the skeleton's steps"
    names = [name for step in item["shape"].split(", ") for name in step.split(" ∥ ")]
    assert len(names) == item["activities"] and set(names) == set(SHORT.values())
    assert item["shape"].index("hand-over, publish") < item["shape"].rindex("record")
    assert item["signals"] == 1, "the publisher's publish_result"
    assert item["publish_round_trip_ms"] > 0

    rows = report["rows"]
    assert [row["name"] for row in rows] == ["skeleton", "content pipeline"]
    for row in rows:
        assert row.keys() >= FIGURES | {"throughput_per_s", "p50_vs_skeleton"}
        assert (row["shape"], row["activities"]) == ("regular", item["activities"])
        assert (row["runs"], row["burst"]) == (QUICK["items"], QUICK["burst"])
        assert 0 < row["p50_ms"] <= row["p95_ms"]
        assert row["throughput_per_s"] > 0
        assert row["p50_vs_skeleton"] > 0 and row["throughput_vs_skeleton"] > 0
    published = report["items_published"]
    assert published == 1 + QUICK["warmup"] + QUICK["burst"] + QUICK["items"], "probe + measured"
    assert report["webhook_deliveries"] == {"received": published, "duplicates": 0, "rejected": 0}

    publisher = report["publisher"]
    assert publisher["messages"] == publisher["received"] == publisher["sent"] == QUICK["messages"]
    assert publisher["duplicates"] == 0, "each request sent once"
    assert publisher["allowed_per_s"] == 30
    assert publisher["achieved_per_s"] > 0 and publisher["fraction_of_allowed"] > 0
    assert publisher["fraction_of_ideal"] > 0 and publisher["dispatch_first_to_last_s"] > 0
    assert publisher["rate_limited_429"] == 0, "the publisher paces to the chat's limit"
    assert publisher["publisher_rate_limited"] == 0
