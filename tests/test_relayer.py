"""The durable transaction path on a real dev server and anvil: one writer of nonces per account,
recorded before broadcast, exactly once per request id, reorgs noticed and corrected."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import pytest_asyncio
from eth_account import Account
from sqlmodel import select
from temporalio.client import Client
from temporalio.service import RPCError
from temporalio.testing import ActivityEnvironment
from web3 import Web3

from activities.chain import ChainActivities
from agentfleet import db, keystore, taskqueues
from agentfleet.chain.transactions import relayer_id
from agentfleet.errors import FleetError
from agentfleet.messages import RelayerState, TxOrder, TxRequest, TxStatus
from agentfleet.models import ChainTransaction
from agentfleet.settings import Settings
from clients.transactions import send_transaction
from tests.fixtures.chain_tools import funded_account, private_anvil, rpc
from tests.replay import record_continued, record_history
from workers.main import running_workers
from workflows.relayer import RelayerWorkflow

REVERTING_CODE = "0x60006000fd"  # PUSH1 0 PUSH1 0 REVERT: every call reverts


@pytest_asyncio.fixture(loop_scope="session")
async def relayer_env(
    dev_client: Client, migrated_database_url: str, anvil_url: str, tmp_path: Path
) -> AsyncIterator[tuple[Settings, str]]:
    """Workers bound to this test's database and the session anvil; a funded stored key."""
    settings = Settings(home=tmp_path, database_url=migrated_database_url, rpc_url=anvil_url)
    account = funded_account(anvil_url)
    address = keystore.store_key(settings, f"relayer-{uuid.uuid4().hex[:6]}", account.key)
    async with running_workers(dev_client, settings):
        yield settings, address


@asynccontextmanager
async def relayer_on_own_chain(
    client: Client, database_url: str, home: Path, label: str, *anvil_args: str
) -> AsyncIterator[tuple[str, str]]:
    """A private anvil (for reorgs and stopped mining), a funded key stored as ``label``, and
    workers bound to them."""
    with private_anvil(*anvil_args) as url:
        settings = Settings(home=home, database_url=database_url, rpc_url=url)
        sender = keystore.store_key(settings, label, funded_account(url).key)
        async with running_workers(client, settings):
            yield url, sender


def backend(settings: Settings) -> str:
    return "postgresql" if settings.effective_database_url.startswith("postgresql") else "sqlite"


def transfer(request_id: str, wei: int = 1) -> TxRequest:
    return TxRequest(request_id=request_id, to=Account.create().address, value=wei)


async def test_fifty_concurrent_transactions_from_one_relayer_all_mine_in_nonce_order(
    dev_client: Client, relayer_env: tuple[Settings, str], anvil_url: str
) -> None:
    settings, sender = relayer_env
    run = uuid.uuid4().hex[:8]
    outcomes = await asyncio.gather(
        *(
            send_transaction(
                dev_client,
                chain_id=31337,
                sender=sender,
                request=transfer(f"{run}-{i}"),
                reorg_window_s=0,
            )
            for i in range(50)
        )
    )
    assert [o.status for o in outcomes] == [TxStatus.CONFIRMED] * 50, [o.error for o in outcomes]
    assert sorted(o.nonce for o in outcomes) == list(range(50))
    w3 = Web3(Web3.HTTPProvider(anvil_url))
    assert w3.eth.get_transaction_count(sender) == 50
    by_nonce = sorted(outcomes, key=lambda o: o.nonce or 0)
    positions = []
    for outcome in by_nonce:
        receipt = w3.eth.get_transaction_receipt(outcome.tx_hash)  # type: ignore[arg-type]
        assert receipt["status"] == 1
        positions.append((receipt["blockNumber"], receipt["transactionIndex"]))
    assert positions == sorted(positions)
    with db.session_scope(settings.effective_database_url) as session:
        rows = session.exec(select(ChainTransaction).where(ChainTransaction.sender == sender)).all()
    assert len(rows) == 50 and {r.status for r in rows} == {"confirmed"}
    assert all(len(r.attempts) == 1 for r in rows)


