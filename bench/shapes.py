"""Same-shape skeletons, and the shapes of what ran, read from histories.

A skeleton is a workflow of do-nothing activities with the shape of the workflow a benchmark
measures: whatever the real one costs beyond it is our code; the rest is Temporal. Sequential
shapes run :class:`workflows.skeleton.SkeletonWorkflow` (:func:`measure_skeleton`); shapes with
activities at once or on queues of their own run :class:`StepsSkeletonWorkflow`
(:func:`steps_skeleton`). The histories tell a benchmark its workflow's shape.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from pydantic import BaseModel
from temporalio import workflow
from temporalio.api.enums.v1 import EventType
from temporalio.api.history.v1 import HistoryEvent
from temporalio.client import Client
from temporalio.worker import Worker
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

from activities.skeleton import noop
from agentfleet.messages import NoopInput, SkeletonInput, SkeletonResult
from bench.harness import Figures, OnDone, Sizes, measure, milliseconds
from workflows.skeleton import SkeletonWorkflow

# -- sequential skeletons -------------------------------------------------------------------------


def skeleton_shape(activities: int, local: bool) -> str:
    """The shape name of a skeleton: 'none' without activities (regular and local are the same)."""
    if activities == 0:
        return "none"
    return "local" if local else "regular"


@contextlib.asynccontextmanager
async def skeleton_worker(
    client: Client, task_queue: str, **worker_options: Any
) -> AsyncIterator[Worker]:
    """A running worker on ``task_queue`` with :class:`SkeletonWorkflow` and the ``noop`` activity.

    ``worker_options`` go to :class:`temporalio.worker.Worker` unchanged (pollers, cache size),
    for experiments; the defaults are the SDK's, as in ``workers/main.py``.
    """
    async with Worker(
        client,
        task_queue=task_queue,
        workflows=[SkeletonWorkflow],
        activities=[noop],
        **worker_options,
    ) as worker:
        yield worker


async def measure_skeleton(
    client: Client,
    *,
    activities: int,
    local: bool,
    sizes: Sizes,
    task_queue: str | None = None,
    activity_task_queue: str | None = None,
    on_done: OnDone | None = None,
) -> Figures:
    """Figures of the skeleton with ``activities`` no-op activities (local or regular).

    With ``task_queue``, a worker must poll it with the skeleton registered
    (:func:`skeleton_worker`); without, one runs on a queue of its own while this measures.
    Regular activities run on the workflow's own queue unless ``activity_task_queue`` is given.
    """
    token = uuid.uuid4().hex[:8]
    shape = skeleton_shape(activities, local)
    request = SkeletonInput(activities=activities, local=local, task_queue=activity_task_queue)
    queue = task_queue or f"bench-skeleton-{token}"

    async def run_once(key: str) -> SkeletonResult:
        return await client.execute_workflow(
            SkeletonWorkflow.run,
            request,
            id=f"bench-skeleton-{shape}-{activities}-{token}-{key}",
            task_queue=queue,
        )

    async with contextlib.AsyncExitStack() as stack:
        if task_queue is None:
            await stack.enter_async_context(skeleton_worker(client, queue))
        return await measure(
            "skeleton", run_once, shape=shape, activities=activities, sizes=sizes, on_done=on_done
        )


# -- skeletons of steps ---------------------------------------------------------------------------


class SkeletonStep(BaseModel):
    """``activities`` no-ops started together (one workflow task schedules them all)."""

    activities: int = 1
    local: bool = False
    task_queue: str | None = None
    """Queue of regular activities; None: the workflow's own."""


class StepsSkeletonInput(BaseModel):
    steps: list[SkeletonStep]


