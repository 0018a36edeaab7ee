"""The gateway tried as an attacker would, against the real stack (gateway, saga, payer entity,
relayer, anvil): racing authorizations past a payer's balance, outcomes that stay unknown,
results read by strangers, junk and oversized input. Each answer keeps its promise: the payer's
fault is a 4xx, ours a 5xx, and nobody pays twice or works for free."""

from __future__ import annotations

import asyncio
import base64
import json
import subprocess
import time
import uuid
from collections import Counter
from typing import Any

import httpx
from eth_account import Account
from eth_account.signers.local import LocalAccount
from sqlmodel import select
from temporalio.testing import ActivityEnvironment
from web3 import Web3

from activities.purchases import PurchaseActivities
from agentfleet import db, keystore
from agentfleet.chain.accounts import dev_account
from agentfleet.chain.eip3009 import random_nonce
from agentfleet.chain.relayers import relayers
from agentfleet.models import PaymentIdentifier
from agentfleet.payments import facilitator_keys, payer_proof
from agentfleet.payments.holds import payer_workflow_id
from agentfleet.payments.payload import decode_header
from agentfleet.payments.purchases import PaidCall
from starters.http.app import create_app
from starters.http.facilitator import KEY_CACHE_S
from starters.stack.devchain import rpc
from tests.fixtures.stack import FLEET
from tests.replay import record_history
from tests.test_payments import (
    PRICE,
    Market,
    market,
    payment_header,
    requirements,
    settle_response,
)
from workflows.payer import PayerWorkflow

__all__ = ["market"]  # the fixture, imported to be used here


def funded_payer(market: Market, units: int) -> LocalAccount:
    """A new payer holding exactly ``units`` of fUSD (and no ETH: the relayer pays the gas)."""
    payer: LocalAccount = Account.create()
    sent = market.token.functions.transfer(payer.address, units).transact(
        {"from": dev_account(9).address}
    )
    assert market.w3.eth.wait_for_transaction_receipt(sent)["status"] == 1
    return payer


def reverted_since(w3: Web3, block: int) -> list[str]:
    """Hashes of the transactions mined after ``block`` that reverted."""
    found = []
    for number in range(block + 1, w3.eth.block_number + 1):
        for tx_hash in w3.eth.get_block(number)["transactions"]:
            if w3.eth.get_transaction_receipt(tx_hash)["status"] == 0:  # type: ignore[arg-type]
                found.append(Web3.to_hex(tx_hash))  # type: ignore[arg-type]
    return found


async def activities_of(market: Market, payment_id: str) -> list[str]:
    history = await market.client.get_workflow_handle(payment_id).fetch_history()
    return [
        event.activity_task_scheduled_event_attributes.activity_type.name
        for event in history.events
        if event.HasField("activity_task_scheduled_event_attributes")
    ]


def backend(market: Market) -> str:
    url = market.settings.effective_database_url
    return "postgresql" if url.startswith("postgresql") else "sqlite"


async def test_authorizations_racing_past_the_balance_are_refused_before_their_skill_runs(
    market: Market,
) -> None:
    """100 authorizations (fresh nonces) sent at once by a payer funded for 10 calls: 10 are
    answered 200, 90 are refused 402 insufficient_funds at verify, before their skill runs,
    and no relayer broadcasts a settlement that reverts."""
    payer = funded_payer(market, 10 * PRICE)
    seller_before = market.balance(market.seller_address)
    start = market.w3.eth.block_number
    async with market.http() as http:
        [accepted] = requirements(await http.post(market.path, json={}))["accepts"]
        headers = [payment_header(payer, accepted)[0] for _ in range(100)]
        responses = await asyncio.gather(
            *(
                http.post(market.path, json={}, headers={"PAYMENT-SIGNATURE": header})
                for header in headers
            )
        )

    assert Counter(r.status_code for r in responses) == {200: 10, 402: 90}
    refused = [h for h, r in zip(headers, responses, strict=True) if r.status_code == 402]
    assert {requirements(r)["error"] for r in responses if r.status_code == 402} == {
        "insufficient_funds"
    }
    assert market.balance(payer.address) == 0
    assert market.balance(market.seller_address) == seller_before + 10 * PRICE
    assert reverted_since(market.w3, start) == []
    for header in refused:
        assert "run_skill" not in await activities_of(market, decode_header(header).payment_id)
    assert len([row for row in market.ledger() if row.payer == payer.address]) == 10
    entity = market.client.get_workflow_handle_for(
        PayerWorkflow.run, payer_workflow_id(31337, market.token.address, payer.address)
    )
    status = await entity.query(PayerWorkflow.status)
    assert status.held == 0 and status.spent_unseen <= 10 * PRICE
    await record_history(entity, f"payer_{backend(market)}")


