"""ERC-8004 validation of a purchase's delivery (``BuyerPurchaseWorkflow``'s optional step): the
request from the seller's wallet, the validator's score (an LLM when one is configured, else
:func:`agentfleet.payments.purchases.offline_score`), the response, and the refund transfer when
the score is too low."""

from __future__ import annotations

import asyncio
import json

from temporalio import activity
from temporalio.exceptions import ApplicationError
from web3 import AsyncWeb3

from activities.purchases import PurchaseActivities, refused
from activities.queues import runs_on
from agentfleet import db, llm, taskqueues
from agentfleet.models import BotRecord
from agentfleet.payments.purchases import (
    FeedbackTx,
    RefundAsk,
    Score,
    ScoreRequest,
    ValidationAnswer,
    ValidationAsk,
    ValidationPlan,
    offline_score,
)
from agentfleet.settings import Settings


class ValidationActivities:
    """ERC-8004 validation of a delivery: the request (from the seller's wallet, its agent's
    owner), the validator's score (an LLM when one is configured, else rules), the response,
    and the refund transfer when the score is too low."""

    task_queue = taskqueues.CHAIN

    def __init__(self, settings: Settings, purchases: PurchaseActivities) -> None:
        self._settings = settings
        self._purchases = purchases

    @activity.defn(name="validation_plan")
    async def validation_plan(self, ask: ValidationAsk) -> ValidationPlan:
        seller, validator = await asyncio.to_thread(self._addresses, ask.seller, ask.validator)
        canonical = json.dumps(
            {"purchase": ask.purchase_id, "delivery": ask.delivery},
            sort_keys=True,
            separators=(",", ":"),
            default=str,
        )
        request_hash = AsyncWeb3.keccak(text=canonical)
        registry = self._purchases.contract("ValidationRegistry")
        data = registry.encode_abi(
            "validationRequest", args=[validator, ask.agent_id, ask.request_uri, request_hash]
        )
        return ValidationPlan(
            seller_address=seller,
            validator_address=validator,
            request_hash="0x" + request_hash.hex().removeprefix("0x"),
            request=FeedbackTx(to=registry.address, data=data),
        )

    def _addresses(self, seller: str, validator: str) -> tuple[str, str]:
        with db.session_scope(self._settings.effective_database_url) as session:
            rows = {name: session.get(BotRecord, name) for name in (seller, validator)}
        found: list[str] = []
        for name, row in rows.items():
            if row is None or row.address is None:
                raise refused(f"validation: no bot named {name} with a wallet")
            found.append(row.address)
        if seller == validator:
            raise refused("validation: the seller cannot validate itself")
        return found[0], found[1]

    @activity.defn(name="score_delivery")
    @runs_on(taskqueues.LLM)
    async def score_delivery(self, request: ScoreRequest) -> Score:
        """0-100: how well the delivery answers the call (see :func:`offline_score`)."""
        if self._settings.openai_base_url:
            return await self._llm_score(request)
        score, why = offline_score(request)
        return Score(score=score, why=why, scorer="offline")

    async def _llm_score(self, request: ScoreRequest) -> Score:
        system = (
            "You validate deliveries between automated agents. Answer "
            'JSON {"score": 0-100, "why": "one sentence"}: how well the delivery '
            "answers the call, is complete and plausible."
        )
        user = json.dumps(request.model_dump(mode="json"), default=str)
        try:
            verdict = await llm.chat_json(self._settings, system, user)
            score = max(0, min(100, int(verdict["score"])))
            why = str(verdict.get("why", ""))[:300]
        except (ValueError, KeyError, TypeError) as err:
            raise ApplicationError(f"the LLM's verdict has no 0-100 score: {err}") from None
        return Score(score=score, why=why, scorer=f"llm:{self._settings.openai_model}")

    @activity.defn(name="validation_response_tx")
    async def validation_response_tx(self, answer: ValidationAnswer) -> FeedbackTx:
        registry = self._purchases.contract("ValidationRegistry")
        data = registry.encode_abi(
            "validationResponse",
            args=[
                bytes.fromhex(answer.request_hash.removeprefix("0x")),
                answer.score,
                "",
                bytes(32),
                "x402",
            ],
        )
        return FeedbackTx(to=registry.address, data=data)

    @activity.defn(name="refund_tx")
    async def refund_tx(self, ask: RefundAsk) -> FeedbackTx:
        """fUSD ``transfer`` of the payment back to its payer (sent from the seller's wallet)."""
        token = self._purchases.contract("FleetUSD")
        data = token.encode_abi(
            "transfer", args=[AsyncWeb3.to_checksum_address(ask.payer), ask.amount]
        )
        return FeedbackTx(to=token.address, data=data)
