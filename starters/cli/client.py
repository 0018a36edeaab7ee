"""Running one Temporal conversation from a CLI command, and leaving cleanly."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Awaitable, Callable
from typing import TypeVar

from temporalio.client import Client

from agentfleet.errors import FleetError
from agentfleet.settings import Settings
from agentfleet.temporal import connect
from starters.cli.output import fail

T = TypeVar("T")


def run_with_client(settings: Settings, work: Callable[[Client], Awaitable[T]]) -> T:
    """Connect, run ``work(client)``, and collect the client while the loop still runs.

    A Temporal client left for interpreter shutdown after a long poll aborts the process now and
    then ("PyGILState_Release ... finalizing", temporalio/sdk-python#300); collecting it first
    avoids that. A FleetError is re-raised fresh (its traceback would keep the client alive).
    """

    async def main() -> T | FleetError:
        outcome: T | FleetError
        client: Client | None = None
        try:
            client = await connect(settings)
            outcome = await work(client)
        except FleetError as exc:
            outcome = FleetError(exc.message, exit_code=exc.exit_code)
        del client  # dropped before the collection below
        gc.collect()
        return outcome

    result = asyncio.run(main())
    if isinstance(result, FleetError):
        raise result
    return result


def run_or_fail(settings: Settings, work: Callable[[Client], Awaitable[T]], as_json: bool) -> T:
    """:func:`run_with_client`; a :class:`FleetError` is its one line and exit code."""
    try:
        return run_with_client(settings, work)
    except FleetError as exc:
        fail(str(exc), exc.exit_code, as_json=as_json)