async def test_a_settlement_outcome_that_stays_unknown_is_never_final_and_settles_once(
    market: Market,
) -> None:
    """Mining paused under a broadcast settlement: the receipt does not come in time, the saga
    says so and keeps checking, the buyer gets 202 (and again 202 when it sends the payment
    again), never a 402 or a 5xx; once mining resumes the payment ends settled, once."""
    settings = market.settings.model_copy(update={"payment_wait_s": 2.0, "receipt_timeout_s": 2.0})
    app = create_app(settings)
    payer = funded_payer(market, 3 * PRICE)
    seller_before = market.balance(market.seller_address)
    url = market.settings.effective_rpc_url
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url=settings.http_url) as http:
        [accepted] = requirements(await http.post(market.path, json={}))["accepts"]
        header, _ = payment_header(payer, accepted)
        payment_id = decode_header(header).payment_id
        rpc(url, "evm_setAutomine", False)
        try:
            first = await http.post(market.path, json={}, headers={"PAYMENT-SIGNATURE": header})
            assert first.status_code == 202, first.text
            token = {"Authorization": f"Bearer {first.json()['token']}"}
            status_url = first.json()["status_url"]
            deadline = time.monotonic() + 90
            while True:
                status = (await http.get(status_url, headers=token)).json()
                if "unknown" in status["steps"] or time.monotonic() > deadline:
                    break
                await asyncio.sleep(0.5)
            assert "unknown" in status["steps"], status
            assert status["final"] is False and status["status"] == "settling"
            assert "do not pay again" in status["detail"]
            again = await http.post(market.path, json={}, headers={"PAYMENT-SIGNATURE": header})
            assert again.status_code == 202, again.text
        finally:
            rpc(url, "evm_setAutomine", True)
            rpc(url, "evm_mine")
        for _ in range(240):
            status = (await http.get(status_url, headers=token)).json()
            if status["final"]:
                break
            await asyncio.sleep(0.25)
    assert status["status"] == "settled", status
    assert status["result"]["data"]["bot"] == market.seller
    assert market.balance(payer.address) == 2 * PRICE
    assert market.balance(market.seller_address) == seller_before + PRICE
    [row] = [row for row in market.ledger() if row.payment_id == payment_id]
    assert row.status == "settled" and row.tx_hash == status["tx_hash"]
    await market.record(payment_id, "unknown_then_settled_verify_activity")


