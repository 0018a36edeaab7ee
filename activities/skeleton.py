"""A do-nothing activity: the floor every benchmark compares its workflows against."""

from __future__ import annotations

from temporalio import activity

from agentfleet.messages import NoopInput, NoopResult


@activity.defn(name="noop")
async def noop(request: NoopInput) -> NoopResult:
    return NoopResult(step=request.step)
