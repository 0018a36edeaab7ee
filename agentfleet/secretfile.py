"""Secret files under ``FLEET_HOME`` (the dev keystore secret, the codec token, the dev webhook
secret): created once, mode 0600, and race-free.

The value is written to a private temporary file first and then published under its name with
``os.link``, which never replaces an existing file: a concurrent reader sees no file or the whole
value, never an empty or partial one, and two processes creating at once end with one value.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Callable
from pathlib import Path


def read_or_create(path: Path, make: Callable[[], str]) -> str:
    """The value stored in ``path`` (stripped), or a new ``make()`` value stored there now.
    Concurrent first calls, in threads or processes, all return the same value."""
    with contextlib.suppress(FileNotFoundError):
        return path.read_text().strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    value = make()
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(value + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        try:
            os.link(temporary, path)
        except FileExistsError:
            return path.read_text().strip()
    finally:
        temporary.unlink(missing_ok=True)
    return value
