"""The fleet's Temporal Schedules: the health check every few minutes, and what an operator does
with any schedule of the namespace (list, pause, resume, trigger).

``ensure_health_schedule`` creates the schedule ``fleet-health`` or brings an existing one to the
given interval and check, keeping whether it is paused (so `fleet up` may call it every start). Each
of its runs is a ``FleetHealthWorkflow`` on ``fleet-workflows`` whose id the schedule gives
(``schedule-fleet-health-<time>``); a run still going when the next is due makes the schedule skip
that one (overlap SKIP). ``ensure_reconcile_schedule`` does the same for ``reconcile-payments``, an
hourly ``ReconcilePaymentsWorkflow`` (the ledger against the chain, see
:mod:`agentfleet.payments.reconcile`). Every failure a person can act on is a one-line
:class:`FleetError`."""

from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel
from temporalio.client import (
    Schedule,
    ScheduleActionExecutionStartWorkflow,
    ScheduleActionStartWorkflow,
    ScheduleAlreadyRunningError,
    ScheduleDescription,
    ScheduleIntervalSpec,
    ScheduleOverlapPolicy,
    SchedulePolicy,
    ScheduleSpec,
    ScheduleState,
    ScheduleUpdate,
    ScheduleUpdateInput,
)
from temporalio.service import RPCError, RPCStatusCode

from agentfleet import taskqueues
from agentfleet.bots.health import HealthCheck
from agentfleet.errors import FleetError

if TYPE_CHECKING:
    from temporalio.client import Client

    from agentfleet.payments.reconcile import ReconcileRequest

HEALTH_SCHEDULE_ID = "fleet-health"
HEALTH_EVERY = timedelta(minutes=5)
HEALTH_NOTE = "fleet health check (agentfleet)"
RUN_TIMEOUT_FLOOR = timedelta(minutes=10)
"""A health run may take at least this long before Temporal stops it (then the next runs)."""
RECONCILE_SCHEDULE_ID = "reconcile-payments"
RECONCILE_EVERY = timedelta(hours=1)
RECONCILE_NOTE = "payments reconciliation: ledger vs chain (agentfleet)"


class ScheduleView(BaseModel):
    """A schedule as ``fleet schedule list`` shows it."""

    id: str
    state: str
    """``paused`` or ``active``."""
    note: str | None = None
    workflow: str | None = None
    every: str | None = None
    """The interval (``5m``), ``calendar`` for calendar/cron specs, None when there is none."""
    next_run: datetime | None = None
    last_run: datetime | None = None
    last_workflow_id: str | None = None
    last_result: str | None = None
    """How the last run ended: completed, failed, running, timed_out ... (None: never ran)."""
    runs: int = 0


