"""Shared fixtures: Temporal (time-skipping and dev server), anvil, SQLite and PostgreSQL."""

from __future__ import annotations

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
