"""The agents benchmark runs end to end in its quick mode and reports one agent step four ways
(the model calls alone, the SDK's plain Runner, two skeletons, AgentRunWorkflow) in JSON, with
the skipped local model said; it never asserts timings."""

from __future__ import annotations

import json

import pytest

from bench.agent_runs import LOCAL_MODEL_SKIPPED, QUICK, SHORT, TASK, amain

FIGURES = {"name", "shape", "activities", "runs", "burst", "p50_ms", "p95_ms", "mean_ms"}
ROWS = [
    "model calls (OpenAI client)",
    "OpenAI Agents SDK Runner",
    "skeleton (step)",
    "skeleton (run's shape)",
    "AgentRunWorkflow",
]


async def test_quick_run_reports_the_step_four_ways_and_the_local_model_skipped(
    capsys: pytest.CaptureFixture[str],
) -> None:
    status = await amain(["--quick", "--json"])

    assert status == 0
    captured = capsys.readouterr()
    report = json.loads(captured.out)
    assert report["benchmark"] == "agents"
    assert (report["runs"], report["burst"], report["warmup"]) == (
        QUICK["runs"],
        QUICK["burst"],
        QUICK["warmup"],
    )
    assert report["task"] == TASK

    run = report["per_run"]
    assert run["model_calls"] == 2 and run["input_tokens"] > 0 and run["output_tokens"] > 0
    assert run["shape"] == "context, hold, model, usage, tool, hold, model, usage, audit", (
        "per model call a budget hold before and a usage record after; one tool call"
    )
    assert run["activities"] == run["steps"] == 9
    assert run["queues"]["model"] == "fleet-agents", "the plugin's model activity"
    assert run["queues"]["tool"] == "fleet-io"
    assert run["signals"] == 2, "each call's cost spent at the agent's entity"
    assert set(report["where_ms"]) == set(SHORT.values()) | {"workflow tasks", "run"}
    assert all(value > 0 for value in report["where_ms"].values())
    floor = report["skeleton_run"]
    assert floor["workflow_tasks"] == 10, "one per activity and the first"
    assert floor["workflow_tasks_ms"] > 0 and floor["run_ms"] > 0

    rows = report["rows"]
    assert [row["name"] for row in rows] == ROWS
    for row in rows:
        assert row.keys() >= FIGURES | {"throughput_per_s", "p50_vs_skeleton"}
        assert (row["runs"], row["burst"]) == (QUICK["runs"], QUICK["burst"])
        assert 0 < row["p50_ms"] <= row["p95_ms"]
        assert row["throughput_per_s"] > 0
    assert [row["activities"] for row in rows] == [0, 0, 3, 9, 9]
    assert rows[2]["p50_vs_skeleton"] == 1.0, "the step's skeleton is the baseline"

    assert set(report["ratios"]) == {"model_calls", "sdk_runner", "skeleton_step", "skeleton_run"}
    for compared in report["ratios"].values():
        assert compared["p50"] > 0 and compared["p95"] > 0
        assert isinstance(compared["added_p50_ms"], float)

    assert report["local_model"] == {"measured": False, "reason": LOCAL_MODEL_SKIPPED}
    assert "local model" in captured.err and "not measured" in captured.err