@workflow.defn(name="BenchStepsSkeleton")
class StepsSkeletonWorkflow:
    """Each step's no-op activities at once, the steps one after the other."""

    @workflow.run
    async def run(self, shape: StepsSkeletonInput) -> int:
        timeout = timedelta(seconds=10)
        done = 0
        for step in shape.steps:
            started = [
                workflow.execute_local_activity(
                    noop, NoopInput(step=done + index), start_to_close_timeout=timeout
                )
                if step.local
                else workflow.execute_activity(
                    noop,
                    NoopInput(step=done + index),
                    task_queue=step.task_queue,
                    start_to_close_timeout=timeout,
                )
                for index in range(step.activities)
            ]
            await asyncio.gather(*started)
            done += step.activities
        return done


STEPS_RUNNER = SandboxedWorkflowRunner(
    restrictions=SandboxRestrictions.default.with_passthrough_modules(
        "agentfleet", "pydantic", "pydantic_core", "annotated_types", "bench"
    )
)
"""The fleet worker's sandbox, plus ``bench`` passed through (not re-imported per run, as the
fleet's own small workflow modules are cheap to re-import)."""


def fan_out(parallel: int) -> list[SkeletonStep]:
    """One activity, then ``parallel`` at once: a fleet command's shape (resolve, batches)."""
    return split(1, parallel, 0)


def split(before: int, parallel: int, after: int) -> list[SkeletonStep]:
    """``before`` activities one after another, ``parallel`` at once, ``after`` one after
    another."""
    return [
        *(SkeletonStep() for _ in range(before)),
        SkeletonStep(activities=parallel),
        *(SkeletonStep() for _ in range(after)),
    ]


@dataclass(frozen=True)
class StepsSkeleton:
    """A worker of :class:`StepsSkeletonWorkflow` on ``queue`` (see :func:`steps_skeleton`)."""

    client: Client
    queue: str

    def queue_named(self, suffix: str) -> str:
        """The name of one of the activity-only queues :func:`steps_skeleton` was given."""
        return f"{self.queue}-{suffix}"

    def runner(
        self, steps: Sequence[SkeletonStep], label: str = ""
    ) -> Callable[[str], Awaitable[None]]:
        """What :func:`~bench.harness.measure` runs: one skeleton of ``steps`` to completion,
        with the id ``{queue}-{label}-{key}``."""
        request = StepsSkeletonInput(steps=list(steps))
        prefix = f"{self.queue}-{label}" if label else self.queue

        async def once(key: str) -> None:
            await self.client.execute_workflow(
                StepsSkeletonWorkflow.run, request, id=f"{prefix}-{key}", task_queue=self.queue
            )

        return once


@contextlib.asynccontextmanager
async def steps_skeleton(
    client: Client, name: str, activity_queues: Sequence[str] = ()
) -> AsyncIterator[StepsSkeleton]:
    """Workers for skeletons of steps: one for the workflow and its activities on the queue
    ``{name}-{random}``, and one for activities alone on ``{that queue}-{suffix}`` for each of
    ``activity_queues``."""
    skeleton = StepsSkeleton(client, f"{name}-{uuid.uuid4().hex[:6]}")
    async with contextlib.AsyncExitStack() as stack:
        await stack.enter_async_context(
            Worker(
                client,
                task_queue=skeleton.queue,
                workflows=[StepsSkeletonWorkflow],
                activities=[noop],
                workflow_runner=STEPS_RUNNER,
            )
        )
        for suffix in activity_queues:
            await stack.enter_async_context(
                Worker(client, task_queue=skeleton.queue_named(suffix), activities=[noop])
            )
        yield skeleton


# -- shapes from histories ------------------------------------------------------------------------


async def history_events(client: Client, workflow_id: str) -> Sequence[HistoryEvent]:
    return (await client.get_workflow_handle(workflow_id).fetch_history()).events


def event_time(event: HistoryEvent) -> datetime:
    return event.event_time.ToDatetime()


