"""Reconciling the ledger with the chain on demand (``fleet payments reconcile``): start a
``ReconcilePaymentsWorkflow`` (or join the same one running) and wait for its report. The hourly
run is a Schedule (``clients.schedules``)."""

from __future__ import annotations

from typing import Any

from temporalio.client import Client, WorkflowFailureError, WorkflowHandle
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.exceptions import FailureError
from temporalio.service import RPCError

from agentfleet import taskqueues
from agentfleet.errors import FleetError
from agentfleet.payments.reconcile import (
    RUN_TIMEOUT,
    WORKFLOW_TYPE,
    ReconcileReport,
    ReconcileRequest,
    one_line,
    reconcile_workflow_id,
)
from agentfleet.settings import Settings


async def start_reconciliation(
    client: Client, settings: Settings, request: ReconcileRequest | None = None
) -> WorkflowHandle[Any, ReconcileReport]:
    """Start a reconciliation (or join the same one already running)."""
    request = request or ReconcileRequest()
    try:
        handle: WorkflowHandle[Any, ReconcileReport] = await client.start_workflow(
            WORKFLOW_TYPE,
            request,
            id=reconcile_workflow_id(settings.chain_id, request),
            task_queue=taskqueues.WORKFLOWS,
            result_type=ReconcileReport,
            execution_timeout=RUN_TIMEOUT,
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
            id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
        )
    except RPCError as exc:
        raise FleetError(f"cannot start the reconciliation: {one_line(exc.message)}") from None
    return handle


async def run_reconciliation(
    client: Client, settings: Settings, request: ReconcileRequest | None = None
) -> ReconcileReport:
    """Reconcile the ledger with the chain and wait for the report; a failed run is a one-line
    :class:`~agentfleet.errors.FleetError`. Findings are already flagged (log + audit events)
    when this returns."""
    handle = await start_reconciliation(client, settings, request)
    try:
        return await handle.result()
    except WorkflowFailureError as exc:
        cause: BaseException | None = exc.cause
        while isinstance(cause, FailureError) and cause.cause is not None:
            cause = cause.cause
        reason = cause.message if isinstance(cause, FailureError) else str(cause or exc)
        raise FleetError(f"reconciliation {handle.id} failed: {one_line(reason)}") from None
    except RPCError as exc:
        raise FleetError(f"reconciliation {handle.id}: {one_line(exc.message)}") from None
