"""Starting and steering content pipelines (``content-{id}``) and channel publishers, for the
CLI, Telegram, the demo and tests: validate at the edge, start or steer the workflow, and turn
Temporal's answers into one readable line.

Every refusal is a :class:`FleetError` raised before anything changed: unknown bot or channel,
a bot that is not an active publisher, a time in the past, an update its validator refused.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Callable
from datetime import datetime
from typing import Any

from temporalio.client import Client, WorkflowExecutionStatus, WorkflowUpdateFailedError
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError, RPCStatusCode

from agentfleet import db, search_attributes
from agentfleet.bots.model import BotKind, BotStatus
from agentfleet.content import store as content_store
from agentfleet.content.model import (
    CONTENT_ID_PATTERN,
    FINAL_STATES,
    ChannelConfig,
    ContentOrder,
    ContentState,
    ContentView,
    content_workflow_id,
)
from agentfleet.errors import FleetError
from agentfleet.models import BotRecord
from agentfleet.taskqueues import WORKFLOWS
from agentfleet.temporal import start_or_attach
from clients.polling import poll_until

WORKFLOW_TYPE = "ContentPipelineWorkflow"
POLL_S = 0.3
WAITING_FOR_A_PERSON = frozenset({ContentState.AWAITING_APPROVAL, ContentState.SCHEDULED})


def new_content_id(bot: str) -> str:
    return f"{bot}-{secrets.token_hex(4)}"


def check_order(url: str, order: ContentOrder, now: datetime) -> None:
    """Everything a submission can be refused for, before a workflow starts."""
    if not CONTENT_ID_PATTERN.match(order.content_id):
        raise FleetError(
            f"content id {order.content_id!r} must be a slug: lowercase letters, digits and '-'"
        )
    if order.publish_at is not None and order.publish_at <= now:
        raise FleetError(f"--at {order.publish_at.isoformat()} is in the past")
    with db.session_scope(url) as session:
        bot = session.get(BotRecord, order.bot)
    if bot is None:
        raise FleetError(f"no bot named {order.bot}; `fleet bot list` shows the fleet")
    if bot.kind != BotKind.PUBLISHER.value:
        raise FleetError(f"bot {order.bot} is a {bot.kind}; content needs a publisher bot")
    if bot.status != BotStatus.ACTIVE.value:
        raise FleetError(f"bot {order.bot} is {bot.status}; content needs it active")
    if content_store.get_channel(url, order.channel) is None:
        names = ", ".join(c.name for c in content_store.list_channels(url)) or "none yet"
        raise FleetError(
            f"no channel named {order.channel} (channels: {names}); `fleet channel add` adds one"
        )


async def submit(client: Client, url: str, order: ContentOrder, now: datetime) -> str:
    """Start the pipeline of ``order`` (the same id again attaches to it); its workflow id."""
    await asyncio.to_thread(check_order, url, order, now)
    handle = await start_or_attach(
        client,
        WORKFLOW_TYPE,
        order,
        id=content_workflow_id(order.content_id),
        task_queue=WORKFLOWS,
        search_attributes=_attributes(order),
    )
    return handle.id


def _attributes(order: ContentOrder) -> Any:
    from temporalio.common import SearchAttributePair, TypedSearchAttributes

    return TypedSearchAttributes(
        [
            SearchAttributePair(search_attributes.CONTENT_STATE, ContentState.DRAFTING.value),
            SearchAttributePair(search_attributes.CONTENT_CHANNEL, order.channel),
            SearchAttributePair(search_attributes.BOT_NAME, order.bot),
        ]
    )


async def show(client: Client, url: str, content_id: str) -> ContentView:
    """The running pipeline's view, or the one it ended with."""
    handle = client.get_workflow_handle(content_workflow_id(content_id), result_type=ContentView)
    try:
        view: ContentView = await handle.query("status", result_type=ContentView)
    except RPCError as exc:
        if exc.status is RPCStatusCode.NOT_FOUND:
            raise FleetError(
                f"no content {content_id}; `fleet content list` shows the items"
            ) from None
        raise FleetError(f"cannot read content {content_id}: {exc.message}") from None
    return view


def settled(view: ContentView) -> bool:
    """The pipeline needs a person (approval, a scheduled time) or has ended."""
    return view.state in FINAL_STATES or view.state in WAITING_FOR_A_PERSON


async def settle(
    client: Client,
    url: str,
    view: ContentView,
    timeout_s: float,
    on_view: Callable[[ContentView], None] | None = None,
) -> ContentView:
    """Follow ``view``'s item until it is :func:`settled` or ``timeout_s`` has passed; the last
    view read. ``on_view`` sees each view as it is read."""
    return await poll_until(
        lambda: show(client, url, view.content_id), view, settled, timeout_s, POLL_S, on_view
    )


async def steer(client: Client, url: str, content_id: str, update: str, arg: Any) -> ContentView:
    """Run one of the pipeline's updates; a refusal is one line and changed nothing."""
    handle = client.get_workflow_handle(content_workflow_id(content_id))
    try:
        view: ContentView = await handle.execute_update(update, arg, result_type=ContentView)
    except WorkflowUpdateFailedError as exc:
        cause = exc.cause
        message = cause.message if isinstance(cause, ApplicationError) else str(cause or exc)
        raise FleetError(f"{message}; nothing changed") from None
    except RPCError as exc:
        if exc.status is RPCStatusCode.NOT_FOUND:
            ended = await _ended_state(client, url, content_id)
            if ended is not None:
                raise FleetError(
                    f"content {content_id} is already {ended}; nothing changed"
                ) from None
            raise FleetError(
                f"no content {content_id}; `fleet content list` shows the items"
            ) from None
        raise FleetError(f"content {content_id}: {exc.message}") from None
    return view


async def _ended_state(client: Client, url: str, content_id: str) -> str | None:
    """The final state of a pipeline that no longer runs (its row, else Temporal's status)."""
    row = await asyncio.to_thread(content_store.get_item, url, content_id)
    try:
        described = await client.get_workflow_handle(content_workflow_id(content_id)).describe()
    except RPCError:
        return row.state if row is not None else None
    if described.status is WorkflowExecutionStatus.RUNNING:
        return None
    if row is not None:
        return row.state
    status = described.status
    return status.name.lower() if status is not None else "closed"


async def tell_publisher(client: Client, config: ChannelConfig) -> bool:
    """Signal the channel's running publisher its new configuration; False when none runs (a
    publisher reads the channel's row when it starts)."""
    from workflows.channel_publisher import ChannelPublisherWorkflow, publisher_workflow_id

    handle = client.get_workflow_handle(publisher_workflow_id(config.name))
    try:
        await handle.signal(ChannelPublisherWorkflow.configure, config)
    except RPCError:
        return False
    return True