async def history_counts(client: Client, workflow_id: str) -> Counter[str]:
    """Activities, local activities, workflow tasks, signals, child workflows and events of one
    workflow and its children; ``activity.<type>`` counts each (regular) activity type."""
    events = await history_events(client, workflow_id)
    counts: Counter[str] = Counter(events=len(events))
    for event in events:
        kind = event.event_type
        if kind == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
            counts["activities"] += 1
            counts[
                f"activity.{event.activity_task_scheduled_event_attributes.activity_type.name}"
            ] += 1
        elif (
            kind == EventType.EVENT_TYPE_MARKER_RECORDED
            and event.marker_recorded_event_attributes.marker_name == "core_local_activity"
        ):
            counts["local_activities"] += 1
        elif kind == EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED:
            counts["workflow_tasks"] += 1
        elif kind in (
            EventType.EVENT_TYPE_SIGNAL_EXTERNAL_WORKFLOW_EXECUTION_INITIATED,
            EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED,
        ):
            counts["signals"] += 1
        elif kind == EventType.EVENT_TYPE_START_CHILD_WORKFLOW_EXECUTION_INITIATED:
            counts["child_workflows"] += 1
            child = event.start_child_workflow_execution_initiated_event_attributes.workflow_id
            counts.update(await history_counts(client, child))
    return counts


def counts_by_type(counts: Counter[str]) -> dict[str, Any]:
    """:func:`history_counts` with the ``activity.<type>`` counts under ``activity_types``."""
    return {
        **{key: value for key, value in counts.items() if not key.startswith("activity.")},
        "activity_types": {
            key.removeprefix("activity."): value
            for key, value in sorted(counts.items())
            if key.startswith("activity.")
        },
    }


def activity_steps(events: Sequence[HistoryEvent]) -> list[list[str]]:
    """The regular activities' types, grouped by the workflow task that scheduled them: each
    group ran at once, the groups one after another."""
    steps: dict[int, list[str]] = {}
    for event in events:
        if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
            attributes = event.activity_task_scheduled_event_attributes
            group = steps.setdefault(attributes.workflow_task_completed_event_id, [])
            group.append(attributes.activity_type.name)
    return list(steps.values())


def type_counts(steps: Sequence[Sequence[str]]) -> dict[str, int]:
    """How many activities of each type ``steps`` hold, by type name."""
    return dict(sorted(Counter(name for group in steps for name in group).items()))


def steps_text(
    steps: Sequence[Sequence[str]], short: dict[str, str], *, collapse: bool = False
) -> str:
    """``record, score ∥ check, publish``: the steps with the activities' ``short`` names;
    ``collapse`` writes a step of one type N times over as ``N ∥ name``."""
    texts = []
    for group in steps:
        names = [short.get(name, name) for name in group]
        if collapse and len(names) > 1 and len(set(names)) == 1:
            texts.append(f"{len(names)} ∥ {names[0]}")
        else:
            texts.append(" ∥ ".join(names))
    return ", ".join(texts)


@dataclass(frozen=True)
class Span:
    """One activity in a history: scheduled, started (picked up by a worker), completed."""

    scheduled: datetime
    started: datetime
    completed: datetime

    @property
    def ms(self) -> float:
        return milliseconds(self.scheduled, self.completed)

    @property
    def queued_ms(self) -> float:
        return milliseconds(self.scheduled, self.started)


def activity_spans(events: Sequence[HistoryEvent]) -> dict[str, list[Span]]:
    """The completed activities by type, in the order they completed."""
    scheduled: dict[int, tuple[str, datetime]] = {}
    started: dict[int, datetime] = {}
    spans: dict[str, list[Span]] = {}
    for event in events:
        if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
            name = event.activity_task_scheduled_event_attributes.activity_type.name
            scheduled[event.event_id] = (name, event_time(event))
        elif event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED:
            key = event.activity_task_started_event_attributes.scheduled_event_id
            started[key] = event_time(event)
        elif event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED:
            key = event.activity_task_completed_event_attributes.scheduled_event_id
            name, at = scheduled[key]
            spans.setdefault(name, []).append(Span(at, started.get(key, at), event_time(event)))
    return spans
