"""Following a workflow by reading it again until it reaches a state (the CLI's waits)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

V = TypeVar("V")


async def poll_until(
    read: Callable[[], Awaitable[V]],
    view: V,
    done: Callable[[V], bool],
    timeout_s: float,
    poll_s: float,
    on_view: Callable[[V], None] | None = None,
) -> V:
    """Starting from ``view``, ``read()`` every ``poll_s`` until ``done`` or ``timeout_s`` has
    passed; the last view read. ``on_view`` sees each view as it is read."""
    deadline = time.monotonic() + timeout_s
    while not done(view) and time.monotonic() < deadline:
        await asyncio.sleep(poll_s)
        view = await read()
        if on_view is not None:
            on_view(view)
    return view
