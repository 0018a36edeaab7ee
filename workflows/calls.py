"""Calling activities by reference from workflow code.

``await run(ContentActivities.prepare_content, order, start_to_close_timeout=...)`` schedules the
activity under its registered name on the task queue its class declares
(:mod:`activities.queues`), so the queue is said once, where the activity is defined, and a renamed
or mistyped activity is an import error instead of a task that waits forever. The names in
histories are the ``@activity.defn(name=...)`` names, unchanged.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar, overload

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from activities.queues import queue_of

P = TypeVar("P")
R = TypeVar("R")

_NONE: Any = object()


@overload
async def run(method: Callable[[Any], Awaitable[R]], /, **options: Any) -> R: ...
@overload
async def run(method: Callable[[Any, P], Awaitable[R]], arg: P, /, **options: Any) -> R: ...
@overload
async def run(method: Callable[[Any], R], /, **options: Any) -> R: ...
@overload
async def run(method: Callable[[Any, P], R], arg: P, /, **options: Any) -> R: ...
async def run(method: Callable[..., Any], arg: Any = _NONE, /, **options: Any) -> Any:
    """Run an activity method and return its result (``task_queue=`` overrides the declared one)."""
    options.setdefault("task_queue", queue_of(method))
    if arg is _NONE:
        return await workflow.execute_activity_method(method, **options)
    return await workflow.execute_activity_method(method, arg, **options)


@overload
def start(
    method: Callable[[Any, P], Awaitable[R]], arg: P, /, **options: Any
) -> workflow.ActivityHandle[R]: ...
@overload
def start(
    method: Callable[[Any, P], R], arg: P, /, **options: Any
) -> workflow.ActivityHandle[R]: ...
def start(method: Callable[..., Any], arg: Any, /, **options: Any) -> Any:
    """Schedule an activity method and return its handle (awaitable, cancellable)."""
    options.setdefault("task_queue", queue_of(method))
    return workflow.start_activity_method(method, arg, **options)


@overload
async def run_local(method: Callable[[Any, P], Awaitable[R]], arg: P, /, **options: Any) -> R: ...
@overload
async def run_local(method: Callable[[Any, P], R], arg: P, /, **options: Any) -> R: ...
async def run_local(method: Callable[..., Any], arg: Any, /, **options: Any) -> Any:
    """Run an activity method as a local activity (in the workflow's worker)."""
    return await workflow.execute_local_activity_method(method, arg, **options)


async def run_function(fn: Callable[[P], Awaitable[R]], arg: P, /, **options: Any) -> R:
    """Run a plain activity function (``activities.skeleton.noop``)."""
    options.setdefault("task_queue", queue_of(fn))
    return await workflow.execute_activity(fn, arg, **options)


async def run_local_function(fn: Callable[[P], Awaitable[R]], arg: P, /, **options: Any) -> R:
    return await workflow.execute_local_activity(fn, arg, **options)