async def test_fifty_concurrent_sends_by_activity_take_their_nonces_by_update_and_resend_once(
    dev_client: Client, relayer_env: tuple[Settings, str], anvil_url: str
) -> None:
    """The payment saga's settlement path: ``send_with_relayer`` asks the relayer entity for its
    nonce by update, 50 at once, and a retry of the same request re-sends nothing."""
    settings, sender = relayer_env
    chain = ChainActivities(settings, dev_client)
    run = uuid.uuid4().hex[:8]
    orders = [
        TxOrder(chain_id=31337, sender=sender, request=transfer(f"{run}-{i}"), reorg_window_s=0)
        for i in range(50)
    ]
    try:
        outcomes = await asyncio.gather(
            *(ActivityEnvironment().run(chain.send_with_relayer, order) for order in orders)
        )
        again = await ActivityEnvironment().run(chain.send_with_relayer, orders[7])
    finally:
        await chain.close()
    assert [o.status for o in outcomes] == [TxStatus.CONFIRMED] * 50, [o.error for o in outcomes]
    assert sorted(o.nonce for o in outcomes) == list(range(50))
    assert (again.nonce, again.tx_hash) == (outcomes[7].nonce, outcomes[7].tx_hash)
    assert Web3(Web3.HTTPProvider(anvil_url)).eth.get_transaction_count(sender) == 50
    status = await dev_client.get_workflow_handle_for(
        RelayerWorkflow.run, relayer_id(31337, sender)
    ).query(RelayerWorkflow.status)
    assert (status.next_nonce, status.reserved) == (50, 0), "every outcome was handed back"
    relayer = dev_client.get_workflow_handle(relayer_id(31337, sender))
    await record_history(relayer, f"relayer_reserve_now_{backend(settings)}")


async def test_same_request_twice_sends_once(
    dev_client: Client, relayer_env: tuple[Settings, str], anvil_url: str
) -> None:
    settings, sender = relayer_env
    request = transfer(f"once-{uuid.uuid4().hex[:8]}", wei=7)
    first, second = await asyncio.gather(
        send_transaction(dev_client, chain_id=31337, sender=sender, request=request),
        send_transaction(dev_client, chain_id=31337, sender=sender, request=request),
    )
    third = await send_transaction(dev_client, chain_id=31337, sender=sender, request=request)
    assert first == second == third
    assert first.status is TxStatus.CONFIRMED
    assert Web3(Web3.HTTPProvider(anvil_url)).eth.get_transaction_count(sender) == 1
    handle = dev_client.get_workflow_handle(relayer_id(31337, sender))
    await record_history(handle, f"relayer_{backend(settings)}")
    tx_handle = dev_client.get_workflow_handle(f"tx-31337-{request.request_id}")
    await record_history(tx_handle, f"transaction_{backend(settings)}")
    key = keystore.load_account(settings, sender).key.hex().removeprefix("0x")
    for history in (await handle.fetch_history(), await tx_handle.fetch_history()):
        assert key not in history.to_json().lower(), "a private key reached a workflow history"


async def test_an_idle_relayer_rechecks_a_finished_transaction_after_its_window(
    dev_client: Client, relayer_env: tuple[Settings, str]
) -> None:
    """The reorg re-check runs when its window ends even if nothing else happens."""
    settings, sender = relayer_env
    outcome = await send_transaction(
        dev_client,
        chain_id=31337,
        sender=sender,
        request=transfer(f"recheck-{uuid.uuid4().hex[:8]}"),
        reorg_window_s=1,
    )
    assert outcome.status is TxStatus.CONFIRMED
    handle = dev_client.get_workflow_handle_for(RelayerWorkflow.run, relayer_id(31337, sender))
    for _ in range(100):
        status = await handle.query(RelayerWorkflow.status)
        if status.pending_recheck == 0:
            break
        await asyncio.sleep(0.1)
    assert status.pending_recheck == 0, "the re-check never ran"
    await record_history(handle, f"relayer_rechecked_{backend(settings)}")


async def test_a_relayer_that_continued_as_new_hands_out_the_next_nonces(
    dev_client: Client, relayer_env: tuple[Settings, str]
) -> None:
    """A relayer past its ``continue_as_new_after`` events starts a new run between
    transactions; the new run carries the nonce count, so nonces stay in order and unique."""
    settings, sender = relayer_env
    handle = await dev_client.start_workflow(
        RelayerWorkflow.run,
        RelayerState(chain_id=31337, address=sender, continue_as_new_after=20),
        id=relayer_id(31337, sender),
        task_queue=taskqueues.WORKFLOWS,
    )
    run = uuid.uuid4().hex[:8]
    nonces = []
    for i in range(4):
        outcome = await send_transaction(
            dev_client,
            chain_id=31337,
            sender=sender,
            request=transfer(f"can-{run}-{i}"),
            reorg_window_s=0,
        )
        assert outcome.status is TxStatus.CONFIRMED, outcome.error
        nonces.append(outcome.nonce)
    assert nonces == [0, 1, 2, 3]
    first_run = handle.first_execution_run_id
    assert first_run is not None
    assert (await handle.describe()).run_id != first_run, "it never continued as new"
    await record_continued(dev_client, handle.id, first_run, "relayer_continued", backend(settings))


