"""Starting and following agent runs (``AgentRunWorkflow``), for the CLI, Telegram, A2A, the
demo and tests: validate at the edge, start the run, read its view, decide its approvals, sum
its usage.

Every refusal is a :class:`FleetError` raised before anything started: unknown bot, a bot that
is not an agent or not active, an agent whose day's budget is spent, an empty or over-long task.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from temporalio.client import Client, WorkflowUpdateFailedError
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError, RPCStatusCode

from agentfleet import taskqueues
from agentfleet.agents import roster
from agentfleet.agents.model import (
    FINAL_RUN_STATES,
    RUN_ID_PATTERN,
    TASK_MAX,
    AgentParams,
    AgentRunRequest,
    AgentRunView,
    ApprovalDecision,
    RunSource,
    RunStatus,
    UsageDay,
    key_from,
    run_workflow_id,
    units_of,
)
from agentfleet.agents.usage import read_usage
from agentfleet.bots.model import bot_workflow_id
from agentfleet.errors import FleetError
from agentfleet.models import BotRecord
from agentfleet.payments.spending import SpendingDay
from agentfleet.settings import Settings
from agentfleet.temporal import start_or_attach
from clients import schedules
from clients.polling import poll_until
from clients.schedules import ScheduleView

WORKFLOW_TYPE = "AgentRunWorkflow"
POLL_S = 0.25


def check_task(task: str) -> str:
    """The task, stripped; FleetError when empty or too long."""
    text = task.strip()
    if not text:
        raise FleetError("the task is empty: say what the agent should do")
    if len(text) > TASK_MAX:
        raise FleetError(f"the task has {len(text)} characters; at most {TASK_MAX}")
    return text


def agent_row(settings: Settings, bot: str) -> tuple[BotRecord, AgentParams]:
    """The agent's row and parameters; FleetError for anything that cannot run."""
    return roster.runnable(settings.effective_database_url, bot)


async def budget_day(client: Client, bot: str) -> SpendingDay | None:
    """The agent's day as its entity holds it (None before its first hold of the day)."""
    try:
        day: SpendingDay | None = await client.get_workflow_handle(bot_workflow_id(bot)).query(
            "agent_budget", result_type=SpendingDay
        )
    except RPCError as exc:
        if exc.status is RPCStatusCode.NOT_FOUND:
            raise FleetError(f"bot {bot} is not running") from None
        raise
    today = datetime.now(UTC).date()
    return day if day is not None and day.day == today else None


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
    text = check_task(task)
    _, params = await asyncio.to_thread(agent_row, settings, bot)
    if params.model not in settings.model_prices:
        raise FleetError(
            f"model {params.model} has no price in FLEET_MODEL_PRICES; add one or "
            f"`fleet bot configure {bot} -p model=...`"
        )
    day = await budget_day(client, bot)
    limit = units_of(params.budget.per_day)
    if day is not None and day.committed >= limit:
        raise FleetError(
            f"agent {bot} has spent its budget of {params.budget.per_day} fUSD today; it starts "
            "no run until tomorrow (UTC) or a higher budget.per_day"
        )
    run_id = run_workflow_id(bot, key_from(key) if key else secrets.token_hex(8))
    request = AgentRunRequest(
        run_id=run_id, bot=bot, task=text, source=source, requested_by=requested_by[:80]
    )
    await start_or_attach(client, WORKFLOW_TYPE, request, id=run_id, task_queue=taskqueues.AGENTS)
    return run_id


async def schedule(
    client: Client, settings: Settings, bot: str, task: str, every: timedelta
) -> ScheduleView:
    """A Temporal Schedule that asks agent ``bot`` the task every ``every`` (its runs are
    ``AgentRunWorkflow`` s with source ``schedule``); FleetError as :func:`ask` refuses."""
    text = check_task(task)
    await asyncio.to_thread(agent_row, settings, bot)
    schedule_id = schedules.agent_schedule_id(bot, text)
    request = AgentRunRequest(
        run_id=schedule_id,
        bot=bot,
        task=text,
        source=RunSource.SCHEDULE,
        requested_by=f"schedule:{schedule_id}",
    )
    return await schedules.ensure_agent_schedule(client, request, every)


def _check_run_id(run_id: str) -> None:
    if not RUN_ID_PATTERN.match(run_id):
        raise FleetError(f"{run_id!r} is not a run id (agent-BOT-KEY; `fleet agent runs`)")


async def show(client: Client, run_id: str) -> AgentRunView:
    """The run's view (FleetError for an unknown run id)."""
    _check_run_id(run_id)
    try:
        view: AgentRunView = await client.get_workflow_handle(run_id).query(
            "status", result_type=AgentRunView
        )
    except RPCError as exc:
        if exc.status is RPCStatusCode.NOT_FOUND:
            raise FleetError(f"no agent run {run_id}; `fleet agent runs` lists them") from None
        raise FleetError(f"cannot read run {run_id}: {exc.message}") from None
    return view


def waiting(view: AgentRunView) -> bool:
    """Nothing more happens without someone: ended, or waiting for a human."""
    return view.status in FINAL_RUN_STATES or view.status is RunStatus.WAITING_APPROVAL


async def wait(
    client: Client,
    run_id: str,
    timeout_s: float,
    on_view: Callable[[AgentRunView], None] | None = None,
) -> AgentRunView:
    """The run's view once it ended or waits for a human, or after ``timeout_s``."""
    first = await show(client, run_id)
    if on_view is not None:
        on_view(first)
    return await poll_until(
        lambda: show(client, run_id), first, waiting, timeout_s, POLL_S, on_view
    )


async def decide(client: Client, run_id: str, decision: ApprovalDecision) -> AgentRunView:
    """Approve or deny the run's waiting tool call; FleetError with the validator's reason."""
    _check_run_id(run_id)
    try:
        view: AgentRunView = await client.get_workflow_handle(run_id).execute_update(
            "decide", decision, result_type=AgentRunView
        )
    except WorkflowUpdateFailedError as exc:
        cause = exc.cause
        message = cause.message if isinstance(cause, ApplicationError) else str(cause)
        raise FleetError(message) from None
    except RPCError as exc:
        if exc.status is RPCStatusCode.NOT_FOUND:
            raise FleetError(f"no agent run {run_id}; `fleet agent runs` lists them") from None
        raise FleetError(f"run {run_id} takes no decision: {exc.message}") from None
    return view


async def runs(client: Client, bot: str | None = None, limit: int = 20) -> list[AgentRunView]:
    """The latest runs (of ``bot``), newest first."""
    query = f'WorkflowType = "{WORKFLOW_TYPE}"'
    if bot is not None:
        query += f' AND WorkflowId STARTS_WITH "{run_workflow_id(bot, "")}"'
    found = []
    async for execution in client.list_workflows(query, limit=limit):
        found.append(execution.id)
    views = await asyncio.gather(*(show(client, run_id) for run_id in found))
    return list(views)


def usage(
    settings: Settings, bot: str | None = None, days: int = 1, now: datetime | None = None
) -> list[UsageDay]:
    """Each agent's model calls, tokens, their cost and its settled purchases since 00:00 UTC
    ``days - 1`` days ago, with its daily budget (:func:`agentfleet.agents.usage.read_usage`)."""
    return read_usage(settings.effective_database_url, bot, days, now)
