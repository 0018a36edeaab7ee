"""The wallets' master secret as `fleet up` and the worker meet it: a lost or wrong secret stops
them before anything starts, and off the local chain only a configured, long secret will do.
`fleet up` deploys the contracts into its anvil, and a restart reuses them."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from web3 import Web3

from agentfleet.chain.accounts import dev_account
from tests.fixtures.stack import fleet, pids_of, wait_gone

pytestmark = pytest.mark.stack


def assert_one_line_error(result: subprocess.CompletedProcess[str], *needles: str) -> str:
    assert result.returncode == 1, result
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: "), lines
    assert "Traceback" not in result.stdout + result.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def test_a_lost_or_wrong_keystore_secret_stops_fleet_up_and_a_restart_reuses_the_contracts(
    stack_env: dict[str, str],
) -> None:
    home = Path(stack_env["FLEET_HOME"])
    manifest_path = home / "deployment.json"
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
    assert nonce == 4 + 10  # 4 deployments, fUSD minted to the 10 funded dev accounts
    assert fleet(stack_env, "down").returncode == 0
    assert wait_gone(pids_of(json.loads(up.stdout))) == []
    secret_file = home / "keystore.secret"
    saved = secret_file.read_text()

    secret_file.unlink()
    lost = fleet(stack_env, "up", "--detach", "--no-demo")
    line = assert_one_line_error(
        lost,
        "the keystore secret is missing but",
        "keys are stored encrypted",
        f"restore {secret_file} or set FLEET_KEYSTORE_SECRET",
    )
    assert not secret_file.exists(), "a new secret was generated while keys are stored"
    assert not (home / "stack.json").exists(), line

    secret_file.write_text(saved)
    secret_file.chmod(0o600)
    wrong = dict(stack_env, FLEET_KEYSTORE_SECRET="w" * 64)
    assert_one_line_error(
        fleet(wrong, "up", "--detach", "--no-demo"),
        "the keystore secret (FLEET_KEYSTORE_SECRET) does not open the",
        "stored keys",
    )
    worker = subprocess.run(
        [sys.executable, "-m", "workers.main", "--metrics-port", "0"],
        env=wrong,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert worker.returncode == 1, worker
    assert (
        worker.stdout.strip()
        .splitlines()[-1]
        .startswith("error: the keystore secret (FLEET_KEYSTORE_SECRET) does not open the")
    ), worker.stdout
    assert "w" * 64 not in worker.stdout + worker.stderr

    again = fleet(stack_env, "up", "--detach", "--no-demo", "--json")
    assert again.returncode == 0, again.stderr
    assert secret_file.read_text() == saved
    # anvil keeps its state in the stack's folder: the restart deploys nothing new
    assert json.loads(manifest_path.read_text()) == first
    assert w3.eth.get_transaction_count(dev_account(0).address) == nonce
    for entry in first["contracts"].values():
        assert w3.eth.get_code(entry["address"]) != b""
    status = fleet(stack_env, "chain", "status", "--json")
    assert status.returncode == 0, status.stderr
    assert json.loads(status.stdout)["ok"] is True
    assert fleet(stack_env, "down").returncode == 0


def test_off_the_local_chain_fleet_up_and_the_worker_need_a_long_keystore_secret(
    stack_env: dict[str, str],
) -> None:
    amoy = dict(stack_env, FLEET_NETWORK="amoy", FLEET_RPC_URL="http://127.0.0.1:9/amoy")
    home = Path(stack_env["FLEET_HOME"])
    assert_one_line_error(
        fleet(amoy, "up", "--detach"), "FLEET_KEYSTORE_SECRET must be set on network amoy"
    )
    short = dict(amoy, FLEET_KEYSTORE_SECRET="only-31-bytes-of-secret-xxxxxxx")
    message = assert_one_line_error(fleet(short, "up", "--detach"), "too short", "32")
    assert "only-31-bytes" not in message
    assert_one_line_error(
        fleet(dict(amoy, FLEET_KEYSTORE_SECRET="  "), "status"),
        "FLEET_KEYSTORE_SECRET",
        "set but empty",
    )
    assert not (home / "keystore.secret").exists()
    assert not (home / "stack.json").exists()

    worker = subprocess.run(
        [sys.executable, "-m", "workers.main", "--metrics-port", "0"],
        env=amoy,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert worker.returncode == 1, worker
    assert (
        worker.stdout.strip()
        .splitlines()[-1]
        .startswith("error: FLEET_KEYSTORE_SECRET must be set on network amoy")
    ), worker.stdout
