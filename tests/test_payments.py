"""x402 payments end to end: the official SDK's buyer pays a bot's skill through our gateway, the
payment saga settles it through the relayer on anvil, the ledger has one row. Bad payments get
their x402 reason and change nothing; 100 submissions of one payment settle once."""

from __future__ import annotations

import asyncio
import base64
import json
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
import uvicorn
from eth_account import Account
from eth_account.signers.local import LocalAccount
from pydantic import SecretStr
from sqlmodel import select
from temporalio.client import Client
from web3 import Web3
from x402 import x402Client
from x402.http import FacilitatorConfig, HTTPFacilitatorClient
from x402.http.clients.httpx import x402AsyncTransport
from x402.http.facilitator_client_base import CreateHeadersAuthProvider
from x402.mechanisms.evm.exact import ExactEvmClientScheme
from x402.schemas import PaymentRequired, PaymentRequirements

from agentfleet import db, search_attributes
from agentfleet.bots.model import BotKind, BotStatus
from agentfleet.chain import artifacts
from agentfleet.chain.accounts import dev_account
from agentfleet.chain.deployment.manifest import load_deployment
from agentfleet.chain.eip3009 import (
    random_nonce,
    sign_cancel_authorization,
    sign_transfer_authorization,
    x402_payload,
)
from agentfleet.models import BotRecord, PaymentRecord
from agentfleet.payments import facilitator_keys
from agentfleet.settings import Settings
from starters.http.app import create_app
from starters.stack.devchain import free_port, funded_account, prepare_fleet
from tests.replay import record_history
from workers.main import running_workers

PRICE = 10_000  # 0.01 fUSD, the default price of `forecast`


@dataclass
class Market:
    settings: Settings
    client: Client
    app: Any
    seller: str
    seller_address: str
    token: Any
    w3: Web3

    def http(self, buyer: LocalAccount | None = None) -> httpx.AsyncClient:
        """A client of the gateway; with ``buyer``, the SDK's x402 transport pays 402s."""
        transport: httpx.AsyncBaseTransport = httpx.ASGITransport(app=self.app)
        if buyer is not None:
            sdk = x402Client()
            sdk.register("eip155:*", ExactEvmClientScheme(buyer))
            sdk.set_spend_controls(
                {"allowed_assets": [{"network": "eip155:31337", "asset": self.token.address}]}
            )
            transport = x402AsyncTransport(sdk, transport=transport)
        return httpx.AsyncClient(transport=transport, base_url=self.settings.http_url, timeout=60)

    def balance(self, address: str) -> int:
        return int(self.token.functions.balanceOf(address).call())

    def used(self, payer: str, nonce: str) -> bool:
        state = self.token.functions.authorizationState(payer, bytes.fromhex(nonce[2:])).call()
        return bool(state)

    def ledger(self) -> list[PaymentRecord]:
        with db.session_scope(self.settings.effective_database_url) as session:
            return list(session.exec(select(PaymentRecord)).all())

    @property
    def path(self) -> str:
        return f"/bots/{self.seller}/skills/forecast"

    async def record(self, payment_id: str, outcome: str) -> None:
        """Keep the saga's history for the replay tests, under today's version's name
        (``*_verify_activity``). The histories of older versions (``payment_saga_settled_*``,
        ``..._with_status_*``, ``..._lean_*``, ...) stay as recorded: today's code cannot make
        them, so nothing records over them."""
        url = self.settings.effective_database_url
        backend = "postgresql" if url.startswith("postgresql") else "sqlite"
        handle = self.client.get_workflow_handle(payment_id)
        await handle.result()
        await record_history(handle, f"payment_saga_{outcome}_{backend}")


