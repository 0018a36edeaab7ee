"""Raising alerts: signal-with-start the fleet's one ``alerts`` entity, which groups them into
digests. The entity is addressed by its registered name (it calls the activities that raise)."""

from __future__ import annotations

from temporalio.client import Client
from temporalio.common import WorkflowIDConflictPolicy

from agentfleet.operations.alerts import (
    ALERTS_WORKFLOW,
    ALERTS_WORKFLOW_ID,
    AlertBatch,
    AlertsState,
)
from agentfleet.settings import Settings
from agentfleet.taskqueues import WORKFLOWS


async def send_alerts(client: Client, batch: AlertBatch, settings: Settings) -> None:
    """Signal-with-start the ``alerts`` entity with ``batch`` and the grouping settings."""
    batch = batch.model_copy(
        update={"window_s": settings.alert_window_s, "cooldown_s": settings.alert_cooldown_s}
    )
    await client.start_workflow(
        ALERTS_WORKFLOW,
        AlertsState(window_s=settings.alert_window_s, cooldown_s=settings.alert_cooldown_s),
        id=ALERTS_WORKFLOW_ID,
        task_queue=WORKFLOWS,
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
        start_signal="alert",
        start_signal_args=[batch],
    )
