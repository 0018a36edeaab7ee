"""`fleet up` deploys the contracts into its anvil and reuses them after a restart."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from web3 import Web3

from agentfleet.chain.accounts import dev_account
from tests.fixtures.stack import fleet

pytestmark = pytest.mark.stack


def test_up_deploys_contracts_and_a_restart_reuses_them(stack_env: dict[str, str]) -> None:
    manifest_path = Path(stack_env["FLEET_HOME"]) / "deployment.json"
    up = fleet(stack_env, "up", "--detach", "--no-demo", "--json")
    assert up.returncode == 0, up.stderr
    first = json.loads(manifest_path.read_text())
    assert first["chain_id"] == 31337
    assert set(first["contracts"]) == {
        "FleetUSD",
        "IdentityRegistry",
        "ReputationRegistry",
        "ValidationRegistry",
    }
    w3 = Web3(Web3.HTTPProvider(f"http://127.0.0.1:{stack_env['FLEET_ANVIL_PORT']}"))
    nonce = w3.eth.get_transaction_count(dev_account(0).address)
    assert nonce == 4 + 10
    assert fleet(stack_env, "down").returncode == 0

    again = fleet(stack_env, "up", "--detach", "--no-demo", "--json")
    assert again.returncode == 0, again.stderr

    assert json.loads(manifest_path.read_text()) == first
    assert w3.eth.get_transaction_count(dev_account(0).address) == nonce
    for entry in first["contracts"].values():
        assert w3.eth.get_code(entry["address"]) != b""
    status = fleet(stack_env, "chain", "status", "--json")
    assert status.returncode == 0, status.stderr
    assert json.loads(status.stdout)["ok"] is True
    assert fleet(stack_env, "down").returncode == 0