@asynccontextmanager
async def open_market(
    client: Client, database_url: str, anvil_url: str, home: Path, **settings: Any
) -> AsyncIterator[Market]:
    """A deployed chain, a funded relayer, workers (``settings`` passed on to them), and an active
    forecaster selling skills."""
    settings_ = Settings(
        home=home,
        database_url=database_url,
        rpc_url=anvil_url,
        deployer_key=SecretStr(funded_account(anvil_url).key.hex()),
        temporal_address=client.service_client.config.target_host,
        payment_wait_s=30,
        **settings,
    )
    seller = f"seller-{uuid.uuid4().hex[:6]}"
    seller_address = Account.create().address
    with db.session_scope(database_url) as session:
        session.add(
            BotRecord(
                name=seller,
                kind=BotKind.FORECASTER.value,
                owner="desk-1",
                status=BotStatus.ACTIVE.value,
                params={"symbol": "BTCUSDT", "alpha": 0.2},
                address=seller_address,
                agent_id=1,
            )
        )
        session.commit()
    async with running_workers(client, settings_):
        await prepare_fleet(client, settings_, anvil_url)
        deployment = load_deployment(settings_)
        assert deployment is not None
        w3 = Web3(Web3.HTTPProvider(anvil_url))
        token = w3.eth.contract(
            address=deployment.address("FleetUSD"), abi=artifacts.load("FleetUSD").abi
        )
        yield Market(settings_, client, create_app(settings_), seller, seller_address, token, w3)


@pytest_asyncio.fixture(loop_scope="session")
async def market(
    dev_client: Client, migrated_database_url: str, anvil_url: str, tmp_path: Path
) -> AsyncIterator[Market]:
    """A deployed chain, a funded relayer, workers, and an active forecaster selling skills."""
    async with open_market(dev_client, migrated_database_url, anvil_url, tmp_path) as opened:
        yield opened


