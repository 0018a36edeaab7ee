"""Fault injection for the chaos tests: SIGKILL this process at a named point, once.

Inactive unless ``FLEET_CHAOS_DIR`` is set. A test arms a point by creating a file in that folder
named after it (``after_sign``), or after it and the start of a key it concerns
(``after_broadcast@register-`` fires only for request ids starting with ``register-``). The file
is removed before the kill, so the restarted process passes the point.
"""

from __future__ import annotations

import os
import signal


def chaos_point(name: str, key: str = "") -> None:
    folder = os.environ.get("FLEET_CHAOS_DIR")
    if not folder:
        return
    try:
        entries = os.listdir(folder)
    except FileNotFoundError:
        return
    for entry in entries:
        point, _, prefix = entry.partition("@")
        if point != name or not key.startswith(prefix):
            continue
        try:
            os.remove(os.path.join(folder, entry))
        except FileNotFoundError:
            continue  # another process took it
        os.kill(os.getpid(), signal.SIGKILL)
