"""Secrets kept in files under ``FLEET_HOME`` (the dev keystore secret, the codec token, the dev
webhook secret): created once, atomically, readable by the owner only.

The value is written whole to a private temporary file and then published under its name with
``os.link``, which never replaces an existing file: a concurrent reader sees no file or the whole
value, never an empty or partial one, and two processes creating at once end with one value.
Every value read or made here is registered for redaction (:mod:`agentfleet.redaction`).
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Callable
from pathlib import Path

from agentfleet import redaction
from agentfleet.errors import FleetError


def read_or_create(path: Path, make: int | Callable[[], str] = 32) -> str:
    """The secret in ``path`` (stripped), created when missing from ``make``: that many random
    bytes as hex, or the value of a function. Concurrent first calls, in threads or processes,
    all return the same value. FleetError when the file is readable by others or empty."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        value = secrets.token_hex(make) if isinstance(make, int) else make()
        temporary = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "w") as handle:
                handle.write(value + "\n")
                handle.flush()
                os.fsync(handle.fileno())
            with contextlib.suppress(FileExistsError):  # another process linked its own first
                os.link(temporary, path)
        finally:
            temporary.unlink(missing_ok=True)
    if path.stat().st_mode & 0o077:
        raise FleetError(f"{path} is readable by others; run `chmod 600 {path}`")
    stored = path.read_text().strip()
    if not stored:
        raise FleetError(f"{path} is empty; remove it to have a new secret made")
    redaction.register(stored)
    return stored