def requirements(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code == 402, response.text
    decoded: dict[str, Any] = json.loads(base64.b64decode(response.headers["PAYMENT-REQUIRED"]))
    return decoded


def payment_header(
    buyer: LocalAccount,
    accepted: dict[str, Any],
    *,
    key: bytes | None = None,
    value: int | None = None,
    to: str | None = None,
    valid_after: int = 0,
    valid_before: int | None = None,
    nonce: bytes | None = None,
    **accepted_changes: Any,
) -> tuple[str, str]:
    """(base64 PAYMENT-SIGNATURE, nonce) for an EIP-3009 authorization signed by hand, so that
    each field can be made wrong on purpose."""
    nonce = nonce or random_nonce()
    signed = sign_transfer_authorization(
        key or buyer.key,
        chain_id=31337,
        token=accepted["asset"],
        from_=buyer.address,
        to=to or accepted["payTo"],
        value=int(accepted["amount"]) if value is None else value,
        valid_after=valid_after,
        valid_before=valid_before or int(time.time()) + 300,
        nonce=nonce,
    )
    payload = x402_payload(signed, {**accepted, **accepted_changes})
    return base64.b64encode(json.dumps(payload).encode()).decode(), signed.nonce


def bearer_auth(key: str) -> CreateHeadersAuthProvider:
    """The SDK's facilitator client sending ``key`` to /verify, /settle and /supported."""
    header = {"Authorization": f"Bearer {key}"}
    return CreateHeadersAuthProvider(
        lambda: {"verify": header, "settle": header, "supported": header}
    )


def settle_response(response: httpx.Response) -> dict[str, Any]:
    decoded: dict[str, Any] = json.loads(base64.b64decode(response.headers["PAYMENT-RESPONSE"]))
    return decoded


async def test_unpaid_call_gets_402_with_the_bots_price_wallet_and_the_token(
    market: Market,
) -> None:
    async with market.http() as http:
        response = await http.post(market.path, json={"symbol": "ETHUSDT"})
    required = requirements(response)
    [accepted] = required["accepts"]
    assert required["x402Version"] == 2
    assert accepted["scheme"] == "exact" and accepted["network"] == "eip155:31337"
    assert accepted["amount"] == str(PRICE)
    assert accepted["payTo"] == market.seller_address
    assert accepted["asset"] == market.token.address
    assert accepted["extra"] == {"name": "FleetUSD", "version": "2"}
    assert accepted["maxTimeoutSeconds"] > 30 + 30
    assert required["resource"]["url"].endswith(market.path)
    assert response.json() == required
    assert market.ledger() == []


async def test_the_official_sdk_client_pays_a_skill_and_it_settles_once(market: Market) -> None:
    buyer = dev_account(7)
    before_buyer, before_seller = (
        market.balance(buyer.address),
        market.balance(market.seller_address),
    )

    async with market.http(buyer) as http:
        response = await http.post(market.path, json={"symbol": "ETHUSDT", "horizon": "4h"})

    assert response.status_code == 200, response.text
    forecast = response.json()
    assert (forecast["bot"], forecast["symbol"], forecast["horizon"]) == (
        market.seller,
        "ETHUSDT",
        "4h",
    )
    assert forecast["disclosure"] == "Automated agent operated by desk-1."
    settled = settle_response(response)
    assert settled["success"] is True and settled["network"] == "eip155:31337"
    assert settled["payer"] == buyer.address
    receipt = market.w3.eth.get_transaction_receipt(settled["transaction"])
    assert receipt["status"] == 1
    assert market.balance(buyer.address) == before_buyer - PRICE
    assert market.balance(market.seller_address) == before_seller + PRICE
    [row] = market.ledger()
    assert (row.status, row.tx_hash, row.amount, row.payer) == (
        "settled",
        settled["transaction"],
        str(PRICE),
        buyer.address,
    )
    assert (row.seller, row.skill, row.block_number) == (
        market.seller,
        "forecast",
        receipt["blockNumber"],
    )
    assert market.used(buyer.address, row.nonce)
    async with market.http() as http:
        status = (await http.get(f"/payments/{row.payment_id}")).json()
    assert status["status"] == "settled" and status["final"] is True
    assert status["steps"] == ["verified", "executed", "settled", "confirmed", "recorded"]
    described = await market.client.get_workflow_handle(row.payment_id).describe()
    assert described.typed_search_attributes.get(search_attributes.PAYMENT_STATUS) == "settled"
    await market.record(row.payment_id, "settled_verify_activity")


BAD_PAYMENTS: dict[str, tuple[dict[str, Any], str]] = {
    "wrong network": ({"network": "eip155:1"}, "invalid_network"),
    "wrong asset": (
        {"asset": "0x000000000000000000000000000000000000dEaD"},
        "invalid_payment_requirements",
    ),
    "wrong payTo": ({"to": "0x000000000000000000000000000000000000bEEF"}, "recipient_mismatch"),
    "amount mismatch": ({"value": PRICE - 1}, "invalid_exact_evm_payload_authorization_value"),
    "expired": ({"valid_before": 1_000}, "authorization_valid_before"),
    "not yet valid": ({"valid_after": 4_000_000_000}, "authorization_valid_after"),
    "bad signature": ({"key": Account.create().key}, "invalid_exact_evm_payload_signature"),
}


@pytest.mark.parametrize("case", list(BAD_PAYMENTS))
async def test_a_bad_payment_gets_its_reason_and_changes_nothing(market: Market, case: str) -> None:
    buyer = dev_account(6)
    changes, reason = BAD_PAYMENTS[case]
    before = market.balance(buyer.address)
    async with market.http() as http:
        [accepted] = requirements(await http.post(market.path, json={}))["accepts"]
        header, nonce = payment_header(buyer, accepted, **changes)
        response = await http.post(market.path, json={}, headers={"PAYMENT-SIGNATURE": header})

    assert reason in requirements(response)["error"], response.text
    assert market.balance(buyer.address) == before
    assert not market.used(buyer.address, nonce)
    assert market.ledger() == []


async def test_malformed_payment_header_is_invalid_payload(market: Market) -> None:
    async with market.http() as http:
        response = await http.post(
            market.path, json={}, headers={"PAYMENT-SIGNATURE": "not base64 json!"}
        )
    assert requirements(response)["error"] == "invalid_payload"


async def test_reused_nonce_and_missing_funds_are_refused_by_the_saga(market: Market) -> None:
    """The chain's view (checked by the saga right before settling): a nonce already used
    outside agentfleet, and a payer without fUSD."""
    payer = dev_account(5)
    broke = Account.create()
    async with market.http() as http:
        [accepted] = requirements(await http.post(market.path, json={}))["accepts"]
        nonce = random_nonce()
        outside, _ = payment_header(payer, accepted, nonce=nonce, to=payer.address)
        used_elsewhere = json.loads(base64.b64decode(outside))["payload"]
        auth = used_elsewhere["authorization"]
        transfer = market.token.functions.transferWithAuthorization(
            auth["from"],
            auth["to"],
            int(auth["value"]),
            0,
            int(auth["validBefore"]),
            nonce,
            bytes.fromhex(used_elsewhere["signature"][2:]),
        ).transact({"from": dev_account(9).address})
        assert market.w3.eth.wait_for_transaction_receipt(transfer)["status"] == 1
        reused, _ = payment_header(payer, accepted, nonce=nonce)
        no_funds, _ = payment_header(broke, accepted)

        first = await http.post(market.path, json={}, headers={"PAYMENT-SIGNATURE": reused})
        second = await http.post(market.path, json={}, headers={"PAYMENT-SIGNATURE": no_funds})

    assert requirements(first)["error"] == "invalid_exact_evm_nonce_already_used"
    assert requirements(second)["error"] == "insufficient_funds"
    assert market.ledger() == []
    payment = json.loads(base64.b64decode(no_funds))
    auth = payment["payload"]["authorization"]
    saga = f"payment-31337-{accepted['asset'].lower()}-{auth['from'].lower()}-{auth['nonce']}"
    await market.record(saga, "rejected_verify_activity")


async def test_100_concurrent_submissions_of_one_payment_settle_once(market: Market) -> None:
    buyer = dev_account(4)
    before = market.balance(buyer.address)
    seller_before = market.balance(market.seller_address)
    async with market.http() as http:
        [accepted] = requirements(await http.post(market.path, json={}))["accepts"]
        header, nonce = payment_header(buyer, accepted)
        responses = await asyncio.gather(
            *(
                http.post(market.path, json={}, headers={"PAYMENT-SIGNATURE": header})
                for _ in range(100)
            )
        )

    # A copy that arrives after the settlement was broadcast cannot be told from a stranger's
    # copy of the (now public) authorization: it learns the settlement, not the result.
    assert {r.status_code for r in responses} <= {200, 403}
    delivered = [r for r in responses if r.status_code == 200]
    assert delivered
    answers = {json.dumps(r.json(), sort_keys=True) for r in delivered}
    transactions = {settle_response(r)["transaction"] for r in responses}
    assert len(answers) == 1 and len(transactions) == 1
    assert market.balance(buyer.address) == before - PRICE
    assert market.balance(market.seller_address) == seller_before + PRICE
    assert market.used(buyer.address, nonce)
    [row] = market.ledger()
    assert row.tx_hash in transactions


async def test_a_failing_skill_settles_nothing_and_returns_its_error(market: Market) -> None:
    buyer = dev_account(3)
    before = market.balance(buyer.address)
    async with market.http(buyer) as http:
        response = await http.post(market.path, json={"symbol": "not a symbol!"})

    assert response.status_code == 502, response.text
    assert "forecast" in response.json()["error"]
    assert response.json()["settled"] is False
    assert market.balance(buyer.address) == before
    [row] = market.ledger()
    assert row.status == "skill_failed" and row.tx_hash is None
    assert not market.used(buyer.address, row.nonce)
    described = await market.client.get_workflow_handle(row.payment_id).describe()
    assert described.typed_search_attributes.get(search_attributes.PAYMENT_STATUS) == (
        "skill_failed"
    )
    await market.record(row.payment_id, "skill_failed_verify_activity")


@asynccontextmanager
async def served(app: Any, port: int | None = None) -> AsyncIterator[str]:
    """``app`` on a real loopback port (the SDK's facilitator client opens its own sockets)."""
    port = port or free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off")
    )
    task = asyncio.create_task(server.serve())
    for _ in range(200):
        if server.started:
            break
        await asyncio.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task


