"""Where an activity runs, said once where it is defined.

Every activity class names its task queue in a ``task_queue`` class attribute; a method whose work
needs another kind of worker (a chain signature in a class of database steps) says so with
:func:`runs_on`. Workflows call activities by reference (``workflows.calls.run(
ContentActivities.prepare_content, ...)``) and the queue comes from here; ``workers/main.py``
registers every activity on the queue this module gives it. :func:`also_local` marks the few
activities a workflow may also run as local activities (registered with the workflows).
"""

from __future__ import annotations

import inspect
import sys
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from temporalio import activity

from agentfleet import taskqueues

F = TypeVar("F", bound=Callable[..., Any])

_QUEUE = "__fleet_task_queue__"
_LOCAL = "__fleet_also_local__"


def runs_on(*queues: str) -> Callable[[F], F]:
    """The task queue(s) of an activity whose class runs elsewhere, or of a plain function (the
    first queue is where workflows send it; the benchmarks' ``noop`` serves several)."""
    unknown = [queue for queue in queues if queue not in taskqueues.ALL]
    if not queues or unknown:
        raise ValueError(f"unknown task queue(s) {unknown!r}")

    def mark(fn: F) -> F:
        setattr(fn, _QUEUE, queues)
        return fn

    return mark


def also_local(fn: F) -> F:
    """An activity that workflows may also run as a local activity (on the workflows queue)."""
    setattr(fn, _LOCAL, True)
    return fn


def queue_of(fn: Callable[..., Any]) -> str:
    """The task queue workflows send ``fn`` to (an activity method, or a function marked with
    :func:`runs_on`)."""
    return queues_of(fn)[0]


def queues_of(fn: Callable[..., Any]) -> tuple[str, ...]:
    own = getattr(fn, _QUEUE, None)
    if isinstance(own, tuple):
        return own
    owner = _owner(fn)
    queue = getattr(owner, "task_queue", None) if owner is not None else None
    if not isinstance(queue, str):
        raise TypeError(f"{fn.__qualname__}: its class declares no task_queue")
    return (queue,)


def is_local(fn: Callable[..., Any]) -> bool:
    return bool(getattr(fn, _LOCAL, False))


def _owner(fn: Callable[..., Any]) -> type | None:
    path = fn.__qualname__.split(".")
    if len(path) != 2:
        return None
    owner = getattr(sys.modules.get(fn.__module__), path[0], None)
    return owner if inspect.isclass(owner) else None


def activity_methods(instance: object) -> list[Callable[..., Any]]:
    """The bound activity methods of ``instance`` (those with ``@activity.defn``)."""
    found = []
    for name, member in inspect.getmembers(type(instance), inspect.isfunction):
        if activity._Definition.from_callable(member) is not None:
            found.append(getattr(instance, name))
    return found


def by_queue(
    instances: Iterable[object], functions: Iterable[Callable[..., Any]] = ()
) -> dict[str, list[Callable[..., Any]]]:
    """Every activity of ``instances`` (and the plain activity ``functions``) under the queue it
    runs on; local ones also under the workflows queue."""
    queues: dict[str, list[Callable[..., Any]]] = {queue: [] for queue in taskqueues.ALL}
    for instance in instances:
        for method in activity_methods(instance):
            _place(queues, method, method.__func__)  # type: ignore[attr-defined]
    for fn in functions:
        _place(queues, fn, fn)
    return queues


def _place(
    queues: dict[str, list[Callable[..., Any]]],
    runnable: Callable[..., Any],
    declared: Callable[..., Any],
) -> None:
    for queue in queues_of(declared):
        queues[queue].append(runnable)
    if is_local(declared) and runnable not in queues[taskqueues.WORKFLOWS]:
        queues[taskqueues.WORKFLOWS].append(runnable)
