"""A burst of purchases from one payer larger than a worker's workflow-task slots settles.

Each saga's verify holds the amount at the payer's entity workflow (an update). When verify ran
as a local activity, the saga's workflow task stayed open while it waited for that update: with
every slot taken by sagas in verify, the payer's entity never got a slot and the burst hung (on
the SDK's default of 100 slots, a burst of more than about 100 sagas). The worker here has 2
slots and the burst is 8 purchases, so the test fails in minutes instead of hanging at scale.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from temporalio.client import Client

from agentfleet.chain.accounts import dev_account
from agentfleet.models import PaymentRecord
from tests.test_payments import PRICE, Market, open_market, payment_header, requirements

BURST = 8
SLOTS = 2


async def test_a_burst_larger_than_the_workflow_task_slots_settles_every_payment_once(
    dev_client: Client, migrated_database_url: str, anvil_url: str, tmp_path: Path
) -> None:
    buyer = dev_account(9)
    async with open_market(
        dev_client, migrated_database_url, anvil_url, tmp_path, workflow_task_slots=SLOTS
    ) as market:
        before_buyer = market.balance(buyer.address)
        before_seller = market.balance(market.seller_address)
        async with market.http() as http:
            [accepted] = requirements(await http.post(market.path, json={}))["accepts"]
            headers = [payment_header(buyer, accepted)[0] for _ in range(BURST)]

            async def buy(header: str) -> int:
                response = await http.post(
                    market.path, json={}, headers={"PAYMENT-SIGNATURE": header}
                )
                return response.status_code

            codes = await asyncio.wait_for(
                asyncio.gather(*(buy(header) for header in headers)), timeout=150
            )
        assert set(codes) <= {200, 202}, codes  # 202: still settling after payment_wait_s
        rows = await settled_rows(market, BURST)
        assert len({row.tx_hash for row in rows}) == BURST
        assert market.balance(buyer.address) == before_buyer - BURST * PRICE
        assert market.balance(market.seller_address) == before_seller + BURST * PRICE


async def settled_rows(market: Market, count: int, timeout_s: float = 120) -> list[PaymentRecord]:
    """The ledger once ``count`` rows are settled; fails after ``timeout_s``."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        rows = market.ledger()
        if sum(row.status == "settled" for row in rows) >= count:
            return rows
        assert asyncio.get_running_loop().time() < deadline, [row.status for row in rows]
        await asyncio.sleep(0.5)
