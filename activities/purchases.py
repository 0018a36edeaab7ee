"""Activities of a bot buying a skill (``BuyerPurchaseWorkflow``): discover and check the seller,
sign the authorization (the key is loaded here and never leaves), call, check the settlement,
encode the ERC-8004 feedback.

A refusal (the seller is not who the chain says, the policy says no, the seller answered no)
is a non-retryable ``PurchaseRefused``; network trouble is retried by Temporal.
"""

from __future__ import annotations

import asyncio
import base64
import json
from datetime import UTC, date, datetime, time
from decimal import Decimal
from typing import Any
from urllib.parse import urlsplit

import httpx
from sqlmodel import col, select
from temporalio import activity
from temporalio.client import WorkflowUpdateFailedError
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError, RPCStatusCode
from web3 import AsyncWeb3

from activities.queues import runs_on
from agentfleet import db, keystore, taskqueues
from agentfleet.bots.model import BotKind, BotStatus
from agentfleet.bots.params import parse_params
from agentfleet.chain import artifacts
from agentfleet.chain.deployment.manifest import load_deployment
from agentfleet.chain.eip3009 import sign_transfer_authorization, x402_payload
from agentfleet.chain.rpc import Web3Connection
from agentfleet.errors import FleetError
from agentfleet.models import BotRecord, PaymentRecord
from agentfleet.netguard import REFUSED, OutboundRefused, on_origin
from agentfleet.payments import payer_proof
from agentfleet.payments.model import PaymentStatus, Reason
from agentfleet.payments.payload import decode_header
from agentfleet.payments.purchases import (
    FeedbackRequest,
    FeedbackTx,
    Offer,
    PaidAnswer,
    PaidCall,
    PurchaseRequest,
    SettlementCheck,
    SignRequest,
    SpentQuery,
    offer_in_card,
    offered_terms,
    purchase_nonce,
)
from agentfleet.payments.spending import HoldAnswer, HoldAsk, SpendingHold
from agentfleet.payments.terms import to_units
from agentfleet.settings import Settings
from clients import bots

POLL_S = 0.5
UNPAID_SAGA_ENDS = {PaymentStatus.REJECTED.value, PaymentStatus.SKILL_FAILED.value}
"""Payment saga ends that settled nothing (see workflows.payment_saga)."""
TRANSFER_TOPIC = AsyncWeb3.keccak(text="Transfer(address,address,uint256)").hex()


def refused(message: str) -> ApplicationError:
    return ApplicationError(message, type="PurchaseRefused", non_retryable=True)


def outbound_refused(exc: OutboundRefused) -> ApplicationError:
    """A URL a seller handed us that is not on its own origin: never called, never retried."""
    return ApplicationError(str(exc), type=REFUSED, non_retryable=True)


