"""Handing a message to its channel's publisher entity (``publisher-{channel}``), which owns the
channel's rate limit and sends each message id once."""

from __future__ import annotations

from temporalio.client import Client

from agentfleet.content.model import PublishRequest
from agentfleet.taskqueues import WORKFLOWS
from workflows.channel_publisher import (
    ChannelPublisherWorkflow,
    PublisherState,
    publisher_workflow_id,
)


async def hand_over(client: Client, request: PublishRequest) -> None:
    """Signal-with-start the channel's publisher with ``request``: the entity is created on first
    use; a repeated hand-over of one id is sent once."""
    await client.start_workflow(
        ChannelPublisherWorkflow.run,
        PublisherState(channel=request.channel),
        id=publisher_workflow_id(request.channel.name),
        task_queue=WORKFLOWS,
        start_signal="publish",
        start_signal_args=[request],
    )
