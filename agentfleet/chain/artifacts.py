"""Compiled contracts (``contracts/artifacts/<Name>.json``, built by ``contracts/build.mjs``)."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from functools import cache
from typing import Any

from agentfleet.binaries import CONTRACTS_DIR
from agentfleet.errors import FleetError

ARTIFACTS_DIR = CONTRACTS_DIR / "artifacts"


@dataclass(frozen=True)
class Artifact:
    name: str
    abi: list[dict[str, Any]]
    bytecode: str
    deployed_bytecode: str
    sha256: str
    """Hash of the artifact file: a deployment records it to know which build it runs."""


@cache
def load(name: str) -> Artifact:
    path = ARTIFACTS_DIR / f"{name}.json"
    try:
        raw = path.read_bytes()
    except FileNotFoundError as exc:
        raise FleetError(
            f"contract artifact {name} is missing ({path}); run `npm run build --prefix contracts`"
        ) from exc
    data = json.loads(raw)
    return Artifact(
        name=name,
        abi=data["abi"],
        bytecode=data["bytecode"],
        deployed_bytecode=data["deployedBytecode"],
        sha256=hashlib.sha256(raw).hexdigest(),
    )


def available() -> list[str]:
    return sorted(p.stem for p in ARTIFACTS_DIR.glob("*.json"))
