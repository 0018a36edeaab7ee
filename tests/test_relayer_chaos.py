"""SIGKILL a real worker process inside the send path; after a restart every transaction is
mined exactly once, with the bytes recorded before the crash, and its outcome recorded."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import pytest
from eth_account import Account
from temporalio.client import Client
from web3 import Web3

from agentfleet import db, keystore
from agentfleet.messages import TxRequest, TxStatus
from agentfleet.models import ChainTransaction
from agentfleet.settings import Settings
from clients.transactions import send_transaction
from tests.fixtures.chain_tools import funded_account
from tests.fixtures.worker import WorkerProcess


@pytest.fixture
def chaos(
    chaos_worker: tuple[WorkerProcess, Path],
    migrated_database_url: str,
    anvil_url: str,
    tmp_path: Path,
) -> tuple[Settings, WorkerProcess, Path]:
    settings = Settings(home=tmp_path, database_url=migrated_database_url, rpc_url=anvil_url)
    return settings, *chaos_worker


@pytest.mark.parametrize("point", ["after_sign", "after_broadcast"])
async def test_worker_killed_mid_send_mines_the_transaction_exactly_once(
    dev_client: Client,
    chaos: tuple[Settings, WorkerProcess, Path],
    anvil_url: str,
    point: str,
) -> None:
    settings, worker, chaos_dir = chaos
    account = funded_account(anvil_url)
    sender = keystore.store_key(settings, "chaos-relayer", account.key)
    recipient = Account.create().address
    request = TxRequest(request_id=f"chaos-{point}-{uuid.uuid4().hex[:8]}", to=recipient, value=9)
    (chaos_dir / point).touch()
    worker.start()
    outcome_task = asyncio.create_task(
        send_transaction(
            dev_client,
            chain_id=31337,
            sender=sender,
            request=request,
            reorg_window_s=0,
            heartbeat_timeout_s=2,
        )
    )
    assert await worker.wait_killed() == -9
    w3 = Web3(Web3.HTTPProvider(anvil_url))
    with db.session_scope(settings.effective_database_url) as session:
        before = session.get(ChainTransaction, request.request_id)
    assert before is not None and len(before.attempts) == 1, "signed bytes must be on record"
    recorded_hash = before.attempts[0]["hash"]
    expected_nonce_on_chain = 0 if point == "after_sign" else 1
    assert w3.eth.get_transaction_count(sender) == expected_nonce_on_chain

    worker.start()
    outcome = await asyncio.wait_for(outcome_task, timeout=90)
    assert outcome.status is TxStatus.CONFIRMED, outcome.error
    assert outcome.tx_hash == recorded_hash
    assert w3.eth.get_transaction_count(sender) == 1
    assert w3.eth.get_balance(recipient) == 9
    with db.session_scope(settings.effective_database_url) as session:
        after = session.get(ChainTransaction, request.request_id)
    assert after is not None and after.status == "confirmed"
    assert [a["hash"] for a in after.attempts] == [recorded_hash]
