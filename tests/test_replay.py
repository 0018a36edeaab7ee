"""Every recorded history replays against today's workflow code; a changed workflow does not."""

from __future__ import annotations

import re

import pytest
from temporalio import workflow
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Replayer

from tests.changed_workflows import ReorderedStackCheck
from tests.replay import load_history, recorded, replay
from workers.main import WORKFLOWS
from workflows.agent_run import AgentRunWorkflow


def test_histories_cover_every_workflow() -> None:
    names = recorded()
    for workflow_class in [*WORKFLOWS, AgentRunWorkflow]:
        name = workflow._Definition.must_from_class(workflow_class).name or ""
        prefix = re.sub(r"(?<!^)(?=[A-Z])", "_", name.removesuffix("Workflow")).lower() + "_"
        assert any(n.startswith(prefix) for n in names), f"no recorded history for {name}"


@pytest.mark.parametrize("name", recorded())
async def test_recorded_history_replays(name: str) -> None:
    await replay(name, WORKFLOWS)


async def test_replay_fails_on_non_deterministic_change() -> None:
    replayer = Replayer(workflows=[ReorderedStackCheck], data_converter=pydantic_data_converter)
    result = await replayer.replay_workflow(
        load_history("stack_check_sqlite"), raise_on_replay_failure=False
    )
    assert result.replay_failure is not None
    assert "nondeterminism" in type(result.replay_failure).__name__.lower() or (
        "nondetermin" in str(result.replay_failure).lower()
    )
