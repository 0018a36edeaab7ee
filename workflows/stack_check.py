"""StackCheckWorkflow: proves the stack end to end (worker -> database -> chain) and leaves an
audit row behind. ``fleet up`` runs it as the foundation's demo; it is visible in the Web UI.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

from workflows import calls

with workflow.unsafe.imports_passed_through():
    from activities.chain import ChainActivities
    from activities.store import StoreActivities
    from agentfleet.messages import (
        AuditRecord,
        ChainHead,
        ChainHeadRequest,
        StackCheckInput,
        StackCheckResult,
    )

RETRY = RetryPolicy(maximum_attempts=5, maximum_interval=timedelta(seconds=5))


@workflow.defn(name="StackCheckWorkflow")
class StackCheckWorkflow:
    @workflow.run
    async def run(self, request: StackCheckInput) -> StackCheckResult:
        database = await calls.run(
            StoreActivities.database_status,
            start_to_close_timeout=timedelta(seconds=30),
            retry_policy=RETRY,
        )
        chain: ChainHead | None = None
        if request.check_chain:
            chain = await calls.run(
                ChainActivities.chain_head,
                ChainHeadRequest(),
                start_to_close_timeout=timedelta(seconds=30),
                retry_policy=RETRY,
            )
        info = workflow.info()
        audit = await calls.run(
            StoreActivities.record_audit_event,
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
            start_to_close_timeout=timedelta(seconds=30),
            retry_policy=RETRY,
        )
        return StackCheckResult(
            database=database,
            chain=chain,
            audit_inserted=audit.inserted,
            checked_at=workflow.now(),
        )