class PurchaseActivities:
    task_queue = taskqueues.IO

    def __init__(self, settings: Settings, http: httpx.AsyncClient | None = None) -> None:
        self._settings = settings
        self._url = settings.effective_database_url
        self._rpc = Web3Connection(settings.effective_rpc_url)
        self._http = http or httpx.AsyncClient(
            timeout=30, headers={"user-agent": "agentfleet-buyer"}
        )

    async def close(self) -> None:
        await self._rpc.close()
        await self._http.aclose()

    def contract(self, name: str) -> Any:
        try:
            deployment = load_deployment(self._settings)
        except FleetError as exc:
            raise ApplicationError(str(exc), type="NoDeployment") from exc
        if deployment is None:
            raise refused("no contract deployment on this chain")
        return self._rpc.get().eth.contract(
            address=AsyncWeb3.to_checksum_address(deployment.address(name)),
            abi=artifacts.load(name).abi,
        )

    @activity.defn(name="discover_offer")
    async def discover_offer(self, request: PurchaseRequest) -> Offer:
        """The seller's card and 402 for the skill, its agent wallet and reputation on chain,
        and the buyer's limits."""
        buyer, seller, fleet = await asyncio.to_thread(self._rows, request)
        if buyer.address is None or BotStatus(buyer.status) not in (
            BotStatus.ACTIVE,
            BotStatus.DEGRADED,
        ):
            raise refused(f"buyer {buyer.name} is {buyer.status}; only an active bot buys")
        if seller.agent_id is None:
            raise refused(f"seller {seller.name} has no ERC-8004 agent id yet")
        try:
            params = parse_params(BotKind(buyer.kind), dict(buyer.params))
        except ValueError as exc:
            raise refused(f"buyer {buyer.name}'s parameters: {exc}") from None
        policy = getattr(params, "spending", None)
        if policy is None:
            raise refused(f"a {buyer.kind} bot does not buy skills")
        card_url = f"{self._settings.http_url}/bots/{seller.name}/.well-known/agent-card.json"
        card = await self._get_json(card_url)
        offer = offer_in_card(card, request.skill.value)
        if offer is None:
            raise refused(f"{seller.name}'s agent card sells no {request.skill.value}")
        try:
            endpoint = on_origin(str(offer["endpoint"]), card_url, f"{seller.name}'s skill")
        except OutboundRefused as exc:
            raise outbound_refused(exc) from None
        requirements = await self._requirements(endpoint, request.args)
        try:
            network, validity = offered_terms(
                requirements,
                seller.name,
                buyer.name,
                self._settings.chain_id,
                policy.max_validity_s,
            )
        except ValueError as exc:
            raise refused(str(exc)) from None
        pay_to = AsyncWeb3.to_checksum_address(requirements["payTo"])
        registry = self.contract("IdentityRegistry")
        wallet = await registry.functions.getAgentWallet(seller.agent_id).call()
        if wallet.lower() != pay_to.lower():
            raise refused(
                f"{seller.name} asks to be paid at {pay_to}, but agent {seller.agent_id}'s "
                f"wallet on the IdentityRegistry is {wallet}"
            )
        asset = AsyncWeb3.to_checksum_address(requirements["asset"])
        allowed = [a.lower() for a in policy.assets] or [self.contract("FleetUSD").address.lower()]
        if asset.lower() not in allowed:
            raise refused(f"{buyer.name} does not pay in {asset}")
        reputation, count = None, 0
        if policy.reputation_floor is not None:
            reputation, count = await self._reputation(seller.agent_id, fleet)
            if reputation is None or reputation < policy.reputation_floor:
                shown = "none" if reputation is None else f"{reputation:g}"
                raise refused(
                    f"{seller.name}'s reputation from the fleet is {shown} ({count} reviews), "
                    f"under {buyer.name}'s floor of {policy.reputation_floor}"
                )
        return Offer(
            endpoint=endpoint,
            amount=int(requirements["amount"]),
            asset=asset,
            network=network,
            pay_to=pay_to,
            max_timeout_seconds=validity,
            agent_id=seller.agent_id,
            buyer_address=buyer.address,
            per_call_limit=to_units(policy.per_call),
            per_day_limit=to_units(policy.per_day),
            reputation=reputation,
            feedback_count=count,
        )

    def _rows(self, request: PurchaseRequest) -> tuple[BotRecord, BotRecord, list[str]]:
        with db.session_scope(self._url) as session:
            buyer = session.get(BotRecord, request.buyer)
            seller = session.get(BotRecord, request.seller)
            fleet = [
                row.address
                for row in session.exec(select(BotRecord)).all()
                if row.address and row.name != request.seller
            ]
        if buyer is None:
            raise refused(f"no bot named {request.buyer}")
        if seller is None:
            raise refused(f"no bot named {request.seller}")
        if buyer.name == seller.name:
            raise refused("a bot cannot buy from itself")
        return buyer, seller, fleet

    async def _get_json(self, url: str) -> dict[str, Any]:
        response = await self._http.get(url)
        if response.status_code == 404:
            raise refused(f"{url}: not found")
        response.raise_for_status()
        data = response.json()
        if not isinstance(data, dict):
            raise refused(f"{url} is not a JSON object")
        return data

    async def _requirements(self, endpoint: str, args: dict[str, Any]) -> dict[str, Any]:
        """The seller's own 402 for this call (the card can be stale; the 402 is not)."""
        response = await self._http.post(endpoint, json=args)
        if response.status_code != 402 or "PAYMENT-REQUIRED" not in response.headers:
            raise refused(f"{endpoint} answered {response.status_code}, not 402 Payment Required")
        required = json.loads(base64.b64decode(response.headers["PAYMENT-REQUIRED"]))
        accepts = [a for a in required.get("accepts", []) if a.get("scheme") == "exact"]
        if not accepts:
            raise refused(f"{endpoint} accepts no exact-scheme payment")
        chosen: dict[str, Any] = accepts[0]
        return chosen

    async def _reputation(self, agent_id: int, clients: list[str]) -> tuple[Decimal | None, int]:
        if not clients:
            return None, 0
        registry = self.contract("ReputationRegistry")
        count, value, decimals = await registry.functions.getSummary(
            agent_id, [AsyncWeb3.to_checksum_address(c) for c in clients], "", ""
        ).call()
        if count == 0:
            return None, 0
        return Decimal(value) / Decimal(10) ** decimals, int(count)

    @activity.defn(name="spent_today")
    async def spent_today(self, query: SpentQuery) -> int:
        """fUSD units the buyer's settled payments moved since 00:00 UTC."""
        return await asyncio.to_thread(self._spent_today, query.buyer, datetime.now(UTC).date())

    @activity.defn(name="hold_spending")
    async def hold_spending(self, ask: HoldAsk) -> HoldAnswer:
        """The buyer's entity holds the purchase's amount of today's budget or refuses it
        (update ``hold_spending``, with the ledger's settled figure for today). A buyer that is
        not running, paused or retired is refused; a figure the entity finds stale is re-read."""
        day = datetime.now(UTC).date()
        settled = await asyncio.to_thread(self._spent_today, ask.buyer, day)
        hold = SpendingHold(
            purchase_id=ask.purchase_id, amount=ask.amount, day=day, settled_today=settled
        )
        try:
            answer = await bots.hold_spending(activity.client(), ask.buyer, hold)
        except WorkflowUpdateFailedError as exc:
            cause = exc.cause
            if not isinstance(cause, ApplicationError):
                raise
            if cause.type == "StaleDay":  # midnight passed between the read and the update
                raise ApplicationError(cause.message, type="StaleDay") from None
            raise refused(cause.message) from None
        except RPCError as exc:
            if exc.status is RPCStatusCode.NOT_FOUND:
                raise refused(f"bot {ask.buyer} is not running; only an active bot buys") from None
            raise
        return answer

    def _spent_today(self, buyer: str, day: date) -> int:
        midnight = datetime.combine(day, time(), tzinfo=UTC)
        with db.session_scope(self._url) as session:
            rows = session.exec(
                select(PaymentRecord.amount).where(
                    PaymentRecord.buyer == buyer,
                    PaymentRecord.status == "settled",
                    col(PaymentRecord.created_at) >= midnight,
                )
            ).all()
        return sum(int(amount) for amount in rows)

    @activity.defn(name="sign_purchase")
    async def sign_purchase(self, request: SignRequest) -> str:
        """The ``PAYMENT-SIGNATURE`` header: an EIP-3009 authorization whose nonce comes from the
        purchase id, so signing again gives the same bytes (never a second payment)."""
        offer = request.offer
        try:
            account = await asyncio.to_thread(
                keystore.load_account, self._settings, offer.buyer_address
            )
        except FleetError as exc:
            raise refused(str(exc)) from None
        chain_id = int(offer.network.removeprefix("eip155:"))
        signed = sign_transfer_authorization(
            account.key,
            chain_id=chain_id,
            token=offer.asset,
            from_=offer.buyer_address,
            to=offer.pay_to,
            value=offer.amount,
            valid_after=0,
            valid_before=request.valid_before,
            nonce=bytes.fromhex(purchase_nonce(request.purchase_id)[2:]),
        )
        payload = x402_payload(
            signed,
            {
                "scheme": "exact",
                "network": offer.network,
                "asset": offer.asset,
                "amount": str(offer.amount),
                "payTo": offer.pay_to,
                "maxTimeoutSeconds": offer.max_timeout_seconds,
                "extra": {"name": "FleetUSD", "version": "2"},
            },
        )
        return base64.b64encode(json.dumps(payload, separators=(",", ":")).encode()).decode()

    @activity.defn(name="call_paid_skill")
    async def call_paid_skill(self, call: PaidCall) -> PaidAnswer:
        """POST the skill with the payment; a 202 (still settling) is followed to its end. Only
        the fleet's own HTTP app is called (the endpoint and its status URL on its origin)."""
        try:
            on_origin(call.endpoint, self._settings.http_url, "a paid skill")
        except OutboundRefused as exc:
            raise outbound_refused(exc) from None
        response = await self._http.post(
            call.endpoint,
            json=call.args,
            headers={"PAYMENT-SIGNATURE": call.header},
            timeout=120,
        )
        if response.status_code == 202:
            pending = response.json()
            try:
                status_url = on_origin(
                    str(pending["status_url"]), call.endpoint, "a payment's status"
                )
            except OutboundRefused as exc:
                raise outbound_refused(exc) from None
            token = pending.get("token")
            auth = {"authorization": f"Bearer {token}"} if token else {}
            while True:
                activity.heartbeat(status_url)
                await asyncio.sleep(POLL_S)
                status = (await self._http.get(status_url, headers=auth)).json()
                if status.get("final"):
                    settled = status["status"] == "settled"
                    return PaidAnswer(
                        status_code=200 if settled else 502,
                        data=(status.get("result") or {}).get("data") or {},
                        settlement={
                            "success": settled,
                            "transaction": status.get("tx_hash") or "",
                            "errorReason": status.get("reason"),
                        },
                        payment_id=status["payment_id"],
                        settled_nothing=status["status"] in UNPAID_SAGA_ENDS
                        and status.get("reason") != Reason.NONCE_USED,
                    )
        if response.status_code == 403 and "PAYMENT-RESPONSE" in response.headers:
            # Settled, but this call came after the settlement was public (a retry after a
            # crash): the result goes to the payer, who proves it with its key.
            response = await self._as_payer(call)
        settlement: dict[str, Any] = {}
        header = response.headers.get("PAYMENT-RESPONSE")
        if header:
            settlement = json.loads(base64.b64decode(header))
        elif response.status_code == 402 and "PAYMENT-REQUIRED" in response.headers:
            required = json.loads(base64.b64decode(response.headers["PAYMENT-REQUIRED"]))
            settlement = {"success": False, "errorReason": required.get("error")}
        try:
            body = response.json()
        except ValueError:
            body = {"text": response.text[:500]}
        reason = settlement.get("errorReason")
        return PaidAnswer(
            status_code=response.status_code,
            data=body if isinstance(body, dict) else {"value": body},
            settlement=settlement,
            # A 402 for a used nonce means the authorization was spent elsewhere: money moved.
            settled_nothing=(response.status_code == 402 and reason != Reason.NONCE_USED)
            or (response.status_code == 502 and reason == "skill_failed"),
        )

    async def _as_payer(self, call: PaidCall) -> httpx.Response:
        """The settled payment's answer, asked again with a proof signed by the payer for the
        seller's origin."""
        payment = decode_header(call.header)
        account = await asyncio.to_thread(
            keystore.load_account, self._settings, payment.authorization.from_
        )
        parts = urlsplit(call.endpoint)
        proof = payer_proof.sign(
            account.key,
            payment.accepted.chain_id,
            payment.payment_id,
            f"{parts.scheme}://{parts.netloc}",
        )
        return await self._http.post(
            call.endpoint,
            json=call.args,
            headers={"PAYMENT-SIGNATURE": call.header, payer_proof.HEADER: proof},
            timeout=120,
        )

    @activity.defn(name="check_settlement")
    @runs_on(taskqueues.CHAIN)
    async def check_settlement(self, check: SettlementCheck) -> int:
        """The settlement on chain: mined, a Transfer of the amount from the payer to the payee
        on the asset, the authorization used. Returns the block number."""
        w3 = self._rpc.get()
        receipt = await w3.eth.get_transaction_receipt(check.tx_hash)  # type: ignore[arg-type]
        if receipt["status"] != 1:
            raise refused(f"settlement {check.tx_hash} reverted")
        paid = False
        for log in receipt["logs"]:
            topics = [t.hex() if isinstance(t, bytes) else str(t) for t in log["topics"]]
            if (
                log["address"].lower() == check.asset.lower()
                and len(topics) == 3
                and topics[0].removeprefix("0x") == TRANSFER_TOPIC.removeprefix("0x")
                and topics[1][-40:].lower() == check.payer[2:].lower()
                and topics[2][-40:].lower() == check.pay_to[2:].lower()
                and int.from_bytes(bytes(log["data"]), "big") == check.amount
            ):
                paid = True
        if not paid:
            raise refused(f"settlement {check.tx_hash} moved no {check.amount} to {check.pay_to}")
        token = w3.eth.contract(
            address=AsyncWeb3.to_checksum_address(check.asset),
            abi=artifacts.load("FleetUSD").abi,
        )
        used = await token.functions.authorizationState(
            AsyncWeb3.to_checksum_address(check.payer), bytes.fromhex(check.nonce[2:])
        ).call()
        if not used:
            raise refused("the authorization is not marked used on the token")
        return int(receipt["blockNumber"])

    @activity.defn(name="feedback_tx")
    @runs_on(taskqueues.CHAIN)
    async def feedback_tx(self, request: FeedbackRequest) -> FeedbackTx:
        """``giveFeedback`` for the seller (0-100), the settlement's hash as proof of payment."""
        registry = self.contract("ReputationRegistry")
        data = registry.encode_abi(
            "giveFeedback",
            args=[
                request.agent_id,
                request.value,
                0,
                "x402",
                request.skill.value,
                request.endpoint,
                "",
                bytes.fromhex(request.tx_hash.removeprefix("0x")),
            ],
        )
        return FeedbackTx(to=registry.address, data=data)
