"""Shared fixtures: Temporal (time-skipping and dev server), anvil, SQLite and PostgreSQL."""

from __future__ import annotations

import gc
from collections.abc import Generator

import pytest

from tests.fixtures.chain import *  # noqa: F403
from tests.fixtures.db import *  # noqa: F403
from tests.fixtures.stack import *  # noqa: F403
from tests.fixtures.temporal import *  # noqa: F403
from tests.fixtures.worker import *  # noqa: F403

SLOW_FIRST = ("test_stack", "_chaos", "test_learning_round", "test_payment_attacks")
"""Files whose tests take tens of seconds each, slowest kind first: they run first, and the
pytest-xdist processes take tests two at a time (``--maxschedchunk=2``), so the suite does not
end with one process still working through a run of them."""


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    def rank(item: pytest.Item) -> int:
        stem = item.path.stem
        return next((i for i, mark in enumerate(SLOW_FIRST) if mark in stem), len(SLOW_FIRST))

    items.sort(key=rank)


# A full (generation 2) collection walks every tracked object and holds the GIL meanwhile, so
# every thread of the process waits, the workflow threads of in-process workers too. A pytest
# process accumulates hundreds of thousands of objects (imported modules, session fixtures,
# what earlier tests keep), and on a loaded 2-core run such a pass took over a second; at two,
# the SDK's deadlock detector fails the workflow task that was waiting ("[TMPRL1101] Potential
# deadlock detected"). So what exists after collection, and what survives each test, is frozen:
# the collector no longer walks it, and a pass inside a test walks only that test's objects.
# Garbage is collected first, so nothing that is garbage now is frozen. The price: what is alive
# when frozen and later becomes garbage only in a reference cycle is never freed (memory only, in
# a test process); what is freed by reference counting, nearly everything, is freed as usual.


def pytest_collection_finish(session: pytest.Session) -> None:
    gc.collect()
    gc.freeze()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown(item: pytest.Item) -> Generator[None, object, object]:
    try:
        return (yield)
    finally:
        gc.collect()
        gc.freeze()
