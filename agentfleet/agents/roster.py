"""Which agent may run now: its ``bots`` row and parameters, or the one line that says why not
(read by ``fleet agent ask`` before it starts anything, and by a run's first step)."""

from __future__ import annotations

from agentfleet import db
from agentfleet.agents.model import AgentParams
from agentfleet.bots.model import BotKind, BotStatus
from agentfleet.bots.params import parse_params
from agentfleet.errors import FleetError
from agentfleet.models import BotRecord

RUNNING = (BotStatus.ACTIVE.value, BotStatus.DEGRADED.value)
"""States in which an agent starts runs (and a bot sells)."""


def runnable(url: str, bot: str) -> tuple[BotRecord, AgentParams]:
    """The agent's row and parameters; FleetError for an unknown bot, one that is not an agent,
    one that is not active (paused, retired ...) and parameters that no longer validate."""
    with db.session_scope(url) as session:
        row = session.get(BotRecord, bot)
    if row is None:
        raise FleetError(f"no bot named {bot}; `fleet bot list` shows the fleet")
    if row.kind != BotKind.AGENT.value:
        raise FleetError(f"bot {bot} is a {row.kind}, not an agent; only agents take tasks")
    if row.status not in RUNNING:
        raise FleetError(f"agent {bot} is {row.status}; only an active agent starts a run")
    try:
        params = parse_params(BotKind.AGENT, dict(row.params or {}))
    except ValueError as exc:
        raise FleetError(str(exc)) from None
    assert isinstance(params, AgentParams)  # noqa: S101 (PARAMS maps agent to AgentParams)
    return row, params
