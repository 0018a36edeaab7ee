"""SkeletonWorkflow: N sequential no-op activities, the same-shape floor for every benchmark."""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow

from workflows import calls

with workflow.unsafe.imports_passed_through():
    from activities.skeleton import noop
    from agentfleet.messages import NoopInput, SkeletonInput, SkeletonResult


@workflow.defn(name="SkeletonWorkflow")
class SkeletonWorkflow:
    @workflow.run
    async def run(self, shape: SkeletonInput) -> SkeletonResult:
        for step in range(shape.activities):
            if shape.local:
                await calls.run_local_function(
                    noop,
                    NoopInput(step=step),
                    start_to_close_timeout=timedelta(seconds=10),
                )
            else:
                await calls.run_function(
                    noop,
                    NoopInput(step=step),
                    task_queue=shape.task_queue,
                    start_to_close_timeout=timedelta(seconds=10),
                )
        return SkeletonResult(activities=shape.activities)
