"""The stack check: worker -> database -> chain -> audit row, as a workflow the Web UI shows."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from temporalio.client import Client

from agentfleet import taskqueues
from agentfleet.messages import StackCheckInput, StackCheckResult
from agentfleet.temporal import start_by_business_key
from workflows.stack_check import StackCheckWorkflow


async def run_stack_check(
    client: Client, label: str, *, check_chain: bool
) -> tuple[str, StackCheckResult]:
    """Run one ``stack-check-<time>`` workflow; its id and result."""
    workflow_id = f"stack-check-{datetime.now(UTC):%Y%m%dT%H%M%S}"
    handle = await start_by_business_key(
        client,
        StackCheckWorkflow.run,
        StackCheckInput(label=label, check_chain=check_chain),
        id=workflow_id,
        task_queue=taskqueues.WORKFLOWS,
        execution_timeout=timedelta(minutes=2),
    )
    result: StackCheckResult = await handle.result()
    return workflow_id, result
