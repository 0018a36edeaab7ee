"""A buyer's daily budget and the terms it signs, through the real gateway, saga, relayer and
anvil: purchases hold budget at the buyer's entity before signing, so purchases started together
cannot pass ``spending.per_day``; a purchase that paid nothing gives its hold back; a seller
asking for another network or an over-long validity window gets nothing signed."""

from __future__ import annotations

import asyncio
import base64
import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from pydantic import SecretStr
from temporalio.client import Client, WorkflowUpdateFailedError
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.service import RPCError
from temporalio.testing import WorkflowEnvironment
from web3 import Web3

from agentfleet import binaries, search_attributes
from agentfleet.bots.model import BotKind, BotSpec, BotStatus
from agentfleet.chain.deployment.manifest import load_deployment
from agentfleet.payments import ledger
from agentfleet.payments.purchases import (
    PurchaseRequest,
    PurchaseStatus,
    PurchaseView,
    new_purchase_id,
    purchase_nonce,
)
from agentfleet.settings import Settings
from clients.bots import configure_bot, create_bot, pause_bot, resume_bot, retire_bot
from clients.purchases import start_purchase
from starters.http.app import create_app
from starters.stack.devchain import free_port, funded_account, prepare_fleet
from tests.replay import record_history
from tests.test_bot_lifecycle import active_in_table, wait_for
from tests.test_payments import served
from tests.test_purchases import PRICE, Fleet, _address
from workers.main import running_workers

Scope = dict[str, Any]
Asgi = Any


