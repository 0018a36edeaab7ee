"""``deployment.json``: where each of agentfleet's contracts lives on which chain, built from which
artifact; read, written atomically, and compared with the chain."""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from pydantic import BaseModel, ValidationError
from web3 import Web3

from agentfleet.chain import artifacts
from agentfleet.chain.networks import active_profile, expected_chain_id
from agentfleet.errors import FleetError
from agentfleet.settings import Settings

CONTRACTS = ("FleetUSD", "IdentityRegistry", "ReputationRegistry", "ValidationRegistry")
MANIFEST_NAME = "deployment.json"


class DeployedContract(BaseModel):
    address: str
    artifact_sha256: str
    tx_hash: str
    block: int


class Deployment(BaseModel):
    """What ``deployment.json`` holds: where each contract lives on which chain, and which build."""

    chain_id: int
    network: str
    deployer: str
    block: int
    contracts: dict[str, DeployedContract]
    deployed_at: datetime

    def address(self, name: str) -> str:
        """Checksum address of contract ``name``; FleetError when this deployment lacks it."""
        try:
            return self.contracts[name].address
        except KeyError:
            raise FleetError(f"the deployment has no {name}; run `fleet chain deploy`") from None


@dataclass(frozen=True)
class DeploymentCheck:
    """How a manifest compares with the chain: contracts without code and rebuilt artifacts."""

    wrong_chain: int | None = None
    without_code: list[str] = field(default_factory=list)
    rebuilt: list[str] = field(default_factory=list)

    @property
    def usable(self) -> bool:
        return self.wrong_chain is None and not self.without_code

    @property
    def current(self) -> bool:
        return self.usable and not self.rebuilt

    def reason(self) -> str:
        if self.wrong_chain is not None:
            return f"it describes chain {self.wrong_chain}"
        if self.without_code:
            return f"no code at {', '.join(self.without_code)} (was the chain reset?)"
        if self.rebuilt:
            return f"{', '.join(self.rebuilt)} rebuilt since"
        return "it is current"


def manifest_path(settings: Settings) -> Path:
    return settings.home / MANIFEST_NAME


def load_deployment(settings: Settings) -> Deployment | None:
    """The manifest under the home when it describes the chain ``FLEET_NETWORK`` selects; None
    when there is none (or it is for another chain). Reads no chain: use :func:`check_deployment`
    to know whether the code is there."""
    deployment = read_manifest(manifest_path(settings))
    chain = active_profile(settings)
    if deployment is None or deployment.chain_id != expected_chain_id(settings, chain):
        return None
    return deployment


def read_manifest(path: Path, *, strict: bool = True) -> Deployment | None:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise FleetError(f"cannot read {path}: {exc.strerror}") from None
    try:
        return Deployment.model_validate_json(raw)
    except ValidationError:
        if not strict:
            return None
        raise FleetError(
            f"{path} is not a deployment manifest; delete it to deploy again"
        ) from None


def write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".deployment-", suffix=".json", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as out:
            out.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def has_code(w3: Web3, address: str) -> bool:
    return len(w3.eth.get_code(Web3.to_checksum_address(address))) > 0


def check_deployment(w3: Web3, deployment: Deployment, chain_id: int) -> DeploymentCheck:
    """Compare a manifest with the chain behind ``w3`` and with today's artifacts."""
    if deployment.chain_id != chain_id:
        return DeploymentCheck(wrong_chain=deployment.chain_id)
    without_code: list[str] = []
    rebuilt: list[str] = []
    for name in CONTRACTS:
        entry = deployment.contracts.get(name)
        if entry is None or not has_code(w3, entry.address):
            without_code.append(name)
        elif entry.artifact_sha256 != artifacts.load(name).sha256:
            rebuilt.append(name)
    return DeploymentCheck(without_code=without_code, rebuilt=rebuilt)