async def test_a_paid_result_goes_to_the_payer_only(market: Market) -> None:
    """The payment id is public (it is in AuthorizationUsed) and so, once settled, is the whole
    authorization (the settlement's calldata). A stranger who rebuilds the payment from the
    chain and sends it again learns it settled, not the result; the status URL shows the result
    to the token's bearer and to a proof signed by the payer only."""
    payer = funded_payer(market, 2 * PRICE)
    seller_before = market.balance(market.seller_address)
    async with market.http() as http:
        [accepted] = requirements(await http.post(market.path, json={}))["accepts"]
        header, _ = payment_header(payer, accepted)
        paid = await http.post(
            market.path, json={"symbol": "ETHUSDT"}, headers={"PAYMENT-SIGNATURE": header}
        )
        assert paid.status_code == 200, paid.text
        payment_id = decode_header(header).payment_id
        token = paid.headers["PAYMENT-RESULT-TOKEN"]
        tx = market.w3.eth.get_transaction(settle_response(paid)["transaction"])
        rebuilt = rebuild_from_chain(market, tx, accepted)
        assert decode_header(rebuilt).sha256 == decode_header(header).sha256  # the very payment
        replayed = await http.post(
            market.path, json={"symbol": "ETHUSDT"}, headers={"PAYMENT-SIGNATURE": rebuilt}
        )
        path = f"/payments/{payment_id}"
        origin = market.settings.effective_public_url
        stranger = (await http.get(path)).json()
        forged = (await http.get(path, headers={"Authorization": "Bearer " + "A" * 43})).json()
        bearer = (await http.get(path, headers={"Authorization": f"Bearer {token}"})).json()
        proof = payer_proof.sign(payer.key, 31337, payment_id, origin)
        proven = (await http.get(path, headers={payer_proof.HEADER: proof})).json()
        other = payer_proof.sign(Account.create().key, 31337, payment_id, origin)
        impostor = (await http.get(path, headers={payer_proof.HEADER: other})).json()
        elsewhere = payer_proof.sign(payer.key, 31337, payment_id, "https://evil.example")
        misbound = (await http.get(path, headers={payer_proof.HEADER: elsewhere})).json()
        proven_resend = await http.post(
            market.path,
            json={"symbol": "ETHUSDT"},
            headers={"PAYMENT-SIGNATURE": rebuilt, payer_proof.HEADER: proof},
        )

    forecast = paid.json()
    assert forecast["symbol"] == "ETHUSDT"
    assert replayed.status_code == 403, replayed.text
    assert "symbol" not in replayed.text and settle_response(replayed)["success"] is True
    for seen in (stranger, forged, impostor, misbound):
        assert seen["status"] == "settled" and seen["result"] is None, seen
        assert seen["result_withheld"] is True
    assert bearer["result"]["data"] == forecast
    assert proven["result"]["data"] == forecast
    assert proven_resend.status_code == 200 and proven_resend.json() == forecast
    assert market.balance(payer.address) == PRICE  # paid once, whatever was sent again
    assert market.balance(market.seller_address) == seller_before + PRICE


def rebuild_from_chain(market: Market, tx: Any, accepted: dict[str, Any]) -> str:
    """The PAYMENT-SIGNATURE a stranger rebuilds from a settlement's calldata and the 402."""
    function, args = market.token.decode_function_input(tx["input"])
    assert function.fn_name == "transferWithAuthorization"
    payload = {
        "x402Version": 2,
        "accepted": accepted,
        "payload": {
            "authorization": {
                "from": args["from"],
                "to": args["to"],
                "value": str(args["value"]),
                "validAfter": str(args["validAfter"]),
                "validBefore": str(args["validBefore"]),
                "nonce": "0x" + args["nonce"].hex(),
            },
            "signature": "0x" + args["signature"].hex(),
        },
    }
    return base64.b64encode(json.dumps(payload).encode()).decode()


async def test_oversized_and_malformed_input_is_refused_and_claims_nothing(
    market: Market,
) -> None:
    """A body over the cap is a 413, a payment-identifier out of the extension's bounds a 400,
    an authorization valid for longer than the payment may take a 402; a refused payment
    claims no payment-identifier (identifiers are claimed after verify)."""
    payer = funded_payer(market, 0)
    ids = {"payment-identifier": {"info": {"id": "pay_" + uuid.uuid4().hex}}}
    async with market.http() as http:
        [accepted] = requirements(await http.post(market.path, json={}))["accepts"]
        huge = await http.post(
            market.path,
            content=b'{"symbol": "' + b"x" * (market.settings.http_max_body_bytes + 1) + b'"}',
            headers={"content-type": "application/json"},
        )
        long_id = {"payment-identifier": {"info": {"id": "x" * 129}}}
        header, _ = payment_header(dev_account(5), accepted)
        too_long = await http.post(
            market.path, json={}, headers={"PAYMENT-SIGNATURE": with_extensions(header, long_id)}
        )
        far, _ = payment_header(
            dev_account(5), accepted, valid_before=int(time.time()) + 10 * 86_400
        )
        standing = await http.post(market.path, json={}, headers={"PAYMENT-SIGNATURE": far})
        broke, _ = payment_header(payer, accepted)
        junk = await http.post(
            market.path, json={}, headers={"PAYMENT-SIGNATURE": with_extensions(broke, ids)}
        )
        verify_huge = await http.post(
            "/verify", content=b"[" + b"0," * market.settings.http_max_body_bytes + b"0]"
        )

    assert huge.status_code == 413, huge.text
    assert verify_huge.status_code == 413, verify_huge.text
    assert too_long.status_code == 400 and "payment-identifier" in too_long.json()["detail"]
    assert requirements(standing)["error"] == "invalid_exact_evm_payload_authorization_valid_before"
    assert requirements(junk)["error"] == "insufficient_funds"
    with db.session_scope(market.settings.effective_database_url) as session:
        assert session.exec(select(PaymentIdentifier)).all() == []
    assert market.ledger() == []