@dataclass
class Tamper:
    """In front of the real HTTP app: while ``terms`` is set, the 402 of ``seller``'s paid skills
    asks for those terms instead; every request to them carrying a payment is counted."""

    app: Asgi
    seller: str
    terms: dict[str, Any] = field(default_factory=dict)
    signed: list[str] = field(default_factory=list)

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        path = str(scope.get("path", ""))
        if scope["type"] != "http" or not path.startswith(f"/bots/{self.seller}/skills/"):
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        if b"payment-signature" in headers or b"x-payment" in headers:
            self.signed.append(path)
        terms = dict(self.terms)

        async def tampered(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start" and terms:
                message = {**message, "headers": [_retermed(h, terms) for h in message["headers"]]}
            await send(message)

        await self.app(scope, receive, tampered)


def _retermed(header: tuple[bytes, bytes], terms: dict[str, Any]) -> tuple[bytes, bytes]:
    name, value = header
    if name.lower() != b"payment-required":
        return header
    required = json.loads(base64.b64decode(value))
    required["accepts"] = [{**offer, **terms} for offer in required["accepts"]]
    return name, base64.b64encode(json.dumps(required).encode())


@dataclass
class Market:
    fleet: Fleet
    tamper: Tamper

    @property
    def backend(self) -> str:
        url = self.fleet.settings.effective_database_url
        return "postgresql" if url.startswith("postgresql") else "sqlite"

    def balance(self, name: str) -> int:
        token = self.fleet.contract("FleetUSD")
        units: int = token.functions.balanceOf(_address(self.fleet, name)).call()  # type: ignore[attr-defined]
        return units

    def authorization_used(self, name: str, purchase_id: str) -> bool:
        token = self.fleet.contract("FleetUSD")
        used: bool = token.functions.authorizationState(  # type: ignore[attr-defined]
            _address(self.fleet, name), bytes.fromhex(purchase_nonce(purchase_id)[2:])
        ).call()
        return used

    async def start(self, buyer: str, **args: object) -> Any:
        request = PurchaseRequest(
            purchase_id=new_purchase_id(buyer),
            buyer=buyer,
            seller=self.fleet.seller,
            skill="forecast",
            args=dict(args),
        )
        return await start_purchase(self.fleet.client, request)

    async def buy(self, buyer: str, **args: object) -> PurchaseView:
        handle = await self.start(buyer, **args)
        view: PurchaseView = await asyncio.wait_for(handle.result(), timeout=180)
        return view


@pytest_asyncio.fixture(loop_scope="session")
async def market(
    dev_env: WorkflowEnvironment,
    dev_client: Client,
    migrated_database_url: str,
    anvil_url: str,
    tmp_path: Path,
) -> AsyncIterator[Market]:
    """Workers, the HTTP app behind a Tamper on its configured port, a seller, and a buyer
    whose daily limit is worth 5 calls."""
    settings = Settings(
        home=tmp_path,
        database_url=migrated_database_url,
        rpc_url=anvil_url,
        deployer_key=SecretStr(funded_account(anvil_url).key.hex()),
        temporal_address=dev_env.client.service_client.config.target_host,
        http_port=free_port(),
    )
    tag = uuid.uuid4().hex[:6]
    buyer, seller = f"buyer-{tag}", f"seller-{tag}"
    tamper = Tamper(create_app(settings), seller)
    async with running_workers(dev_client, settings):
        await prepare_fleet(dev_client, settings, anvil_url)
        async with served(tamper, settings.http_port):
            await create_bot(
                dev_client,
                BotSpec(
                    name=buyer,
                    kind=BotKind.FORECASTER,
                    params={"spending": {"per_day": str(5 * PRICE / 10**6)}},
                ),
            )
            await create_bot(dev_client, BotSpec(name=seller, kind=BotKind.FORECASTER))
            for name in (buyer, seller):
                await wait_for(dev_client, name, lambda v: v.status is BotStatus.ACTIVE)
                await active_in_table(settings, name)
            deployment = load_deployment(settings)
            assert deployment is not None
            w3 = Web3(Web3.HTTPProvider(anvil_url))
            fleet = Fleet(settings, dev_client, deployment, w3, buyer, seller)
            yield Market(fleet, tamper)


async def spending_of(market: Market, name: str) -> dict[str, Any]:
    handle = market.fleet.client.get_workflow_handle(f"bot-{name}")
    book: dict[str, Any] = await handle.query("spending", result_type=dict)
    return book


async def test_twenty_concurrent_purchases_settle_only_what_the_daily_limit_allows(
    market: Market,
) -> None:
    fleet = market.fleet
    before = market.balance(fleet.buyer)

    handles = await asyncio.gather(*(market.start(fleet.buyer) for _ in range(20)))
    views: list[PurchaseView] = await asyncio.wait_for(
        asyncio.gather(*(h.result() for h in handles)), timeout=300
    )

    done = [v for v in views if v.status is PurchaseStatus.DONE]
    refused = [v for v in views if v.status is PurchaseStatus.REFUSED]
    assert len(done) == 5, [(v.status, v.reason) for v in views]
    assert len(refused) == 15, [(v.status, v.reason) for v in views]
    assert before - market.balance(fleet.buyer) == 5 * PRICE
    assert len(market.tamper.signed) == 5, "only the 5 held purchases sent an authorization"
    for view in refused:
        assert f"more would pass its daily limit of {5 * PRICE}" in (view.reason or ""), view
        assert view.steps == ["discovered"] and view.tx_hash is None
        assert not market.authorization_used(fleet.buyer, view.purchase_id)
    for view in done:
        assert market.authorization_used(fleet.buyer, view.purchase_id)
    rows = ledger.list_payments(fleet.settings.effective_database_url, bot=fleet.buyer)
    assert len(rows) == 5 and {r.status for r in rows} == {"settled"}
    assert {r.tx_hash for r in rows} == {v.tx_hash for v in done}

    book = await spending_of(market, fleet.buyer)
    assert book["day"] == datetime.now(UTC).date().isoformat()
    assert book["held"] == {} and book["spent"] == {v.purchase_id: PRICE for v in done}

    by_id = {h.id: h for h in handles}
    await record_history(by_id[done[0].purchase_id], f"buyer_purchase_held_{market.backend}")
    await record_history(
        by_id[refused[0].purchase_id], f"buyer_purchase_over_budget_{market.backend}"
    )


async def test_a_purchase_that_paid_nothing_gives_its_hold_back(market: Market) -> None:
    fleet = market.fleet
    await configure_bot(fleet.client, fleet.buyer, {"spending": {"per_day": str(PRICE / 10**6)}})
    before = market.balance(fleet.buyer)

    failed_handle = await market.start(fleet.buyer, symbol="not a symbol!")
    failed: PurchaseView = await asyncio.wait_for(failed_handle.result(), timeout=180)
    bought = await market.buy(fleet.buyer)
    over = await market.buy(fleet.buyer)

    assert failed.status is PurchaseStatus.FAILED, failed.reason
    assert "the seller answered 502" in (failed.reason or "")
    assert "signed" in failed.steps and not market.authorization_used(
        fleet.buyer, failed.purchase_id
    )
    assert bought.status is PurchaseStatus.DONE, bought.reason
    assert over.status is PurchaseStatus.REFUSED
    assert f"{PRICE} more would pass its daily limit of {PRICE}" in (over.reason or "")
    assert before - market.balance(fleet.buyer) == PRICE
    book = await spending_of(market, fleet.buyer)
    assert book["held"] == {} and book["spent"] == {bought.purchase_id: PRICE}
    assert over.purchase_id in book["refused"]

    await record_history(failed_handle, f"buyer_purchase_released_{market.backend}")
    await retire_bot(fleet.client, fleet.buyer)
    await record_history(
        fleet.client.get_workflow_handle(f"bot-{fleet.buyer}"),
        f"bot_lifecycle_budget_{market.backend}",
    )


async def test_the_entity_answers_a_purchase_once_and_never_while_paused_or_retired(
    market: Market,
) -> None:
    fleet = market.fleet
    entity = fleet.client.get_workflow_handle(f"bot-{fleet.buyer}")
    today = datetime.now(UTC).date().isoformat()
    hold = {"purchase_id": "purchase-a", "amount": PRICE, "day": today, "settled_today": 0}
    big = {**hold, "purchase_id": "purchase-b", "amount": 5 * PRICE}
    await pause_bot(fleet.client, fleet.buyer)

    with pytest.raises(WorkflowUpdateFailedError) as paused:
        await entity.execute_update("hold_spending", hold, result_type=dict)
    assert str(getattr(paused.value.cause, "message", "")) == (
        f"bot {fleet.buyer} is paused; spending needs it active, degraded"
    )
    assert await spending_of(market, fleet.buyer) is None

    await resume_bot(fleet.client, fleet.buyer)
    answers = [
        await entity.execute_update("hold_spending", ask, result_type=dict)
        for ask in (hold, big, hold, {**big, "amount": PRICE})
    ]
    assert [a["granted"] for a in answers] == [True, False, True, False]
    assert answers[1] == answers[3], "the same purchase id gets its first answer"
    assert answers[1]["reason"] == (
        f"{fleet.buyer} has {PRICE} units spent or held today; {5 * PRICE} more would pass "
        f"its daily limit of {5 * PRICE}"
    )
    assert (await spending_of(market, fleet.buyer))["held"] == {"purchase-a": PRICE}

    await retire_bot(fleet.client, fleet.buyer)
    with pytest.raises(RPCError, match="completed"):
        await entity.execute_update("hold_spending", {**hold, "purchase_id": "purchase-c"})


async def test_a_seller_asking_another_network_or_a_long_validity_gets_nothing_signed(
    market: Market,
) -> None:
    fleet, buyer = market.fleet, market.fleet.buyer
    before = market.balance(buyer)
    asks: dict[str, dict[str, Any]] = {
        "asks to be paid on eip155:1; {buyer} pays on eip155:31337 only": {"network": "eip155:1"},
        "asks for an authorization valid 86400 s; {buyer} signs at most 1800 s": {
            "maxTimeoutSeconds": 86_400
        },
    }

    for needle, terms in asks.items():
        market.tamper.terms = terms
        view = await market.buy(buyer)

        assert view.status is PurchaseStatus.REFUSED, view
        assert needle.format(buyer=buyer) in (view.reason or ""), view.reason
        assert "signed" not in view.steps and market.tamper.signed == []
        assert not market.authorization_used(buyer, view.purchase_id)
    assert market.balance(buyer) == before
    market.tamper.terms = {}
    assert (await market.buy(buyer)).status is PurchaseStatus.DONE
    assert len(market.tamper.signed) == 1
    assert fleet.seller in market.tamper.signed[0]


async def test_holds_granted_across_continue_as_new_stay_within_the_limit(
    migrated_database_url: str, anvil_url: str, tmp_path: Path
) -> None:
    """A burst of holds on an entity that continues as new every ~60 events: exactly the limit
    is granted, and each purchase asked again after the new run began gets its first answer."""
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=str(binaries.temporal_cli()),
        data_converter=pydantic_data_converter,
        search_attributes=list(search_attributes.ALL),
        dev_server_extra_args=[
            "--dynamic-config-value",
            "limit.historyCount.suggestContinueAsNew=60",
        ],
    )
    try:
        client = env.client
        settings = Settings(
            home=tmp_path,
            database_url=migrated_database_url,
            rpc_url=anvil_url,
            deployer_key=SecretStr(funded_account(anvil_url).key.hex()),
        )
        name = f"can-{uuid.uuid4().hex[:6]}"
        async with running_workers(client, settings):
            await prepare_fleet(client, settings, anvil_url)
            await create_bot(
                client,
                BotSpec(
                    name=name, kind=BotKind.FORECASTER, params={"spending": {"per_day": "0.05"}}
                ),
            )
            await wait_for(client, name, lambda v: v.status is BotStatus.ACTIVE)
            entity = client.get_workflow_handle(f"bot-{name}")
            first_run = (await entity.describe()).run_id
            today = datetime.now(UTC).date().isoformat()
            asks = [
                {"purchase_id": f"purchase-{i}", "amount": PRICE, "day": today, "settled_today": 0}
                for i in range(40)
            ]

            async def hold(ask: dict[str, Any]) -> Any:
                # An update that meets the entity continuing as new is aborted by the server;
                # callers (the purchase's activity) ask again, as here.
                for _ in range(20):
                    try:
                        return await entity.execute_update("hold_spending", ask, result_type=dict)
                    except RPCError as exc:
                        if "aborted" not in str(exc):
                            raise
                        await asyncio.sleep(0.1)
                raise AssertionError(f"hold {ask['purchase_id']} aborted 20 times")

            answers = await asyncio.gather(*(hold(a) for a in asks))
            assert (await entity.describe()).run_id != first_run, "it never continued as new"
            again = [await hold(a) for a in asks]

            assert sum(a["granted"] for a in answers) == 5
            assert again == answers
            book: dict[str, Any] = await entity.query("spending", result_type=dict)
            assert book["held"] == {a["purchase_id"]: PRICE for a in answers if a["granted"]}
    finally:
        await env.shutdown()