async def test_reverting_transaction_fails_without_spending_a_nonce(
    dev_client: Client, relayer_env: tuple[Settings, str], anvil_url: str
) -> None:
    _, sender = relayer_env
    target = Account.create().address
    rpc(anvil_url, "anvil_setCode", target, REVERTING_CODE)
    failed = await send_transaction(
        dev_client,
        chain_id=31337,
        sender=sender,
        request=TxRequest(request_id=f"revert-{uuid.uuid4().hex[:8]}", to=target, data="0x01"),
    )
    assert failed.status is TxStatus.FAILED
    assert failed.nonce is None and "revert" in (failed.error or "")
    ok = await send_transaction(
        dev_client, chain_id=31337, sender=sender, request=transfer(f"after-{uuid.uuid4().hex}")
    )
    assert ok.status is TxStatus.CONFIRMED and ok.nonce == 0


async def test_a_transaction_that_would_revert_when_signed_is_not_sent_and_its_nonce_is_filled(
    dev_client: Client, relayer_env: tuple[Settings, str], anvil_url: str
) -> None:
    """A request whose gas limit is given skips the simulation before the nonce (as a payment's
    settlement does): the sender simulates right before signing, never broadcasts a revert, and
    fills the reserved nonce with a no-op so the account's next transaction is not stuck."""
    _, sender = relayer_env
    target = Account.create().address
    rpc(anvil_url, "anvil_setCode", target, REVERTING_CODE)
    w3 = Web3(Web3.HTTPProvider(anvil_url))
    before = w3.eth.get_transaction_count(sender)
    doomed = await send_transaction(
        dev_client,
        chain_id=31337,
        sender=sender,
        request=TxRequest(
            request_id=f"doomed-{uuid.uuid4().hex[:8]}", to=target, data="0x01", gas_limit=90_000
        ),
        reorg_window_s=0,
    )
    assert doomed.status is TxStatus.FAILED
    assert "would revert" in (doomed.error or "") and doomed.nonce == before
    filler = w3.eth.get_transaction(doomed.tx_hash)  # type: ignore[arg-type]
    assert (filler["to"], filler["value"], filler["nonce"]) == (sender, 0, before)
    assert w3.eth.get_transaction_receipt(doomed.tx_hash)["status"] == 1  # type: ignore[arg-type]
    after = await send_transaction(
        dev_client, chain_id=31337, sender=sender, request=transfer(f"next-{uuid.uuid4().hex}")
    )
    assert after.status is TxStatus.CONFIRMED and after.nonce == before + 1


async def test_bad_request_is_refused_at_the_edge_and_changes_nothing(
    dev_client: Client, relayer_env: tuple[Settings, str]
) -> None:
    _, sender = relayer_env
    await send_transaction(
        dev_client, chain_id=31337, sender=sender, request=transfer(f"warm-{uuid.uuid4().hex}")
    )
    handle = dev_client.get_workflow_handle(relayer_id(31337, sender))
    before = await handle.query(RelayerWorkflow.status)
    bad = TxRequest(request_id=f"bad-{uuid.uuid4().hex[:6]}", to="0x1234", value=1)
    with pytest.raises(FleetError, match="not an address"):
        await send_transaction(dev_client, chain_id=31337, sender=sender, request=bad)
    assert await handle.query(RelayerWorkflow.status) == before
    with pytest.raises(RPCError):
        await dev_client.get_workflow_handle(f"tx-31337-{bad.request_id}").describe()


async def test_reorg_that_drops_a_depth_zero_transaction_is_noticed_and_corrected(
    dev_client: Client, migrated_database_url: str, tmp_path: Path
) -> None:
    async with relayer_on_own_chain(
        dev_client, migrated_database_url, tmp_path, "reorg-relayer"
    ) as (url, sender):
        request = transfer(f"reorg-{uuid.uuid4().hex[:8]}", wei=5)
        outcome = await send_transaction(
            dev_client, chain_id=31337, sender=sender, request=request, reorg_window_s=3600
        )
        assert outcome.status is TxStatus.CONFIRMED
        rpc(url, "anvil_reorg", 1, [])
        w3 = Web3(Web3.HTTPProvider(url))
        assert w3.eth.get_block(outcome.block_number)["hash"].to_0x_hex() != outcome.block_hash
        handle = dev_client.get_workflow_handle(relayer_id(31337, sender))
        await handle.signal(RelayerWorkflow.recheck_now)
        corrected = None
        for _ in range(100):
            with db.session_scope(migrated_database_url) as session:
                row = session.get(ChainTransaction, request.request_id)
                if row and row.reorgs == 1 and row.status == "confirmed":
                    corrected = row
                    break
            await asyncio.sleep(0.1)
        assert corrected is not None, "the reorg was not noticed"
        receipt = w3.eth.get_transaction_receipt(corrected.tx_hash)  # type: ignore[arg-type]
        assert receipt["blockHash"].to_0x_hex() == corrected.block_hash
        assert corrected.block_hash != outcome.block_hash
        assert w3.eth.get_transaction_count(sender) == 1
        assert w3.eth.get_balance(request.to) == 5  # type: ignore[arg-type]


