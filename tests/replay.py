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

from temporalio.client import WorkflowHandle, WorkflowHistory
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
