"""Starting and following learning campaigns and pattern shares, and telling bots of a new
champion: what ``fleet learn`` calls.

A campaign is a ``LearningCampaignWorkflow`` (``learning-campaign-{task}-{first round}``, its
rounds child ``LearningRoundWorkflow``s); a share is a ``PatternShareWorkflow`` (its pattern id).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from temporalio.client import Client, WorkflowFailureError, WorkflowHandle
from temporalio.common import WorkflowIDReusePolicy
from temporalio.service import RPCError

from agentfleet.bots.model import BotEvent, bot_workflow_id
from agentfleet.errors import FleetError, first_line
from agentfleet.learning.patterns import PatternView, ShareOrder
from agentfleet.learning.rounds import CampaignOrder, CampaignView, campaign_workflow_id
from agentfleet.taskqueues import WORKFLOWS
from agentfleet.temporal import start_or_attach

CAMPAIGN_WORKFLOW = "LearningCampaignWorkflow"
PATTERN_WORKFLOW = "PatternShareWorkflow"
PROGRESS_POLL_S = 0.5


async def start_campaign(client: Client, order: CampaignOrder) -> WorkflowHandle[Any, Any]:
    """Start ``order``'s campaign, or join it while it runs."""
    # Round numbers come from the database: a finished campaign of the same id belongs to
    # an earlier database (or a test's), so only a running one is joined.
    return await start_or_attach(
        client,
        CAMPAIGN_WORKFLOW,
        order,
        id=campaign_workflow_id(order.task, order.first_round),
        task_queue=WORKFLOWS,
        result_type=CampaignView,
        reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
    )


async def follow_campaign(
    handle: WorkflowHandle[Any, Any],
    timeout_s: float,
    on_progress: Callable[[CampaignView], None],
) -> CampaignView | None:
    """The campaign's result, or None if it still runs after ``timeout_s``; ``on_progress`` sees
    its ``progress`` view (once a round is done) between waits."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            async with asyncio.timeout(PROGRESS_POLL_S):
                result: CampaignView = await handle.result()
                return result
        except TimeoutError:
            pass
        view: CampaignView | None = await handle.query("progress", result_type=CampaignView)
        if view is not None and view.rounds:
            on_progress(view)
    return None


async def announce_model(client: Client, bots: list[str], version_id: str) -> list[str]:
    """Note ``version_id`` in each bot's history (a ``model`` event); the bots that were told
    (one not running is left out)."""
    told = []
    for name in bots:
        event = BotEvent(at=datetime.now(UTC), event="model", detail=version_id)
        try:
            await client.get_workflow_handle(bot_workflow_id(name)).signal("note", event)
        except RPCError:
            continue
        told.append(name)
    return told


async def share_pattern(client: Client, order: ShareOrder) -> PatternView:
    """Run the share to its end; a failed one is a one-line :class:`FleetError`."""
    from workflows.transactions import deepest_cause

    handle = await client.start_workflow(
        PATTERN_WORKFLOW,
        order,
        id=order.pattern_id,
        task_queue=WORKFLOWS,
        result_type=PatternView,
    )
    try:
        view: PatternView = await handle.result()
    except WorkflowFailureError as exc:
        raise FleetError(first_line(Exception(deepest_cause(exc)))) from None
    return view
