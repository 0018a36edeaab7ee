"""Starting and following agent runs (``AgentRunWorkflow``), for the CLI, Telegram, A2A, the
demo and tests: validate at the edge, start the run, read its view.

Every refusal is a :class:`FleetError` raised before anything started: unknown bot, a bot that
is not an agent or not active, an empty or over-long task.
"""

from __future__ import annotations

from temporalio.client import Client

from agentfleet.agents.model import AgentRunView, RunSource
from agentfleet.settings import Settings


async def ask(
    client: Client,
    settings: Settings,
    bot: str,
    task: str,
    *,
    source: RunSource = RunSource.CLI,
    requested_by: str = "operator",
    key: str | None = None,
) -> str:
    """Start a run of agent ``bot`` on ``task``; its run id. ``key`` (a caller's own id, such
    as an A2A message id) makes a resend attach to the run it started."""
    raise NotImplementedError


async def show(client: Client, run_id: str) -> AgentRunView:
    """The run's view (FleetError for an unknown run id)."""
    raise NotImplementedError


async def wait(client: Client, run_id: str, timeout_s: float) -> AgentRunView:
    """The run's view once it ended or waits for a human, or after ``timeout_s``."""
    raise NotImplementedError
