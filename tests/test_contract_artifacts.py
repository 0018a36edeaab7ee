"""The committed contract artifacts are exactly what the pinned solc makes of the sources."""

from __future__ import annotations

import shutil
import subprocess

from agentfleet.binaries import CONTRACTS_DIR
from agentfleet.chain import artifacts


def test_artifacts_match_the_sources() -> None:
    node = shutil.which("node")
    assert node, "node is part of every dev and CI machine (npm brings anvil and solc)"
    result = subprocess.run(
        [node, str(CONTRACTS_DIR / "build.mjs"), "--check"],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_contract_we_deploy_has_an_artifact() -> None:
    names = set(artifacts.available())
    assert {"FleetUSD", "IdentityRegistry", "ReputationRegistry", "ValidationRegistry"} <= names
