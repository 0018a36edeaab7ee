"""Workflows changed in ways replay must catch (kept apart: the sandbox re-imports this module)."""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from agentfleet import taskqueues
    from agentfleet.messages import (
        ChainHead,
        ChainHeadRequest,
        StackCheckInput,
        StackCheckResult,
    )


@workflow.defn(name="StackCheckWorkflow")
class ReorderedStackCheck:
    """A deliberately non-deterministic change: the chain is read before the database."""

    @workflow.run
    async def run(self, request: StackCheckInput) -> StackCheckResult:
        await workflow.execute_activity(
            "chain_head",
            ChainHeadRequest(),
            result_type=ChainHead,
            task_queue=taskqueues.CHAIN,
            start_to_close_timeout=timedelta(seconds=30),
        )
        raise AssertionError("unreachable in replay")