async def test_the_sdks_facilitator_client_verifies_and_settles_through_our_endpoints(
    market: Market,
) -> None:
    """Another resource server using agentfleet as its facilitator, with the SDK unchanged:
    /supported, /verify, /settle (twice: the second answers the first settlement)."""
    buyer, merchant = dev_account(2), Account.create().address
    requirements = PaymentRequirements(
        scheme="exact",
        network="eip155:31337",
        asset=market.token.address,
        amount="2500",
        pay_to=merchant,
        max_timeout_seconds=120,
        extra={"name": "FleetUSD", "version": "2"},
    )
    sdk = x402Client()
    sdk.register("eip155:*", ExactEvmClientScheme(buyer))
    sdk.set_spend_controls(False)
    payload = await sdk.create_payment_payload(PaymentRequired(accepts=[requirements]))
    before = market.balance(buyer.address)

    key, _ = facilitator_keys.add_key(
        market.settings.effective_database_url, "merchant", pay_to=[merchant]
    )
    async with served(market.app) as url:
        facilitator = HTTPFacilitatorClient(
            FacilitatorConfig(url=url, auth_provider=bearer_auth(key))
        )
        supported = await asyncio.to_thread(facilitator.get_supported)
        verified = await facilitator.verify(payload, requirements)
        settled = await facilitator.settle(payload, requirements)
        again = await facilitator.settle(payload, requirements)
        wrong = requirements.model_copy(update={"amount": "2600"})
        refused = await facilitator.verify(payload, wrong)
        await facilitator.aclose()

    assert ("exact", "eip155:31337") in {(k.scheme, k.network) for k in supported.kinds}
    assert verified.is_valid is True and verified.payer == buyer.address
    assert settled.success is True and settled.network == "eip155:31337"
    assert again.success is True and again.transaction == settled.transaction
    assert market.balance(buyer.address) == before - 2500
    assert market.balance(merchant) == 2500
    assert refused.is_valid is False
    assert refused.invalid_reason == "invalid_exact_evm_payload_authorization_value_mismatch"
    [row] = market.ledger()
    assert (row.status, row.tx_hash, row.seller, row.skill) == (
        "settled",
        settled.transaction,
        None,
        None,
    )


