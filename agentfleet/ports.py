"""Free TCP ports for servers we start that cannot bind port 0 themselves.

A port is found free by binding it and letting it go; the server binds it a moment later. Ports
from the kernel's ephemeral range (``bind(0)``'s answer) lose that race now and then: every
outgoing connection on the machine (a client of Temporal, of PostgreSQL, of anvil) takes its
local port from the same range and may take ours in between ("address already in use", seen in
the test suite running many stacks at once). So ports come from below that range, where only
listeners bind, and each process walks its own stretch of it, one port after the next, so that
two processes picking at the same time seldom meet.
"""

from __future__ import annotations

import os
import socket
import threading
from pathlib import Path

LOW = 10_000
"""The lowest port handed out (well-known and registered service ports stay below)."""

_lock = threading.Lock()
_next: int | None = None


def ephemeral_range() -> tuple[int, int]:
    """The kernel's range for outgoing connections' local ports (Linux; its default elsewhere)."""
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32_768, 60_999


def _bindable(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


def free_port(host: str = "127.0.0.1") -> int:
    """A port on ``host`` that was free a moment ago, outside the ephemeral range when it can be."""
    global _next
    high = ephemeral_range()[0] - 1
    span = high - LOW + 1
    if span >= 1_000:
        with _lock:
            if _next is None:  # each process starts at its own place in the stretch
                _next = (os.getpid() * 7_919) % span
            for _ in range(span):
                port = LOW + _next
                _next = (_next + 1) % span
                if _bindable(host, port):
                    return port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:  # no room below: any port
        probe.bind((host, 0))
        chosen: int = probe.getsockname()[1]
        return chosen