async def test_stuck_transaction_is_resent_at_the_same_nonce_with_higher_fees(
    dev_client: Client, migrated_database_url: str, tmp_path: Path
) -> None:
    from agentfleet.messages import GasPolicy

    async with relayer_on_own_chain(
        dev_client, migrated_database_url, tmp_path, "stuck-relayer", "--no-mining"
    ) as (url, sender):
        request = transfer(f"stuck-{uuid.uuid4().hex[:8]}", wei=3)
        sending = asyncio.create_task(
            send_transaction(
                dev_client,
                chain_id=31337,
                sender=sender,
                request=request.model_copy(update={"gas_limit": 21000}),
                policy=GasPolicy(stuck_after_s=0.5, receipt_timeout_s=60),
                reorg_window_s=0,
            )
        )
        attempts: list[dict[str, object]] = []
        for _ in range(200):
            with db.session_scope(migrated_database_url) as session:
                row = session.get(ChainTransaction, request.request_id)
                attempts = list(row.attempts) if row else []
            if len(attempts) >= 2:
                break
            await asyncio.sleep(0.1)
        assert len(attempts) >= 2, "a stuck transaction must be re-signed"
        assert int(attempts[1]["max_fee"]) > int(attempts[0]["max_fee"])  # type: ignore[call-overload]
        rpc(url, "evm_mine")
        outcome = await asyncio.wait_for(sending, timeout=60)
        assert outcome.status is TxStatus.CONFIRMED
        w3 = Web3(Web3.HTTPProvider(url))
        assert w3.eth.get_transaction_count(sender) == 1
        assert w3.eth.get_balance(request.to) == 3  # type: ignore[arg-type]
        with db.session_scope(migrated_database_url) as session:
            row = session.get(ChainTransaction, request.request_id)
        assert row is not None and row.nonce == 0
        assert {a["hash"] for a in row.attempts} >= {outcome.tx_hash}


async def test_reorg_while_waiting_for_depth_is_caught_before_the_outcome_is_final(
    dev_client: Client, migrated_database_url: str, tmp_path: Path
) -> None:
    async with relayer_on_own_chain(
        dev_client, migrated_database_url, tmp_path, "depth-relayer", "--no-mining"
    ) as (url, sender):
        request = transfer(f"depth-{uuid.uuid4().hex[:8]}", wei=4)
        sending = asyncio.create_task(
            send_transaction(
                dev_client,
                chain_id=31337,
                sender=sender,
                request=request.model_copy(update={"gas_limit": 21000}),
                confirmations=3,
                reorg_window_s=0,
            )
        )
        for _ in range(300):
            if int(rpc(url, "eth_getTransactionCount", sender, "pending"), 16) == 1:
                break
            await asyncio.sleep(0.05)
        rpc(url, "evm_mine")
        first_block: str | None = None
        for _ in range(300):
            with db.session_scope(migrated_database_url) as session:
                row = session.get(ChainTransaction, request.request_id)
                first_block = row.block_hash if row else None
            if first_block:
                break
            await asyncio.sleep(0.05)
        assert first_block, "the transaction was never seen mined"
        rpc(url, "anvil_reorg", 1, [])
        for _ in range(400):
            if sending.done():
                break
            rpc(url, "evm_mine")
            await asyncio.sleep(0.05)
        outcome = await asyncio.wait_for(sending, timeout=30)
        assert outcome.status is TxStatus.CONFIRMED
        assert outcome.reorgs == 1
        assert outcome.block_hash != first_block
        w3 = Web3(Web3.HTTPProvider(url))
        assert w3.eth.get_block(outcome.block_number)["hash"].to_0x_hex() == outcome.block_hash  # type: ignore[arg-type]
        assert w3.eth.get_block_number() >= outcome.block_number + 3  # type: ignore[operator]
        assert w3.eth.get_transaction_count(sender) == 1
        assert w3.eth.get_balance(request.to) == 4  # type: ignore[arg-type]