async def test_a_payment_identifier_reused_with_another_payload_is_409(market: Market) -> None:
    buyer = dev_account(8)
    async with market.http() as http:
        [accepted] = requirements(await http.post(market.path, json={}))["accepts"]
        ids = {"payment-identifier": {"info": {"id": "pay_" + uuid.uuid4().hex}}}
        first, _ = payment_header(buyer, accepted)
        second, _ = payment_header(buyer, accepted)
        with_id = [_with_extensions(header, ids) for header in (first, second)]

        paid = await http.post(market.path, json={}, headers={"PAYMENT-SIGNATURE": with_id[0]})
        token = {"Authorization": f"Bearer {paid.headers['PAYMENT-RESULT-TOKEN']}"}
        same = await http.post(
            market.path, json={}, headers={"PAYMENT-SIGNATURE": with_id[0], **token}
        )
        other = await http.post(market.path, json={}, headers={"PAYMENT-SIGNATURE": with_id[1]})

    assert paid.status_code == same.status_code == 200
    assert settle_response(paid) == settle_response(same)
    assert other.status_code == 409, other.text
    assert "payment-identifier" in other.json()["detail"]
    assert len(market.ledger()) == 1


async def test_another_payload_for_the_same_authorization_nonce_is_409(market: Market) -> None:
    """The saga's id is the authorization's (chain, asset, payer, nonce): a second payload under
    it, here the same nonce signed with a later deadline, is refused against the payload the
    saga started with, and changes nothing."""
    buyer = dev_account(6)
    nonce = random_nonce()
    async with market.http() as http:
        [accepted] = requirements(await http.post(market.path, json={}))["accepts"]
        first, _ = payment_header(buyer, accepted, nonce=nonce)
        later = int(time.time()) + 330
        second, _ = payment_header(buyer, accepted, nonce=nonce, valid_before=later)

        paid = await http.post(market.path, json={}, headers={"PAYMENT-SIGNATURE": first})
        other = await http.post(market.path, json={}, headers={"PAYMENT-SIGNATURE": second})
        again = await http.post(market.path, json={}, headers={"PAYMENT-SIGNATURE": first})

    assert paid.status_code == 200, paid.text
    assert again.status_code == 403, again.text  # settled: the result goes to the payer only
    assert settle_response(paid) == settle_response(again)
    assert other.status_code == 409, other.text
    assert "submitted with a different payload" in other.json()["detail"]
    assert len(market.ledger()) == 1


