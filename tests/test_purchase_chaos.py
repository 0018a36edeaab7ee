"""SIGKILL the worker process in a bot's purchase from another bot (BuyerPurchaseWorkflow):
after the seller settled but before the buyer saw the answer, and after the refund (the
compensation of a delivery its validator scored too low) was broadcast. After each restart the
purchase goes on: paid exactly once and refunded exactly once, checked on the chain (balances,
the seller's transaction count) and in the ledger."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import pytest_asyncio
from sqlmodel import select
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from agentfleet import db
from agentfleet.bots.model import BotKind, BotSpec, BotStatus, bot_workflow_id
from agentfleet.models import BotRecord, ChainTransaction, PaymentRecord
from agentfleet.payments.purchases import (
    PurchaseRequest,
    PurchaseStatus,
    PurchaseView,
    new_purchase_id,
    purchase_nonce,
)
from agentfleet.payments.spending import SpendingDay
from agentfleet.settings import Settings
from clients.bots import create_bot
from clients.purchases import start_purchase
from starters.http.app import create_app
from starters.stack.devchain import free_port, prepare_fleet
from tests.fixtures.worker import WorkerProcess
from tests.test_bot_lifecycle import active_in_table, wait_for
from tests.test_payment_chaos import PRICE, chaos_settings, fusd
from tests.test_payments import served
from workers.main import running_workers

pytestmark = pytest.mark.extended


@dataclass
class Market:
    settings: Settings
    client: Client
    worker: WorkerProcess
    chaos_dir: Path
    buyer: str
    seller: str
    validator: str

    def address(self, name: str) -> str:
        with db.session_scope(self.settings.effective_database_url) as session:
            row = session.get(BotRecord, name)
        assert row is not None and row.address is not None
        return row.address


@pytest_asyncio.fixture(loop_scope="session")
async def market(
    dev_env: WorkflowEnvironment,
    dev_client: Client,
    chaos_worker: tuple[WorkerProcess, Path],
    migrated_database_url: str,
    anvil_url: str,
    tmp_path: Path,
) -> AsyncIterator[Market]:
    """Contracts and three active forecasters (a buyer, a seller and a validator) made by
    in-process workers, stopped again; then the worker process the test arms and kills, and
    the HTTP app on its port."""
    temporal = dev_env.client.service_client.config.target_host
    settings = chaos_settings(tmp_path, migrated_database_url, anvil_url, temporal)
    settings = settings.model_copy(update={"http_port": free_port()})
    tag = uuid.uuid4().hex[:6]
    names = [f"buyer-{tag}", f"seller-{tag}", f"validator-{tag}"]
    worker, chaos_dir = chaos_worker
    worker.env["FLEET_HTTP_PORT"] = str(settings.http_port)
    async with served(create_app(settings), settings.http_port):
        async with running_workers(dev_client, settings):
            await prepare_fleet(dev_client, settings, anvil_url)
            for name in names:
                await create_bot(dev_client, BotSpec(name=name, kind=BotKind.FORECASTER))
            for name in names:
                await wait_for(dev_client, name, lambda v: v.status is BotStatus.ACTIVE)
                await active_in_table(settings, name)
        worker.start()
        yield Market(settings, dev_client, worker, chaos_dir, *names)


async def test_purchase_killed_after_paying_and_mid_refund_pays_once_and_refunds_once(
    market: Market, anvil_url: str
) -> None:
    """The buyer's call got the seller's answer (settled) and the worker died before the
    purchase saw it: the call is made again with the same authorization (403, then the payer's
    proof), never a second payment. Its validator scores the delivery 90 (< 95), so the seller
    refunds; the worker dies right after the refund was broadcast: the refund is sent once."""
    token = fusd(market.settings, anvil_url)
    w3 = token.w3
    buyer, seller = market.address(market.buyer), market.address(market.seller)
    balances = (token.functions.balanceOf(buyer).call(), token.functions.balanceOf(seller).call())
    sent_by_seller = w3.eth.get_transaction_count(seller)
    purchase_id = new_purchase_id(market.buyer)
    (market.chaos_dir / f"after_paid_call@{purchase_id}").touch()
    (market.chaos_dir / f"after_broadcast@refund-{purchase_id}").touch()

    handle = await start_purchase(
        market.client,
        PurchaseRequest(
            purchase_id=purchase_id,
            buyer=market.buyer,
            seller=market.seller,
            skill="forecast",
            validator=market.validator,
            min_score=95,
        ),
    )
    for point in ("after_paid_call", "after_broadcast@refund-"):
        assert await market.worker.wait_killed(seconds=180) == -9, f"{point} was not reached"
        market.worker.start()
    view: PurchaseView = await asyncio.wait_for(handle.result(), timeout=300)

    assert not list(market.chaos_dir.iterdir()), "both armed points fired"
    assert view.status is PurchaseStatus.REFUNDED, view.reason
    assert view.steps == [
        "discovered",
        "checked",
        "signed",
        "paid",
        "settled",
        "confirmed",
        "validated",
        "refunded",
        "reviewed",
    ]
    # Paid once and paid back once: both balances as they were; the seller sent two
    # transactions (the validation request and the refund), no second refund.
    assert token.functions.balanceOf(buyer).call() == balances[0]
    assert token.functions.balanceOf(seller).call() == balances[1]
    assert w3.eth.get_transaction_count(seller) == sent_by_seller + 2
    state = token.functions.authorizationState(
        buyer, bytes.fromhex(purchase_nonce(purchase_id)[2:])
    )
    assert state.call() is True
    with db.session_scope(market.settings.effective_database_url) as session:
        [row] = session.exec(select(PaymentRecord)).all()
        settlement = session.get(ChainTransaction, row.payment_id)
        refund = session.get(ChainTransaction, f"refund-{purchase_id}")
    assert (row.payment_id, row.status, row.amount) == (view.payment_id, "refunded", str(PRICE))
    assert (row.tx_hash, row.refund_tx_hash) == (view.tx_hash, view.refund_tx_hash)
    assert settlement is not None and [a["hash"] for a in settlement.attempts] == [view.tx_hash]
    assert (
        refund is not None
        and refund.sender.lower() == seller.lower()
        and refund.status == "confirmed"
    )
    assert [a["hash"] for a in refund.attempts] == [view.refund_tx_hash]
    entity = market.client.get_workflow_handle(bot_workflow_id(market.buyer))
    for _ in range(100):  # the purchase signalled its settled hold just before it ended
        book = await entity.query("spending", result_type=SpendingDay)
        if book.spent:
            break
        await asyncio.sleep(0.1)
    assert (book.spent, book.held) == ({purchase_id: PRICE}, {}), "the hold spent once"
