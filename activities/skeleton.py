"""A do-nothing activity: the floor every benchmark compares its workflows against."""

from __future__ import annotations

from temporalio import activity

from activities.queues import also_local, runs_on
from agentfleet import taskqueues
from agentfleet.messages import NoopInput, NoopResult


@activity.defn(name="noop")
@runs_on(taskqueues.IO, taskqueues.LLM)
@also_local
async def noop(request: NoopInput) -> NoopResult:
    return NoopResult(step=request.step)