async def test_a_slow_settlement_answers_202_and_a_retry_does_not_pay_twice(
    market: Market,
) -> None:
    """The HTTP wait ends before the saga does: 202 with a status URL and the result token;
    the same payment sent again joins the saga; the status URL ends settled and shows the
    result to the token's bearer only; the buyer paid once."""
    market.settings.payment_wait_s = 0.001
    slow_app = create_app(market.settings)
    buyer = dev_account(1)
    before = market.balance(buyer.address)
    seller_before = market.balance(market.seller_address)
    transport = httpx.ASGITransport(app=slow_app)
    async with httpx.AsyncClient(transport=transport, base_url=market.settings.http_url) as http:
        [accepted] = requirements(await http.post(market.path, json={}))["accepts"]
        header, _ = payment_header(buyer, accepted)
        pending = await http.post(market.path, json={}, headers={"PAYMENT-SIGNATURE": header})
        retry = await http.post(market.path, json={}, headers={"PAYMENT-SIGNATURE": header})
        assert pending.status_code == 202, pending.text
        status_url = pending.json()["status_url"]
        assert pending.headers["location"] == status_url
        assert retry.status_code in (200, 202, 403)
        token = {"Authorization": f"Bearer {pending.json()['token']}"}
        for _ in range(300):
            status = (await http.get(status_url, headers=token)).json()
            if status["final"]:
                break
            await asyncio.sleep(0.05)
        stranger = (await http.get(status_url)).json()
    assert status["status"] == "settled", status
    assert status["result"]["data"]["bot"] == market.seller
    assert stranger["status"] == "settled" and stranger["result"] is None
    assert stranger["result_withheld"] is True
    assert market.balance(buyer.address) == before - PRICE
    assert market.balance(market.seller_address) == seller_before + PRICE
    assert len(market.ledger()) == 1


def _with_extensions(header: str, extensions: dict[str, Any]) -> str:
    payload = json.loads(base64.b64decode(header))
    payload["extensions"] = extensions
    return base64.b64encode(json.dumps(payload).encode()).decode()


async def test_a_v1_client_pays_with_x_payment_and_gets_x_payment_response(market: Market) -> None:
    buyer = dev_account(0)
    async with market.http() as http:
        [accepted] = requirements(await http.post(market.path, json={}))["accepts"]
        header, nonce = payment_header(buyer, accepted)
        v2 = json.loads(base64.b64decode(header))
        v1 = {
            "x402Version": 1,
            "scheme": "exact",
            "network": "eip155:31337",
            "payload": v2["payload"],
        }
        encoded = base64.b64encode(json.dumps(v1).encode()).decode()
        response = await http.post(market.path, json={}, headers={"X-PAYMENT": encoded})

    assert response.status_code == 200, response.text
    settled = json.loads(base64.b64decode(response.headers["X-PAYMENT-RESPONSE"]))
    assert settled["success"] is True and settled["payer"] == buyer.address
    assert market.used(buyer.address, nonce)


async def test_a_cancelled_authorization_is_refused(market: Market) -> None:
    payer = dev_account(5)
    nonce = random_nonce()
    cancel = sign_cancel_authorization(
        payer.key,
        chain_id=31337,
        token=market.token.address,
        authorizer=payer.address,
        nonce=nonce,
    )
    cancelled = market.token.functions.cancelAuthorization(*cancel.vrs_args()).transact(
        {"from": dev_account(9).address}
    )
    assert market.w3.eth.wait_for_transaction_receipt(cancelled)["status"] == 1
    async with market.http() as http:
        [accepted] = requirements(await http.post(market.path, json={}))["accepts"]
        header, _ = payment_header(payer, accepted, nonce=nonce)
        response = await http.post(market.path, json={}, headers={"PAYMENT-SIGNATURE": header})
    assert requirements(response)["error"] == "invalid_exact_evm_nonce_already_used"
    assert market.ledger() == []


@pytest.mark.parametrize(
    ("path", "detail"),
    [
        ("/bots/nobody/skills/forecast", "no bot named nobody"),
        ("/bots/NOT A NAME/skills/forecast", "no bot named"),
        ("/bots/{seller}/skills/dance", "does not sell a skill named 'dance'"),
        ("/bots/{seller}/skills/tune", "does not sell a skill named 'tune'"),
    ],
)
async def test_unknown_bots_and_skills_are_404_with_a_reason(
    market: Market, path: str, detail: str
) -> None:
    async with market.http() as http:
        response = await http.post(path.format(seller=market.seller), json={})
    assert response.status_code == 404
    assert detail in response.json()["detail"]
