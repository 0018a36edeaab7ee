"""Shared fixtures: Temporal (time-skipping and dev server), anvil, SQLite and PostgreSQL."""

from __future__ import annotations

from tests.fixtures.chain import *  # noqa: F403
from tests.fixtures.db import *  # noqa: F403
from tests.fixtures.stack import *  # noqa: F403
from tests.fixtures.temporal import *  # noqa: F403
from tests.fixtures.worker import *  # noqa: F403
