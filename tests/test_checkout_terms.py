"""The gateway's terms come from the deployment manifest as it is now: kept between requests,
read again when the file changes, refused when it is gone."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from agentfleet.chain.deployment.manifest import (
    MANIFEST_NAME,
    DeployedContract,
    Deployment,
    write_atomic,
)
from agentfleet.settings import Settings
from clients.checkout import Checkout
from clients.payments import PaymentsUnavailable

FIRST = "0x5FbDB2315678afecb367f032d93F642f64180aa3"
SECOND = "0xe7f1725E7734CE288F8367e1Bb143E90bb3F0512"
SELLER = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"


def write_manifest(home: Path, token: str) -> None:
    contract = DeployedContract(address=token, artifact_sha256="00" * 32, tx_hash="0x01", block=1)
    deployment = Deployment(
        chain_id=31337,
        network="local",
        deployer="0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266",
        block=1,
        contracts={"FleetUSD": contract},
        deployed_at=datetime.now(UTC),
    )
    write_atomic(home / MANIFEST_NAME, deployment.model_dump_json(indent=2) + "\n")


async def test_terms_follow_the_manifest_when_it_is_rewritten_or_removed(tmp_path: Path) -> None:
    write_manifest(tmp_path, FIRST)
    checkout = Checkout(Settings(home=tmp_path, rpc_url="http://127.0.0.1:1"))
    try:
        terms = checkout.terms(10_000, SELLER)
        assert terms.asset == FIRST
        assert checkout.terms(10_000, SELLER) is terms, "kept while the manifest is unchanged"
        assert checkout.terms(20_000, SELLER).amount == 20_000

        write_manifest(tmp_path, SECOND)  # a redeploy: same size, maybe the same mtime tick
        assert checkout.terms(10_000, SELLER).asset == SECOND
        assert checkout.asset() == SECOND

        (tmp_path / MANIFEST_NAME).unlink()
        with pytest.raises(PaymentsUnavailable):
            checkout.terms(10_000, SELLER)
    finally:
        await checkout.close()
