"""How any workflow raises alerts: :func:`new_alert` and :func:`raise_alerts` (one activity that
hands them to the ``alerts`` entity, ``workflows.alerts.AlertsWorkflow``).

Kept apart from that workflow class: the sandbox imports a workflow's modules afresh for every
run, and every workflow that can alert imports this one.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError

from workflows import calls

with workflow.unsafe.imports_passed_through():
    from activities.alerts import AlertActivities
    from agentfleet.operations.alerts import Alert, AlertBatch, AlertKind, Severity, alert_id

RAISE_RETRY = RetryPolicy(maximum_interval=timedelta(seconds=10), maximum_attempts=5)


def new_alert(kind: AlertKind, key: str, text: str, severity: Severity = Severity.WARNING) -> Alert:
    """An alert raised by the calling workflow: its id is the workflow id, kind and key, so the
    same workflow raising it again (a retry, a replay) is the same alert."""
    source = workflow.info().workflow_id
    return Alert(
        alert_id=alert_id(source, kind, key),
        kind=kind,
        severity=severity,
        key=key,
        text=text[:2000],
        at=workflow.now(),
        source=source,
    )


async def raise_alerts(alerts: list[Alert]) -> None:
    """From any workflow: hand ``alerts`` to the ``alerts`` entity with one activity. An alert
    that cannot be raised is logged; it never fails the workflow that raised it."""
    if not alerts:
        return
    try:
        await calls.run(
            AlertActivities.raise_alerts,
            AlertBatch(alerts=alerts),
            start_to_close_timeout=timedelta(seconds=10),
            retry_policy=RAISE_RETRY,
        )
    except ActivityError as err:
        workflow.logger.error("%d alerts not raised: %s", len(alerts), err.cause)
