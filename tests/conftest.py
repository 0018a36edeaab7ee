"""Shared fixtures: Temporal (time-skipping and dev server), anvil, SQLite and PostgreSQL."""

from __future__ import annotations

import pytest

from tests.fixtures.chain import *  # noqa: F403
from tests.fixtures.db import *  # noqa: F403
from tests.fixtures.stack import *  # noqa: F403
from tests.fixtures.temporal import *  # noqa: F403
from tests.fixtures.worker import *  # noqa: F403

SLOW_FIRST = ("test_stack", "_chaos", "test_learning_round", "test_payment_attacks")
"""Files whose tests take tens of seconds each: run first, so that the pytest-xdist processes
do not end the suite waiting on one of them (the order of the tests within a file is kept)."""


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    def slow(item: pytest.Item) -> bool:
        return any(mark in item.path.stem for mark in SLOW_FIRST)

    items.sort(key=lambda item: not slow(item))
