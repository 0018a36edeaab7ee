"""Record workflow histories to ``tests/histories/`` and replay them against today's code.

Integration tests call :func:`record_history` after a real run; it writes the file only when
``FLEET_RECORD_HISTORIES=1`` (or the file is missing), so the committed histories stay the ones
older code produced and replaying them proves today's code is still compatible.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from temporalio.client import Client, WorkflowHandle, WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.converter import DataConverter
from temporalio.worker import Replayer

from agentfleet.agents import runtime
from agentfleet.settings import Settings
from workflows.agent_run import AgentRunWorkflow

HISTORIES = Path(__file__).parent / "histories"
AGENT_RUN = "agent_run_"


async def record_history(handle: WorkflowHandle[Any, Any], name: str) -> Path:
    """Save the history of a finished workflow as ``tests/histories/<name>.json``."""
    path = HISTORIES / f"{name}.json"
    if path.exists() and os.environ.get("FLEET_RECORD_HISTORIES") != "1":
        return path
    history = await handle.fetch_history()
    HISTORIES.mkdir(exist_ok=True)
    path.write_text(history.to_json())
    return path


async def record_continued(
    client: Client, workflow_id: str, run_id: str, name: str, backend: str
) -> None:
    """Save the history of run ``run_id``, which continued as new, as ``<name>_<backend>``, and
    that of the run it started (finished or not) as ``<name>_next_<backend>``."""
    handle = client.get_workflow_handle(workflow_id, run_id=run_id)
    last = (await handle.fetch_history()).events[-1]
    attributes = last.workflow_execution_continued_as_new_event_attributes
    assert attributes.new_execution_run_id, f"{workflow_id} run {run_id} did not continue as new"
    await record_history(handle, f"{name}_{backend}")
    successor = client.get_workflow_handle(workflow_id, run_id=attributes.new_execution_run_id)
    await record_history(successor, f"{name}_next_{backend}")


def load_history(name: str) -> WorkflowHistory:
    path = HISTORIES / f"{name}.json"
    return WorkflowHistory.from_json(f"replay-{name}", path.read_text())


async def replay(name: str, workflows: Sequence[type]) -> None:
    """Replay a recorded history; raises if today's workflow code would act differently.
    Agent runs replay as their worker runs them: with the OpenAI Agents SDK plugin (and its
    payload converter, which the plugin sets in place of the default one)."""
    if name.startswith(AGENT_RUN):
        replayer = Replayer(
            workflows=[AgentRunWorkflow],
            data_converter=DataConverter.default,
            plugins=[runtime.plugin(Settings(_env_file=None))],
        )
    else:
        replayer = Replayer(workflows=workflows, data_converter=pydantic_data_converter)
    await replayer.replay_workflow(load_history(name))


def recorded() -> list[str]:
    return sorted(p.stem for p in HISTORIES.glob("*.json"))
