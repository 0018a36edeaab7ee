"""SkeletonWorkflow: N sequential no-op activities, the same-shape floor for every benchmark."""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from agentfleet.messages import NoopInput, NoopResult, SkeletonInput, SkeletonResult


@workflow.defn(name="SkeletonWorkflow")
class SkeletonWorkflow:
    @workflow.run
    async def run(self, shape: SkeletonInput) -> SkeletonResult:
        for step in range(shape.activities):
            if shape.local:
                await workflow.execute_local_activity(
                    "noop",
                    NoopInput(step=step),
                    result_type=NoopResult,
                    start_to_close_timeout=timedelta(seconds=10),
                )
            else:
                await workflow.execute_activity(
                    "noop",
                    NoopInput(step=step),
                    result_type=NoopResult,
                    task_queue=shape.task_queue,
                    start_to_close_timeout=timedelta(seconds=10),
                )
        return SkeletonResult(activities=shape.activities)
