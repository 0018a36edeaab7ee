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

import httpx
from eth_account import Account
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


async def test_a_payer_who_cannot_pay_the_whole_racing_burst_pays_only_what_it_holds(
    dev_client: Client, migrated_database_url: str, anvil_url: str, tmp_path: Path
) -> None:
    """A stranger with fUSD for 3 purchases signs 6 and sends them at once through the same 2
    slots: 3 settle, 3 get the x402 refusal ``insufficient_funds`` (402), no 5xx, no hang, and
    it pays exactly 3 prices: the holds at its entity, not the chain's balance read by each
    saga, decide."""
    short = Account.create()
    affordable, signed = 3, 6
    async with open_market(
        dev_client, migrated_database_url, anvil_url, tmp_path, workflow_task_slots=SLOTS
    ) as market:
        funding = market.token.functions.transfer(short.address, affordable * PRICE).transact(
            {"from": dev_account(9).address}
        )
        assert market.w3.eth.wait_for_transaction_receipt(funding)["status"] == 1
        before_seller = market.balance(market.seller_address)
        async with market.http() as http:
            [accepted] = requirements(await http.post(market.path, json={}))["accepts"]
            signed_headers = [payment_header(short, accepted) for _ in range(signed)]

            async def buy(header: str) -> httpx.Response:
                return await http.post(market.path, json={}, headers={"PAYMENT-SIGNATURE": header})

            responses = await asyncio.wait_for(
                asyncio.gather(*(buy(header) for header, _ in signed_headers)), timeout=150
            )
        codes = sorted(response.status_code for response in responses)
        refused = [r for r in responses if r.status_code == 402]
        assert len(refused) == signed - affordable, codes
        assert set(codes) - {402} <= {200, 202}, codes  # 202: still settling after its wait
        assert {requirements(r)["error"] for r in refused} == {"insufficient_funds"}
        rows = await settled_rows(market, affordable)
        assert sorted(row.status for row in rows) == ["settled"] * affordable
        assert market.balance(short.address) == 0
        assert market.balance(market.seller_address) == before_seller + affordable * PRICE
        used = [market.used(short.address, nonce) for _, nonce in signed_headers]
        assert sum(used) == affordable, "a refused authorization stays unused"


async def settled_rows(market: Market, count: int, timeout_s: float = 120) -> list[PaymentRecord]:
    """The ledger once ``count`` rows are settled; fails after ``timeout_s``."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        rows = market.ledger()
        if sum(row.status == "settled" for row in rows) >= count:
            return rows
        assert asyncio.get_running_loop().time() < deadline, [row.status for row in rows]
        await asyncio.sleep(0.5)
