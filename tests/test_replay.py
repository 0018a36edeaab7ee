"""Every recorded history replays against today's workflow code; a changed workflow does not."""

from __future__ import annotations

import json
import re

import pytest
from temporalio import workflow
from temporalio.client import WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Replayer

from tests.changed_workflows import ReorderedStackCheck
from tests.replay import HISTORIES, load_history, recorded, replay
from workers.main import WORKFLOWS
from workflows.agent_run import AgentRunWorkflow


def test_histories_cover_every_workflow() -> None:
    names = recorded()
    for workflow_class in [*WORKFLOWS, AgentRunWorkflow]:
        name = workflow._Definition.must_from_class(workflow_class).name or ""
        prefix = re.sub(r"(?<!^)(?=[A-Z])", "_", name.removesuffix("Workflow")).lower() + "_"
        assert any(n.startswith(prefix) for n in names), f"no recorded history for {name}"


PATHS = {
    "bot_lifecycle_continued": {"continued_as_new", "update:configure"},
    "bot_lifecycle_continued_next": {"continued_from"},
    "channel_publisher_continued": {"continued_as_new", "activity:publish_to_channel"},
    "channel_publisher_continued_next": {"continued_from"},
    "relayer_continued": {"continued_as_new"},
    "relayer_continued_next": {"continued_from"},
    "alerts_continued": {"continued_as_new", "activity:deliver_alert_digest"},
    "alerts_continued_next": {"continued_from"},
    "relayer_reserve_now": {"update:reserve_now"},
    "relayer_rechecked": {
        "marker:relayer-wakes-on-finished",
        "timer_fired",
        "activity:verify_transaction",
    },
    "learning_round_rolled_back": {"result:rolled_back", "marker:alerts", "activity:raise_alerts"},
    "learning_round_told": {"result:rolled_back", "marker:learning-told-by-record"},
    "content_pipeline_edited": {"update:edit", "update:approve", "result:published"},
    "content_pipeline_expired": {"timer_fired", "result:expired"},
    "content_pipeline_scheduled": {"update:approve", "timer_fired", "result:published"},
    "content_pipeline_unconfirmed_retried": {
        "update:resolve",
        "activity:allow_resend",
        "result:published",
    },
    "content_pipeline_unconfirmed_confirmed": {"update:resolve", "result:published"},
}
"""Recorded histories of the paths a workflow takes besides its usual one, and what each must
contain, so replaying them exercises those paths."""


def marks(history: WorkflowHistory) -> set[str]:
    """What a history went through: updates, patch markers, activities, fired timers, the
    result's status, continue-as-new (``continued_as_new``, or ``continued_from`` a run)."""
    found: set[str] = set()
    for event in history.events:
        if event.HasField("workflow_execution_started_event_attributes"):
            if event.workflow_execution_started_event_attributes.continued_execution_run_id:
                found.add("continued_from")
        elif event.HasField("workflow_execution_continued_as_new_event_attributes"):
            found.add("continued_as_new")
        elif event.HasField("workflow_execution_update_accepted_event_attributes"):
            request = event.workflow_execution_update_accepted_event_attributes.accepted_request
            found.add(f"update:{request.input.name}")
        elif event.HasField("marker_recorded_event_attributes"):
            details = event.marker_recorded_event_attributes.details
            if "patch-data" in details:
                found.add(f"marker:{json.loads(details['patch-data'].payloads[0].data)['id']}")
        elif event.HasField("activity_task_scheduled_event_attributes"):
            scheduled = event.activity_task_scheduled_event_attributes
            found.add(f"activity:{scheduled.activity_type.name}")
        elif event.HasField("timer_fired_event_attributes"):
            found.add("timer_fired")
        elif event.HasField("workflow_execution_completed_event_attributes"):
            result = json.loads(
                event.workflow_execution_completed_event_attributes.result.payloads[0].data
            )
            if isinstance(result, dict):
                found.add(f"result:{result.get('state') or result.get('status')}")
    return found


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
@pytest.mark.parametrize("path", sorted(PATHS))
def test_recorded_paths_take_their_path(path: str, backend: str) -> None:
    name = f"{path}_{backend}"
    assert (HISTORIES / f"{name}.json").exists(), f"no recorded history {name}"
    missing = PATHS[path] - marks(load_history(name))
    assert not missing, f"{name} does not go through {sorted(missing)}"


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
