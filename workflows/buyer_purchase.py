"""BuyerPurchaseWorkflow: one bot buys one skill call from another, paying with x402.

Workflow id = purchase id. Steps (each visible in the ``status`` query and the Web UI):

1. ``discover_offer``: the seller's agent card and its 402 for the call; the network must be
   the fleet's chain, the validity it asks within the buyer's ``max_validity_s``, the seller's
   ``payTo`` its ERC-8004 agent wallet (``getAgentWallet``), its reputation from the fleet above
   the buyer's floor, the asset one the buyer pays in; the call within ``per_call``.
2. ``hold_spending``: the buyer's bot entity holds the amount of today's budget, or refuses it
   when spent plus held plus this one would pass ``per_day``. The hold is released when the
   purchase surely paid nothing, spent when it settled, and kept while its outcome is unknown.
   (Purchases started before patch ``spending-holds`` compare the ledger's settled total,
   ``spent_today``, which purchases started together all read alike.)
3. ``sign_purchase``: the EIP-3009 authorization, nonce from the purchase id and validity fixed
   when the purchase started, so any retry signs the same bytes (one payment at most).
4. ``call_paid_skill``: the seller's payment saga verifies, runs the skill, settles.
5. ``check_settlement``: the transfer is on chain (receipt, Transfer event, authorization used).
6. ERC-8004 feedback from the buyer's wallet (a child TransactionWorkflow) with the settlement's
   hash as proof of payment; a failed review does not undo the purchase.
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable
from datetime import timedelta
from typing import Any, TypeVar

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError, FailureError

from workflows import calls, patches

with workflow.unsafe.imports_passed_through():
    from activities.payments import PaymentActivities
    from activities.purchases import PurchaseActivities
    from activities.store import StoreActivities
    from activities.validation import ValidationActivities
    from agentfleet.bots.model import bot_workflow_id
    from agentfleet.messages import AuditRecord, TxOrder, TxOutcome, TxRequest, TxStatus
    from agentfleet.payments.purchases import (
        FEEDBACK_VALUE,
        FeedbackRequest,
        FeedbackTx,
        Offer,
        PaidAnswer,
        PaidCall,
        PurchaseRequest,
        PurchaseStatus,
        PurchaseView,
        RefundAsk,
        RefundRecord,
        Score,
        ScoreRequest,
        SettlementCheck,
        SignRequest,
        SpentQuery,
        ValidationAnswer,
        ValidationAsk,
        ValidationPlan,
        payment_id_of,
        purchase_nonce,
    )
    from agentfleet.payments.spending import HoldAnswer, HoldAsk, SpendingRef

from workflows.transactions import run_transaction

T = TypeVar("T")
RETRY = RetryPolicy(
    initial_interval=timedelta(milliseconds=200),
    maximum_interval=timedelta(seconds=10),
    maximum_attempts=20,
)
STEP: dict[str, Any] = {"start_to_close_timeout": timedelta(seconds=30), "retry_policy": RETRY}


class Refused(Exception):
    pass


@workflow.defn(name="BuyerPurchaseWorkflow")
class BuyerPurchaseWorkflow:
    @workflow.init
    def __init__(self, request: PurchaseRequest) -> None:
        self.holds = False
        self.view = PurchaseView(
            purchase_id=request.purchase_id,
            buyer=request.buyer,
            seller=request.seller,
            skill=request.skill,
        )

    @workflow.query
    def status(self) -> PurchaseView:
        return self.view

    @workflow.run
    async def run(self, request: PurchaseRequest) -> PurchaseView:
        started = workflow.now()
        try:
            await self._buy(request, int(started.timestamp()))
        except Refused as why:
            if self.view.status is PurchaseStatus.RUNNING:
                self.view.status = (
                    PurchaseStatus.FAILED if "paid" in self.view.steps else PurchaseStatus.REFUSED
                )
            self.view.reason = str(why)
        await self._audit()
        return self.view

    async def _buy(self, request: PurchaseRequest, started_at: int) -> None:
        offer: Offer = await self._refusable(
            calls.run(PurchaseActivities.discover_offer, request, **STEP)
        )
        self.view.amount, self.view.pay_to = offer.amount, offer.pay_to
        self._step("discovered")
        if offer.amount > offer.per_call_limit:
            raise Refused(
                f"{offer.amount} units is over {request.buyer}'s per-call limit of "
                f"{offer.per_call_limit}"
            )
        self.holds = workflow.patched(patches.SPENDING_HOLDS.id)
        if self.holds:
            hold: HoldAnswer = await self._refusable(
                calls.run(
                    PurchaseActivities.hold_spending,
                    HoldAsk(
                        buyer=request.buyer, purchase_id=request.purchase_id, amount=offer.amount
                    ),
                    **STEP,
                )
            )
            if not hold.granted:
                raise Refused(hold.reason or "the daily budget refused the purchase")
        else:
            spent: int = await self._refusable(
                calls.run(PurchaseActivities.spent_today, SpentQuery(buyer=request.buyer), **STEP)
            )
            if spent + offer.amount > offer.per_day_limit:
                raise Refused(
                    f"{request.buyer} spent {spent} units today; {offer.amount} more would pass "
                    f"its daily limit of {offer.per_day_limit}"
                )
        self._step("checked")
        try:
            header: str = await self._refusable(
                calls.run(
                    PurchaseActivities.sign_purchase,
                    SignRequest(
                        purchase_id=request.purchase_id,
                        buyer=request.buyer,
                        offer=offer,
                        valid_before=started_at + offer.max_timeout_seconds,
                    ),
                    **STEP,
                )
            )
        except Refused:
            await self._end_hold(request, "release_spending")
            raise
        self._step("signed")
        answer: PaidAnswer = await calls.run(
            PurchaseActivities.call_paid_skill,
            PaidCall(
                purchase_id=request.purchase_id,
                endpoint=offer.endpoint,
                header=header,
                args=request.args,
            ),
            start_to_close_timeout=timedelta(seconds=offer.max_timeout_seconds + 60),
            heartbeat_timeout=timedelta(seconds=30),
            retry_policy=RETRY,
        )
        self._step("paid")
        self.view.payment_id = answer.payment_id
        transaction = str(answer.settlement.get("transaction") or "")
        if answer.status_code != 200 or not answer.settlement.get("success") or not transaction:
            reason = answer.settlement.get("errorReason") or answer.data.get("error")
            self.view.status = PurchaseStatus.FAILED
            if answer.settled_nothing:  # else the outcome is not known: the hold stays
                await self._end_hold(request, "release_spending")
            raise Refused(f"the seller answered {answer.status_code}: {reason or 'no reason'}")
        self.view.tx_hash = transaction
        self._step("settled")
        await self._refusable(
            calls.run(
                PurchaseActivities.check_settlement,
                SettlementCheck(
                    tx_hash=transaction,
                    payer=offer.buyer_address,
                    pay_to=offer.pay_to,
                    amount=offer.amount,
                    asset=offer.asset,
                    nonce=purchase_nonce(request.purchase_id),
                ),
                **STEP,
            )
        )
        self._step("confirmed")
        await self._end_hold(request, "settle_spending")
        self.view.result = answer.data
        self.view.status = PurchaseStatus.DONE
        self.view.payment_id = self.view.payment_id or payment_id_of(
            offer.network, offer.asset, offer.buyer_address, request.purchase_id
        )
        value = FEEDBACK_VALUE
        if request.validator is not None:
            value = await self._validate(request, offer, answer.data)
        await self._review(request, offer, transaction, value)

    async def _end_hold(self, request: PurchaseRequest, signal: str) -> None:
        """``settle_spending`` or ``release_spending`` to the buyer's entity, when the purchase
        holds budget there (purchases started before patch ``spending-holds`` hold none)."""
        if not self.holds:
            return
        entity = workflow.get_external_workflow_handle(bot_workflow_id(request.buyer))
        # The signal fails only when the entity has ended (retired): no budget to keep then.
        with contextlib.suppress(FailureError):
            await entity.signal(signal, SpendingRef(purchase_id=request.purchase_id))

    async def _validate(
        self, request: PurchaseRequest, offer: Offer, delivery: dict[str, object]
    ) -> int:
        """ERC-8004 validation of the delivery by ``request.validator``; a score under
        ``min_score`` refunds the payment from the seller's wallet. Returns the score."""
        assert request.validator is not None  # noqa: S101 - checked by the caller
        plan: ValidationPlan = await self._refusable(
            calls.run(
                ValidationActivities.validation_plan,
                ValidationAsk(
                    purchase_id=request.purchase_id,
                    seller=request.seller,
                    validator=request.validator,
                    agent_id=offer.agent_id,
                    request_uri=f"{offer.endpoint}#{request.purchase_id}",
                    delivery=dict(delivery),
                ),
                **STEP,
            )
        )
        self.view.validation_request_hash = plan.request_hash
        await self._send(offer, plan.seller_address, "validation-request", plan.request)
        score: Score = await self._refusable(
            calls.run(
                ValidationActivities.score_delivery,
                ScoreRequest(skill=request.skill, args=request.args, delivery=dict(delivery)),
                **STEP,
            )
        )
        self.view.validation = score
        response: FeedbackTx = await self._refusable(
            calls.run(
                ValidationActivities.validation_response_tx,
                ValidationAnswer(request_hash=plan.request_hash, score=score.score),
                **STEP,
            )
        )
        await self._send(offer, plan.validator_address, "validation-response", response)
        self._step("validated")
        if score.score >= request.min_score:
            return score.score
        refund: FeedbackTx = await self._refusable(
            calls.run(
                ValidationActivities.refund_tx,
                RefundAsk(payer=offer.buyer_address, amount=offer.amount),
                **STEP,
            )
        )
        outcome = await self._send(offer, plan.seller_address, "refund", refund)
        self.view.refund_tx_hash = outcome.tx_hash
        await self._refusable(
            calls.run(
                PaymentActivities.record_refund,
                RefundRecord(payment_id=self.view.payment_id or "", tx_hash=outcome.tx_hash or ""),
                **STEP,
            )
        )
        self.view.status = PurchaseStatus.REFUNDED
        self.view.reason = (
            f"{request.validator} scored the delivery {score.score} (< {request.min_score}): "
            f"{score.why}; refunded"
        )
        self._step("refunded")
        return score.score

    async def _send(self, offer: Offer, sender: str, what: str, tx: FeedbackTx) -> TxOutcome:
        """A transaction of this purchase through the sender's relayer; Refused unless mined."""
        chain_id = int(offer.network.removeprefix("eip155:"))
        request_id = f"{what}-{self.view.purchase_id}"
        outcome = await run_transaction(
            TxOrder(
                chain_id=chain_id,
                sender=sender,
                request=TxRequest(request_id=request_id, to=tx.to, data=tx.data),
            )
        )
        if outcome.status is not TxStatus.CONFIRMED:
            raise Refused(f"{what}: {outcome.error or outcome.status.value}")
        return outcome

    async def _review(
        self, request: PurchaseRequest, offer: Offer, transaction: str, value: int
    ) -> None:
        try:
            feedback: FeedbackTx = await self._refusable(
                calls.run(
                    PurchaseActivities.feedback_tx,
                    FeedbackRequest(
                        agent_id=offer.agent_id,
                        skill=request.skill,
                        endpoint=offer.endpoint,
                        tx_hash=transaction,
                        value=value,
                    ),
                    **STEP,
                )
            )
            outcome = await self._send(offer, offer.buyer_address, "feedback", feedback)
        except Refused as err:
            note = f"the review was not left: {err}"
            self.view.reason = f"{self.view.reason}; {note}" if self.view.reason else note
            return
        self.view.feedback_tx_hash = outcome.tx_hash
        self._step("reviewed")

    async def _refusable(self, call: Awaitable[T]) -> T:
        """An activity whose failure refuses the purchase (with the activity's reason)."""
        try:
            return await call
        except ActivityError as err:
            cause = err.cause
            message = cause.message if isinstance(cause, ApplicationError) else str(cause or err)
            raise Refused(message) from err

    async def _audit(self) -> None:
        view = self.view
        await calls.run(
            StoreActivities.record_audit_event,
            AuditRecord(
                idempotency_key=f"purchase:{view.purchase_id}",
                actor=view.buyer,
                kind="purchase",
                subject=view.seller,
                workflow_id=view.purchase_id,
                detail={
                    "skill": view.skill.value,
                    "status": view.status.value,
                    "amount": view.amount,
                    "tx_hash": view.tx_hash,
                    "reason": view.reason,
                },
            ),
            start_to_close_timeout=timedelta(seconds=30),
            retry_policy=RETRY,
        )

    def _step(self, name: str) -> None:
        self.view.steps.append(name)
