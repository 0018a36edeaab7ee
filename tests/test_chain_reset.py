"""A dev chain reset under a running fleet (anvil restarted with its state file deleted, as
`fleet up` runs it): the deployer's relayer reads its nonce from the new chain, the stale
``chain_transactions`` rows are kept as ``orphaned`` with their nonces freed, and the new
deployment is recorded beside them. On SQLite and PostgreSQL, a real anvil and the dev server."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from eth_account import Account
from pydantic import SecretStr
from sqlmodel import col, select
from temporalio.client import Client

from agentfleet import db
from agentfleet.chain.sender import ORPHANED
from agentfleet.messages import TxStatus
from agentfleet.models import ChainTransaction
from agentfleet.settings import Settings
from starters.stack.devchain import free_port, rpc, start_anvil
from tests.test_deployment import ensure_deployed

pytestmark = pytest.mark.extended

DEPLOY_TRANSACTIONS = 4 + 10
"""What a deployment sends from the deployer: four contracts and ten mints."""


def start_chain(port: int, state: Path, deployer: str) -> subprocess.Popen[bytes]:
    """anvil as `fleet up` runs it (its state in a file), the deployer funded on it."""
    proc, url = start_anvil("--state", str(state), port=port)
    rpc(url, "anvil_setBalance", deployer, hex(10**21))
    return proc


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()  # anvil writes its state file on the way out
    proc.wait(timeout=10)


def recorded(url: str, sender: str) -> list[ChainTransaction]:
    """The rows of ``sender``, by nonce (orphaned ones first: their nonces are negative)."""
    with db.session_scope(url) as session:
        return list(
            session.exec(
                select(ChainTransaction)
                .where(ChainTransaction.sender == sender)
                .order_by(col(ChainTransaction.nonce))
            ).all()
        )


async def test_a_reset_dev_chain_keeps_the_stale_transactions_as_orphaned(
    dev_client: Client, migrated_database_url: str, tmp_path: Path
) -> None:
    deployer = Account.create()
    port, state = free_port(), tmp_path / "anvil-state.json"
    settings = Settings(
        home=tmp_path / "home",
        database_url=migrated_database_url,
        rpc_url=f"http://127.0.0.1:{port}",
        deployer_key=SecretStr(deployer.key.hex()),
    )
    proc = start_chain(port, state, deployer.address)
    try:
        first = await ensure_deployed(dev_client, settings)
        assert first.startswith("deployed"), first
    finally:
        stop(proc)
    before = recorded(migrated_database_url, deployer.address)
    assert [r.nonce for r in before] == list(range(DEPLOY_TRANSACTIONS))
    assert {r.status for r in before} == {TxStatus.CONFIRMED.value}

    proc = start_chain(port, state, deployer.address)  # restarted with its state: no reset
    try:
        kept = await ensure_deployed(dev_client, settings)
        assert kept.startswith("contracts reused from"), kept
    finally:
        stop(proc)
    kept_rows = recorded(migrated_database_url, deployer.address)
    assert [(r.request_id, r.nonce, r.status) for r in kept_rows] == [
        (r.request_id, r.nonce, r.status) for r in before
    ], "nothing orphaned"

    state.unlink()
    proc = start_chain(port, state, deployer.address)
    try:
        again = await ensure_deployed(dev_client, settings)
        assert "no code at FleetUSD" in again, again
    finally:
        stop(proc)
    rows = {r.request_id: r for r in recorded(migrated_database_url, deployer.address)}
    stale = [rows[r.request_id] for r in before]
    assert [r.status for r in stale] == [ORPHANED] * DEPLOY_TRANSACTIONS
    assert [r.nonce for r in stale] == [-1 - n for n in range(DEPLOY_TRANSACTIONS)]
    assert [r.error for r in stale] == [
        f"dev chain reset: nonce {n} no longer exists" for n in range(DEPLOY_TRANSACTIONS)
    ]
    assert [(r.tx_hash, r.block_number) for r in stale] == [
        (r.tx_hash, r.block_number) for r in before
    ], "an orphaned row keeps what was sent"
    new = sorted(
        (r for r in rows.values() if r.request_id not in {b.request_id for b in before}),
        key=lambda r: r.nonce,
    )
    assert [(r.nonce, r.status) for r in new] == [
        (n, TxStatus.CONFIRMED.value) for n in range(DEPLOY_TRANSACTIONS)
    ]