def format_every(every: timedelta) -> str:
    """``timedelta(minutes=5)`` -> ``5m``; the largest unit that divides it."""
    seconds = int(every.total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds and seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def _interval_schedule(
    workflow: Any,
    arg: Any,
    workflow_id: str,
    every: timedelta,
    note: str,
    *,
    task_queue: str = taskqueues.WORKFLOWS,
    bounded: bool = True,
) -> Schedule:
    """Run ``workflow(arg)`` every ``every``; a run still going when the next is due makes
    that one skip, and (``bounded``) a run may take at least ``RUN_TIMEOUT_FLOOR``."""
    return Schedule(
        action=ScheduleActionStartWorkflow(
            workflow,
            arg,
            id=workflow_id,
            task_queue=task_queue,
            execution_timeout=max(every, RUN_TIMEOUT_FLOOR) if bounded else None,
        ),
        spec=ScheduleSpec(intervals=[ScheduleIntervalSpec(every=every)]),
        policy=SchedulePolicy(
            overlap=ScheduleOverlapPolicy.SKIP,
            catchup_window=max(every, timedelta(minutes=1)),
        ),
        state=ScheduleState(note=note),
    )


def _health_schedule(every: timedelta, check: HealthCheck | None) -> Schedule:
    from workflows.fleet_health import WORKFLOW_ID, FleetHealthWorkflow

    return _interval_schedule(
        FleetHealthWorkflow.run, check or HealthCheck(), WORKFLOW_ID, every, HEALTH_NOTE
    )


async def ensure_health_schedule(
    client: Client, every: timedelta = HEALTH_EVERY, check: HealthCheck | None = None
) -> ScheduleView:
    """Create ``fleet-health`` running every ``every``, or update it to that (idempotent; an
    existing schedule keeps its paused state and note)."""
    _check_every(every)
    return await _create_or_update(client, HEALTH_SCHEDULE_ID, _health_schedule(every, check))


def _reconcile_schedule(every: timedelta, request: ReconcileRequest | None) -> Schedule:
    from agentfleet.payments.reconcile import ReconcileRequest  # imports web3
    from workflows.reconcile import WORKFLOW_ID, ReconcilePaymentsWorkflow

    return _interval_schedule(
        ReconcilePaymentsWorkflow.run,
        request or ReconcileRequest(),
        WORKFLOW_ID,
        every,
        RECONCILE_NOTE,
    )


async def ensure_reconcile_schedule(
    client: Client, every: timedelta = RECONCILE_EVERY, request: ReconcileRequest | None = None
) -> ScheduleView:
    """Create ``reconcile-payments`` running every ``every`` (each run continues after the last
    one's blocks), or update it to that (idempotent; a paused schedule stays paused)."""
    _check_every(every)
    wanted = _reconcile_schedule(every, request)
    return await _create_or_update(client, RECONCILE_SCHEDULE_ID, wanted)


def learning_schedule_id(task: str) -> str:
    return f"learning-{task}"


async def ensure_learning_schedule(client: Client, order: Any, every: timedelta) -> ScheduleView:
    """Create ``learning-{task}``: one learning round of ``order`` (a ``CampaignOrder`` of one
    round, its first round looked up when it starts) every ``every``; or update it to that."""
    _check_every(every)
    wanted = _interval_schedule(
        "LearningCampaignWorkflow",
        order,
        f"learning-scheduled-{order.task}",
        every,
        f"learning round of {order.task} every {format_every(every)} (agentfleet)",
    )
    return await _create_or_update(client, learning_schedule_id(order.task), wanted)


def agent_schedule_id(bot: str, task: str) -> str:
    """``agent-{bot}-every-{hash of the task}``: its runs are ``<this>-<time>``."""
    from agentfleet.agents.model import key_from, run_workflow_id

    return run_workflow_id(bot, f"every-{key_from(task)[:10]}")


async def ensure_agent_schedule(client: Client, request: Any, every: timedelta) -> ScheduleView:
    """Ask agent ``request.bot`` the task of ``request`` (an ``AgentRunRequest``, validated by
    the caller) every ``every``; or update that schedule. Runs are not cut short at the next
    interval: one that waits for approval keeps waiting (the schedule skips while it runs)."""
    _check_every(every)
    schedule_id = request.run_id
    wanted = _interval_schedule(
        "AgentRunWorkflow",
        request,
        schedule_id,
        every,
        f"agent {request.bot} asked every {format_every(every)}: {request.task[:60]} (agentfleet)",
        task_queue=taskqueues.AGENTS,
        bounded=False,
    )
    return await _create_or_update(client, schedule_id, wanted)


def _check_every(every: timedelta) -> None:
    if every < timedelta(seconds=1):
        raise FleetError(f"every {every} is too short; use at least 1s")


async def _create_or_update(client: Client, schedule_id: str, wanted: Schedule) -> ScheduleView:
    """Create ``schedule_id`` as ``wanted``, or bring it to ``wanted`` keeping its state."""

    def keep_state(update: ScheduleUpdateInput) -> ScheduleUpdate:
        current = update.description.schedule.state
        return ScheduleUpdate(schedule=dataclasses.replace(wanted, state=current))

    try:
        try:
            await client.create_schedule(schedule_id, wanted)
        except ScheduleAlreadyRunningError:
            await client.get_schedule_handle(schedule_id).update(keep_state)
    except RPCError as exc:
        raise _error(exc, schedule_id) from None
    return await describe_schedule(client, schedule_id)


async def describe_schedule(client: Client, schedule_id: str) -> ScheduleView:
    try:
        description = await client.get_schedule_handle(schedule_id).describe()
    except RPCError as exc:
        raise _error(exc, schedule_id) from None
    return await _view(client, description)


async def list_schedules(client: Client) -> list[ScheduleView]:
    """Every schedule of the namespace, by id. The list comes from Temporal's visibility, so a
    schedule created a moment ago may show up a moment later."""
    ids: list[str] = []
    try:
        async for listed in await client.list_schedules():
            ids.append(listed.id)
    except RPCError as exc:
        raise _error(exc, None) from None
    views = []
    for schedule_id in sorted(ids):
        try:
            views.append(await describe_schedule(client, schedule_id))
        except FleetError:
            continue  # deleted between the list and the describe
    return views


async def pause_schedule(client: Client, schedule_id: str, note: str | None = None) -> ScheduleView:
    """Pause: no run starts until resumed (a run already going finishes)."""
    try:
        await client.get_schedule_handle(schedule_id).pause(
            note=note or "paused with `fleet schedule pause`"
        )
    except RPCError as exc:
        raise _error(exc, schedule_id) from None
    return await describe_schedule(client, schedule_id)


async def unpause_schedule(
    client: Client, schedule_id: str, note: str | None = None
) -> ScheduleView:
    try:
        await client.get_schedule_handle(schedule_id).unpause(
            note=note or "resumed with `fleet schedule resume`"
        )
    except RPCError as exc:
        raise _error(exc, schedule_id) from None
    return await describe_schedule(client, schedule_id)


async def trigger_schedule(client: Client, schedule_id: str) -> ScheduleView:
    """Start one run now (the schedule's overlap policy applies; works while paused)."""
    try:
        await client.get_schedule_handle(schedule_id).trigger()
    except RPCError as exc:
        raise _error(exc, schedule_id) from None
    return await describe_schedule(client, schedule_id)


async def _view(client: Client, description: ScheduleDescription) -> ScheduleView:
    schedule, info = description.schedule, description.info
    spec = schedule.spec
    every: str | None = None
    if spec.intervals:
        every = ", ".join(format_every(interval.every) for interval in spec.intervals)
    elif spec.calendars or spec.cron_expressions:
        every = "calendar"
    action = schedule.action
    view = ScheduleView(
        id=description.id,
        state="paused" if schedule.state.paused else "active",
        note=schedule.state.note,
        workflow=action.workflow if isinstance(action, ScheduleActionStartWorkflow) else None,
        every=every,
        next_run=None
        if schedule.state.paused or not info.next_action_times
        else info.next_action_times[0],
        runs=info.num_actions,
    )
    if info.recent_actions:
        last = info.recent_actions[-1]
        view.last_run = last.started_at
        if isinstance(last.action, ScheduleActionExecutionStartWorkflow):
            view.last_workflow_id = last.action.workflow_id
            view.last_result = await _result(
                client, last.action.workflow_id, last.action.first_execution_run_id
            )
    return view


async def _result(client: Client, workflow_id: str, run_id: str) -> str:
    try:
        described: Any = await client.get_workflow_handle(workflow_id, run_id=run_id).describe()
    except RPCError:
        return "unknown"
    status = described.status
    return "unknown" if status is None else str(status.name).lower()


def _error(exc: RPCError, schedule_id: str | None) -> FleetError:
    if schedule_id is not None and exc.status is RPCStatusCode.NOT_FOUND:
        return FleetError(f"no schedule named {schedule_id}; `fleet schedule list` shows them")
    if exc.status in (RPCStatusCode.UNAVAILABLE, RPCStatusCode.DEADLINE_EXCEEDED):
        return FleetError(f"cannot reach Temporal: {_line(exc.message)}; is `fleet up` running?")
    what = f"schedule {schedule_id}" if schedule_id else "schedules"
    return FleetError(f"{what}: {_line(exc.message)}")


def _line(text: str) -> str:
    return (text.strip().splitlines() or [""])[0][:200]
