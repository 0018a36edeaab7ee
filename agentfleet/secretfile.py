"""Secrets kept in files under ``FLEET_HOME``: created once, atomically, readable by the owner only.

Two processes starting at once end with the same secret: the file is written whole under a
temporary name and linked into place, which fails when another process got there first (its
file is then read). A reader never sees a partial or empty file.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path

from agentfleet.errors import FleetError


def read_or_create(path: Path, make: int = 32) -> str:
    """The secret in ``path`` (hex), created with ``make`` random bytes when missing; FleetError
    when it is readable by others or empty."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "w") as handle:
                handle.write(secrets.token_hex(make))
                handle.flush()
                os.fsync(handle.fileno())
            with contextlib.suppress(FileExistsError):  # another process linked its own first
                os.link(temporary, path)
        finally:
            temporary.unlink(missing_ok=True)
    if path.stat().st_mode & 0o077:
        raise FleetError(f"{path} is readable by others; run `chmod 600 {path}`")
    value = path.read_text().strip()
    if not value:
        raise FleetError(f"{path} is empty; remove it to have a new secret made")
    return value
