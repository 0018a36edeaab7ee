"""HTTP clients kept per event loop, so a send does not pay for a new client every time.

A new ``httpx.AsyncClient`` (and python-telegram-bot's ``HTTPXRequest``, which wraps one) builds
an SSL context: about 15-30 ms of CPU, more than the send itself on a local server, and what
capped a publisher at half its channel's rate. Clients are bound to the loop that made them, so
the cache is keyed by the running loop and forgets a loop once it is gone.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Callable, Hashable
from typing import Any, TypeVar

T = TypeVar("T")

_per_loop: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[Hashable, Any]] = (
    weakref.WeakKeyDictionary()
)


def shared(key: Hashable, make: Callable[[], T]) -> T:
    """The client ``make()`` built for ``key`` on the running loop (built on first use)."""
    loop = asyncio.get_running_loop()
    clients = _per_loop.setdefault(loop, {})
    if key not in clients:
        clients[key] = make()
    client: T = clients[key]
    return client