def with_extensions(header: str, extensions: dict[str, Any]) -> str:
    payload = json.loads(base64.b64decode(header))
    payload["extensions"] = extensions
    return base64.b64encode(json.dumps(payload).encode()).decode()


async def test_a_payers_doomed_payments_do_not_hold_up_anothers(market: Market) -> None:
    """While 30 authorizations of an empty payer are refused, a funded buyer's payment sent at
    the same time settles (and its nonce is not behind a refused one)."""
    broke = funded_payer(market, 0)
    buyer = funded_payer(market, PRICE)
    async with market.http() as http:
        [accepted] = requirements(await http.post(market.path, json={}))["accepts"]
        doomed = [payment_header(broke, accepted)[0] for _ in range(30)]
        good, nonce = payment_header(buyer, accepted, nonce=random_nonce())
        answers = await asyncio.gather(
            *(http.post(market.path, json={}, headers={"PAYMENT-SIGNATURE": h}) for h in doomed),
            http.post(market.path, json={}, headers={"PAYMENT-SIGNATURE": good}),
        )
    assert {a.status_code for a in answers[:-1]} == {402}
    assert answers[-1].status_code == 200, answers[-1].text
    assert market.used(buyer.address, nonce) and market.balance(buyer.address) == 0


async def test_a_buyer_that_calls_again_after_settling_gets_its_result_by_proving_it_paid(
    market: Market,
) -> None:
    """A purchase's paid call retried after its payment settled (its worker died holding the
    answer) is no fresh call any more: the gateway answers 403, and the buyer's activity asks
    again with a proof signed by the payer's key, getting the same result, paying once."""
    payer = funded_payer(market, PRICE)
    keystore.store_key(market.settings, f"buyer-{uuid.uuid4().hex[:6]}", payer.key)
    http = httpx.AsyncClient(
        transport=httpx.ASGITransport(app=market.app), base_url=market.settings.http_url
    )
    buyer = PurchaseActivities(market.settings, http=http)
    try:
        [accepted] = requirements(await http.post(market.path, json={}))["accepts"]
        header, _ = payment_header(payer, accepted)
        call = PaidCall(
            purchase_id=f"purchase-retry-{uuid.uuid4().hex[:8]}",
            endpoint=f"{market.settings.http_url}{market.path}",
            header=header,
        )
        first = await ActivityEnvironment().run(buyer.call_paid_skill, call)
        retried = await ActivityEnvironment().run(buyer.call_paid_skill, call)
    finally:
        await buyer.close()
    assert first.status_code == retried.status_code == 200
    assert first.data == retried.data and first.data["bot"] == market.seller
    assert first.settlement["transaction"] == retried.settlement["transaction"]
    assert market.balance(payer.address) == 0


def facilitator_body(payer: LocalAccount, token: str, pay_to: str, amount: int) -> dict[str, Any]:
    """A /verify or /settle body: ``payer`` authorizes ``amount`` to ``pay_to``."""
    requirements = {
        "scheme": "exact",
        "network": "eip155:31337",
        "asset": token,
        "amount": str(amount),
        "payTo": pay_to,
        "maxTimeoutSeconds": 300,
        "extra": {"name": "FleetUSD", "version": "2"},
    }
    header, _ = payment_header(payer, requirements, value=amount, to=pay_to)
    return {
        "x402Version": 2,
        "paymentPayload": json.loads(base64.b64decode(header)),
        "paymentRequirements": requirements,
    }


