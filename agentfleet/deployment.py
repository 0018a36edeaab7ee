"""Contract deployment hook run by ``fleet up`` once the chain answers.

The chain layer fills this in (deploy from ``contracts/artifacts/``, reuse a deployment whose code
is on chain, write ``deployment.json`` under the stack home). Until contracts exist it does nothing.
"""

from __future__ import annotations

from agentfleet.binaries import CONTRACTS_DIR
from agentfleet.settings import Settings


def ensure_deployed(settings: Settings) -> str | None:
    """Deploy what is missing; return one line for the progress output, or None."""
    artifacts = sorted((CONTRACTS_DIR / "artifacts").glob("*.json"))
    if not artifacts:
        return None
    return f"{len(artifacts)} contract artifacts found; deployment arrives with the chain layer"
