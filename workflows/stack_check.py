"""StackCheckWorkflow: proves the stack end to end (worker -> database -> chain) and leaves an
audit row behind. ``fleet up`` runs it as the foundation's demo; it is visible in the Web UI.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from agentfleet import taskqueues
    from agentfleet.messages import (
        AuditRecord,
        AuditWriteResult,
        ChainHead,
        ChainHeadRequest,
        DatabaseStatus,
        StackCheckInput,
        StackCheckResult,
    )

RETRY = RetryPolicy(maximum_attempts=5, maximum_interval=timedelta(seconds=5))


@workflow.defn(name="StackCheckWorkflow")
class StackCheckWorkflow:
    @workflow.run
    async def run(self, request: StackCheckInput) -> StackCheckResult:
        database = await workflow.execute_activity(
            "database_status",
            result_type=DatabaseStatus,
            task_queue=taskqueues.IO,
            start_to_close_timeout=timedelta(seconds=30),
            retry_policy=RETRY,
        )
        chain: ChainHead | None = None
        if request.check_chain:
            chain = await workflow.execute_activity(
                "chain_head",
                ChainHeadRequest(),
                result_type=ChainHead,
                task_queue=taskqueues.CHAIN,
                start_to_close_timeout=timedelta(seconds=30),
                retry_policy=RETRY,
            )
        info = workflow.info()
        audit = await workflow.execute_activity(
            "record_audit_event",
            AuditRecord(
                idempotency_key=f"{info.workflow_id}/{info.run_id}/stack-checked",
                actor="fleet",
                kind="stack.checked",
                subject=request.label,
                workflow_id=info.workflow_id,
                detail={
                    "database": database.backend,
                    "revision": database.revision,
                    "block": chain.block_number if chain else None,
                },
            ),
            result_type=AuditWriteResult,
            task_queue=taskqueues.IO,
            start_to_close_timeout=timedelta(seconds=30),
            retry_policy=RETRY,
        )
        return StackCheckResult(
            database=database,
            chain=chain,
            audit_inserted=audit.inserted,
            checked_at=workflow.now(),
        )