def fleet_cli(market: Market, *args: str) -> dict[str, Any]:
    """``fleet ... --json`` against the market's database; its JSON answer."""
    env = {
        "FLEET_HOME": str(market.settings.home),
        "FLEET_DATABASE_URL": market.settings.effective_database_url,
        "PATH": "/usr/bin:/bin",
    }
    done = subprocess.run(
        [FLEET, *args, "--json"], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    answer: dict[str, Any] = json.loads(done.stdout)
    return answer


async def test_the_facilitator_settles_for_its_key_holders_only(market: Market) -> None:
    """A stranger's zero-value authorization to himself is a 401 at /verify and /settle (the
    relayers pay no gas, no nonce is taken); a key made with the CLI may pay the fleet's own
    wallets only (403 otherwise, and under the minimum amount); a revoked key is a 401 again;
    /supported stays public."""
    stranger = Account.create()
    token = market.token.address
    relayer_nonces = {
        address: market.w3.eth.get_transaction_count(address)  # type: ignore[arg-type]
        for address in (await asyncio.to_thread(relayers, market.settings))
    }
    to_self = facilitator_body(stranger, token, stranger.address, 0)
    buyer = funded_payer(market, 2 * PRICE)
    to_seller = facilitator_body(buyer, token, market.seller_address, PRICE)
    made = fleet_cli(market, "facilitator", "key", "add", "merchant-a")
    key = {"Authorization": f"Bearer {made['key']}"}
    async with market.http() as http:
        supported = await http.get("/supported")
        anonymous = [await http.post(p, json=to_self) for p in ("/verify", "/settle")]
        forged = await http.post("/settle", json=to_self, headers={"Authorization": "Bearer fk_x"})
        to_himself = facilitator_body(stranger, token, stranger.address, PRICE)
        elsewhere = await http.post("/settle", json=to_himself, headers=key)
        anyone = fleet_cli(market, "facilitator", "key", "add", "anyone", "--pay-to", "*")
        tiny = await http.post(
            "/settle", json=to_self, headers={"Authorization": f"Bearer {anyone['key']}"}
        )
        verified = await http.post("/verify", json=to_seller, headers=key)
        settled = await http.post("/settle", json=to_seller, headers=key)
        fleet_cli(market, "facilitator", "key", "revoke", made["key_id"])
        await asyncio.sleep(KEY_CACHE_S + 0.5)
        revoked = await http.post("/verify", json=to_seller, headers=key)
    listed = fleet_cli_list(market)

    assert supported.status_code == 200
    assert [a.status_code for a in anonymous] == [401, 401]
    assert forged.status_code == 401
    assert elsewhere.status_code == 403 and "may not pay" in elsewhere.json()["detail"]
    assert tiny.status_code == 403 and "units or more" in tiny.json()["detail"]
    assert verified.json()["isValid"] is True, verified.text
    assert settled.json()["success"] is True, settled.text
    assert revoked.status_code == 401
    assert {row["key_id"]: row["revoked_at"] is not None for row in listed} == {
        made["key_id"]: True,
        anyone["key_id"]: False,
    }
    assert all("key" not in row for row in listed)  # only hashes are kept
    assert market.balance(buyer.address) == PRICE
    for address, nonce in relayer_nonces.items():  # one settlement, the key holder's
        assert market.w3.eth.get_transaction_count(address) - nonce <= 1  # type: ignore[arg-type]
    assert [row.payer for row in market.ledger()] == [buyer.address]


def fleet_cli_list(market: Market) -> list[dict[str, Any]]:
    answer: Any = fleet_cli(market, "facilitator", "key", "list")
    return list(answer)


async def test_the_facilitator_limits_each_key_and_each_payer(market: Market) -> None:
    """Over a key's or a payer's rate the answer is 429 with Retry-After, and nothing more is
    checked or settled."""
    settings = market.settings.model_copy(
        update={"facilitator_rate_per_payer": "3/minute", "facilitator_rate_per_key": "6/minute"}
    )
    app = create_app(settings)
    key, _ = facilitator_keys.add_key(settings.effective_database_url, "busy", pay_to=["*"])
    auth = {"Authorization": f"Bearer {key}"}
    payer, other = funded_payer(market, PRICE), funded_payer(market, PRICE)
    token = market.token.address
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url=settings.http_url) as http:

        async def verify_as(payer: LocalAccount, times: int) -> list[httpx.Response]:
            body = facilitator_body(payer, token, market.seller_address, PRICE)
            return [await http.post("/verify", json=body, headers=auth) for _ in range(times)]

        same_payer = await verify_as(payer, 4)
        other_payer = await verify_as(other, 3)
    assert [r.status_code for r in same_payer] == [200, 200, 200, 429]
    assert "payer" in same_payer[-1].json()["detail"]
    assert int(same_payer[-1].headers["Retry-After"]) >= 1
    assert [r.status_code for r in other_payer] == [200, 200, 429]  # the key's 7th request
    assert "key" in other_payer[-1].json()["detail"]
