"""The built-in learning tasks by name (``fleet learn --task``, the learning-round workflow)."""

from __future__ import annotations

from agentfleet.learning.tasks.digits import DigitsTask
from agentfleet.learning.tasks.forecast import ForecastTask
from agentfleet.learning.tasks.interface import LearningTask

TASKS: dict[str, LearningTask] = {"digits": DigitsTask(), "forecast": ForecastTask()}
"""The built-in tasks by name, with their default settings."""


def task_named(name: str) -> LearningTask:
    """The registered task ``name``; ValueError listing the known ones."""
    try:
        return TASKS[name]
    except KeyError:
        raise ValueError(
            f"unknown learning task {name!r}; known: {', '.join(sorted(TASKS))}"
        ) from None
