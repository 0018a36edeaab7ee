"""Client-side operations on bots: what the CLI, HTTP and Telegram starters call.

Each maps to the bot's entity workflow (``bot-{name}``): create starts it (idempotent for the same
spec), commands are its updates, reads are its queries or the ``bots`` table.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from datetime import timedelta
from typing import TYPE_CHECKING, Any, TypeVar

from temporalio.client import Client, WorkflowHandle, WorkflowUpdateFailedError
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.exceptions import ApplicationError, WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from agentfleet import search_attributes, taskqueues
from agentfleet.bots.model import (
    BotHistory,
    BotLifecycleInput,
    BotSpec,
    BotStatus,
    BotView,
    ConfigureRequest,
    RetireRequest,
    bot_workflow_id,
    check_name,
)
from agentfleet.bots.params import parse_params
from agentfleet.errors import FleetError
from agentfleet.netguard import ANY_FLEET, UrlRule
from agentfleet.payments.spending import HoldAnswer, SpendingHold
from clients.polling import poll_until

if TYPE_CHECKING:
    from agentfleet.models import BotRecord

SETTLED = frozenset({BotStatus.ACTIVE, BotStatus.FAILED, BotStatus.DEGRADED, BotStatus.PAUSED})
"""A bot in these states is done provisioning (or gave up)."""
POLL_S = 0.2

T = TypeVar("T")


WORKFLOW = "BotLifecycleWorkflow"
"""The entity's workflow type. Started, queried and updated by name with the result types
given, so that a client (every `fleet bot` command) does not import the workflow module and,
through it, the activities' web3 and alembic (~3 s of a CLI command's start)."""


async def create_bot(client: Client, spec: BotSpec, urls: UrlRule | None = None) -> BotView:
    """Start the bot's entity; the same spec again returns the running bot (never an error).
    URL parameters must be ones ``urls`` (the caller's fleet's rule) allows."""
    try:
        check_name(spec.name)
        parse_params(spec.kind, spec.params, urls=urls or ANY_FLEET)
    except ValueError as exc:
        raise FleetError(str(exc)) from None
    try:
        handle: WorkflowHandle[Any, BotView] = await client.start_workflow(
            WORKFLOW,
            BotLifecycleInput(spec=spec),
            result_type=BotView,
            id=bot_workflow_id(spec.name),
            task_queue=taskqueues.WORKFLOWS,
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
            id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
            search_attributes=search_attributes_for(spec),
            memo={"description": spec.description},
        )
    except WorkflowAlreadyStartedError:
        raise FleetError(
            f"bot {spec.name} existed and was retired; bot names are not reused, pick another"
        ) from None
    view = await show_bot(client, spec.name, handle=handle)
    if view.kind is not spec.kind or view.owner != spec.owner:
        raise FleetError(
            f"bot {spec.name} already exists as a {view.kind.value} of {view.owner}; "
            "pick another name"
        )
    return view


def search_attributes_for(spec: BotSpec) -> Any:
    from temporalio.common import SearchAttributePair, TypedSearchAttributes

    return TypedSearchAttributes(
        [
            SearchAttributePair(search_attributes.BOT_NAME, spec.name),
            SearchAttributePair(search_attributes.BOT_KIND, spec.kind.value),
            SearchAttributePair(search_attributes.BOT_STATUS, BotStatus.PROVISIONING.value),
            SearchAttributePair(search_attributes.BOT_OWNER, spec.owner),
        ]
    )


def _handle(client: Client, name: str) -> WorkflowHandle[Any, BotView]:
    return client.get_workflow_handle(bot_workflow_id(name), result_type=BotView)


async def show_bot(
    client: Client, name: str, handle: WorkflowHandle[Any, BotView] | None = None
) -> BotView:
    handle = handle or _handle(client, name)
    try:
        view: BotView = await handle.query("status", result_type=BotView)
    except RPCError as exc:
        if exc.status is RPCStatusCode.NOT_FOUND:
            raise FleetError(f"no bot named {name}; `fleet bot list` shows the fleet") from None
        raise FleetError(f"cannot read bot {name}: {exc.message}") from None
    return view


async def bot_status(client: Client, name: str, rpc_timeout: timedelta) -> BotView:
    """The entity's ``status`` query as it is (RPC and query errors reach the caller, who tells
    a bot that is not running from one that does not answer)."""
    view: BotView = await _handle(client, name).query(
        "status", result_type=BotView, rpc_timeout=rpc_timeout
    )
    return view


BUSY_RETRIES = 20
"""Times a command is sent again while the bot cannot take it yet (``_busy``)."""

BUSY = (
    "workflow is closing",  # its run is continuing as new; the next run takes the command
    "workflow update was aborted",  # admitted, not accepted, when that run closed
    "concurrent in-flight updates",  # the server's limit of updates in flight per run (10)
)
"""Refusals of an update the bot never accepted, so that sending it again does it once. The
SDK retries them a few times itself; a burst of commands to one bot outlasts that."""


def _busy(exc: RPCError) -> bool:
    return any(reason in exc.message for reason in BUSY)


async def _update(
    handle: WorkflowHandle[Any, BotView], update: str, *args: Any, result_type: type[T], **kw: Any
) -> T:
    """The entity's update ``update``, sent again while the bot is ``_busy`` (every update of the
    bot goes through here: commands and spending holds alike)."""
    for attempt in range(BUSY_RETRIES):
        try:
            answer: T = await handle.execute_update(update, *args, result_type=result_type, **kw)
            return answer
        except RPCError as exc:
            if not _busy(exc):
                raise
        # jittered, so that a burst's refused commands do not come back all at once
        await asyncio.sleep(min(0.05 * 2**attempt, 1.0) * random.uniform(0.5, 1.0))  # noqa: S311
    answer = await handle.execute_update(update, *args, result_type=result_type, **kw)
    return answer


async def hold_spending(client: Client, buyer: str, hold: SpendingHold) -> HoldAnswer:
    """The buyer's entity holds ``hold.amount`` of today's budget or refuses it (update
    ``hold_spending``, one update id per purchase so a retry is answered once)."""
    return await _update(
        _handle(client, buyer),
        "hold_spending",
        hold,
        id=f"hold-{hold.purchase_id}",
        result_type=HoldAnswer,
    )


async def hold_budget(client: Client, bot: str, hold: SpendingHold) -> HoldAnswer:
    """The agent's entity holds ``hold.amount`` of today's budget (tokens and purchases) or
    refuses it (update ``hold_budget``, one update id per hold so a retry is answered once)."""
    return await _update(
        _handle(client, bot),
        "hold_budget",
        hold,
        id=f"budget-{hold.purchase_id}",
        result_type=HoldAnswer,
    )


async def settle_bot(
    client: Client,
    view: BotView,
    timeout_s: float,
    on_view: Callable[[BotView], None] | None = None,
) -> BotView:
    """Follow ``view``'s bot until it is :data:`SETTLED` or ``timeout_s`` has passed; the last
    view read. ``on_view`` sees each view as it is read."""
    return await poll_until(
        lambda: show_bot(client, view.name),
        view,
        lambda seen: seen.status in SETTLED,
        timeout_s,
        POLL_S,
        on_view,
    )


async def bot_history(client: Client, name: str) -> BotHistory:
    try:
        history: BotHistory = await _handle(client, name).query("history", result_type=BotHistory)
    except RPCError as exc:
        raise FleetError(f"no bot named {name}: {exc.message}") from None
    return history


async def _command(client: Client, name: str, update: str, arg: Any | None = None) -> BotView:
    handle = _handle(client, name)  # by workflow id: a retry reaches the run continued as new
    args = () if arg is None else (arg,)
    try:
        view = await _update(handle, update, *args, result_type=BotView)
    except WorkflowUpdateFailedError as exc:
        cause = exc.cause
        message = cause.message if isinstance(cause, ApplicationError) else str(cause or exc)
        raise FleetError(message) from None
    except RPCError as exc:
        if exc.status is RPCStatusCode.NOT_FOUND:
            raise FleetError(
                f"no running bot named {name}; `fleet bot list` shows the fleet"
            ) from None
        raise FleetError(f"bot {name}: {exc.message}") from None
    return view


async def pause_bot(client: Client, name: str) -> BotView:
    return await _command(client, name, "pause")


async def resume_bot(client: Client, name: str) -> BotView:
    return await _command(client, name, "resume")


async def retry_bot(client: Client, name: str) -> BotView:
    return await _command(client, name, "retry")


async def configure_bot(
    client: Client, name: str, params: dict[str, Any], urls: UrlRule | None = None
) -> BotView:
    """The entity's ``configure``; its validator checks URL parameters against ``urls`` (the
    caller's fleet's rule), so a URL the fleet may not call changes nothing."""
    return await _command(client, name, "configure", ConfigureRequest(params=params, urls=urls))


async def restart_bot(client: Client, name: str) -> BotView:
    """A failed bot is retried from the step that failed; any other is paused and resumed."""
    view = await show_bot(client, name)
    if view.status is BotStatus.FAILED:
        return await retry_bot(client, name)
    await pause_bot(client, name)
    return await resume_bot(client, name)


async def retire_bot(client: Client, name: str, reason: str = "retired by operator") -> BotView:
    return await _command(client, name, "retire", RetireRequest(reason=reason))


def bot_rows(database_url: str) -> list[BotRecord]:
    """The ``bots`` table by name (works without Temporal: ``fleet bot list``, ``/health``)."""
    from sqlmodel import select

    from agentfleet import db
    from agentfleet.models import BotRecord

    with db.session_scope(database_url) as session:
        return list(session.exec(select(BotRecord).order_by(BotRecord.name)).all())
