"""What runs where: derived from the activity classes' declarations (activities/queues.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from temporalio import activity

from activities.queues import queue_of, runs_on
from activities.skeleton import noop
from agentfleet import taskqueues
from agentfleet.settings import Settings
from workers.main import Activities, activities_for


def _names(queue: str, bound: Activities) -> list[str]:
    found = []
    for fn in activities_for(queue, bound):
        definition = activity._Definition.from_callable(fn)
        assert definition is not None and definition.name is not None
        found.append(definition.name)
    return found


def _defined_names() -> set[str]:
    """Every ``@activity.defn(name=...)`` in activities/."""
    sources = Path(__file__).resolve().parent.parent / "activities"
    return {
        line.split('name="')[1].split('"')[0]
        for path in sources.glob("*.py")
        for line in path.read_text().splitlines()
        if "@activity.defn(name=" in line
    }


async def test_every_activity_runs_on_its_declared_queue_once(tmp_path: Path) -> None:
    bound = Activities(Settings(database_url="sqlite://", home=tmp_path))
    try:
        by_queue = {queue: _names(queue, bound) for queue in taskqueues.ALL}
        for queue, names in by_queue.items():
            assert len(names) == len(set(names)), f"{queue} registers an activity twice"
        everywhere = {name for names in by_queue.values() for name in names}
        assert everywhere == _defined_names(), "an activity no worker runs"
        # The saga's short steps also run as local activities, beside the workflows.
        assert {"verify_payment", "record_payment", "noop"} <= set(by_queue[taskqueues.WORKFLOWS])
        assert "verify_payment" in by_queue[taskqueues.CHAIN]
        assert "record_payment" in by_queue[taskqueues.IO]
        assert "run_skill" in by_queue[taskqueues.LLM]
    finally:
        await bound.close()


def test_a_method_overrides_its_class_queue_and_unknown_queues_are_refused() -> None:
    from activities.payments import PaymentActivities

    assert queue_of(PaymentActivities.record_payment) == taskqueues.IO
    assert queue_of(PaymentActivities.verify_payment) == taskqueues.CHAIN
    assert queue_of(noop) == taskqueues.IO
    with pytest.raises(ValueError, match="unknown task queue"):
        runs_on("fleet-nowhere")
