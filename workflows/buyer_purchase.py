"""BuyerPurchaseWorkflow: one bot buys one skill call from another, paying with x402.

Workflow id = purchase id. Steps (each visible in the ``status`` query and the Web UI):

1. ``discover_offer``: the seller's agent card and its 402 for the call; the seller's ``payTo``
   must be its ERC-8004 agent wallet (``getAgentWallet``), its reputation from the fleet above
   the buyer's floor, the asset one the buyer pays in; the call within ``per_call``.
2. ``spent_today``: the buyer's settled payments today plus this one within ``per_day``.
3. ``sign_purchase``: the EIP-3009 authorization, nonce from the purchase id and validity fixed
   when the purchase started, so any retry signs the same bytes (one payment at most).
4. ``call_paid_skill``: the seller's payment saga verifies, runs the skill, settles.
5. ``check_settlement``: the transfer is on chain (receipt, Transfer event, authorization used).
6. ERC-8004 feedback from the buyer's wallet (a child TransactionWorkflow) with the settlement's
   hash as proof of payment; a failed review does not undo the purchase.
"""

from __future__ import annotations

from datetime import timedelta
from typing import TypeVar

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError, ChildWorkflowError

with workflow.unsafe.imports_passed_through():
    from agentfleet import taskqueues
    from agentfleet.messages import AuditRecord, TxOrder, TxOutcome, TxRequest, TxStatus
    from agentfleet.purchases import (
        FeedbackRequest,
        FeedbackTx,
        Offer,
        PaidAnswer,
        PaidCall,
        PurchaseRequest,
        PurchaseStatus,
        PurchaseView,
        SettlementCheck,
        SignRequest,
        SpentQuery,
        purchase_nonce,
    )

T = TypeVar("T")
RETRY = RetryPolicy(
    initial_interval=timedelta(milliseconds=200),
    maximum_interval=timedelta(seconds=10),
    maximum_attempts=20,
)


class Refused(Exception):
    pass


@workflow.defn(name="BuyerPurchaseWorkflow")
class BuyerPurchaseWorkflow:
    @workflow.init
    def __init__(self, request: PurchaseRequest) -> None:
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
        offer: Offer = await self._activity("discover_offer", request, Offer, taskqueues.IO)
        self.view.amount, self.view.pay_to = offer.amount, offer.pay_to
        self._step("discovered")
        if offer.amount > offer.per_call_limit:
            raise Refused(
                f"{offer.amount} units is over {request.buyer}'s per-call limit of "
                f"{offer.per_call_limit}"
            )
        spent: int = await self._activity(
            "spent_today", SpentQuery(buyer=request.buyer), int, taskqueues.IO
        )
        if spent + offer.amount > offer.per_day_limit:
            raise Refused(
                f"{request.buyer} spent {spent} units today; {offer.amount} more would pass its "
                f"daily limit of {offer.per_day_limit}"
            )
        self._step("checked")
        header: str = await self._activity(
            "sign_purchase",
            SignRequest(
                purchase_id=request.purchase_id,
                buyer=request.buyer,
                offer=offer,
                valid_before=started_at + offer.max_timeout_seconds,
            ),
            str,
            taskqueues.IO,
        )
        self._step("signed")
        answer: PaidAnswer = await workflow.execute_activity(
            "call_paid_skill",
            PaidCall(
                purchase_id=request.purchase_id,
                endpoint=offer.endpoint,
                header=header,
                args=request.args,
            ),
            result_type=PaidAnswer,
            task_queue=taskqueues.IO,
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
            raise Refused(f"the seller answered {answer.status_code}: {reason or 'no reason'}")
        self.view.tx_hash = transaction
        self._step("settled")
        await self._activity(
            "check_settlement",
            SettlementCheck(
                tx_hash=transaction,
                payer=offer.buyer_address,
                pay_to=offer.pay_to,
                amount=offer.amount,
                asset=offer.asset,
                nonce=purchase_nonce(request.purchase_id),
            ),
            int,
            taskqueues.CHAIN,
        )
        self._step("confirmed")
        self.view.result = answer.data
        self.view.status = PurchaseStatus.DONE
        await self._review(request, offer, transaction)

    async def _review(self, request: PurchaseRequest, offer: Offer, transaction: str) -> None:
        try:
            feedback: FeedbackTx = await self._activity(
                "feedback_tx",
                FeedbackRequest(
                    agent_id=offer.agent_id,
                    skill=request.skill,
                    endpoint=offer.endpoint,
                    tx_hash=transaction,
                ),
                FeedbackTx,
                taskqueues.CHAIN,
            )
            chain_id = int(offer.network.removeprefix("eip155:"))
            request_id = f"feedback-{request.purchase_id}"
            outcome: TxOutcome = await workflow.execute_child_workflow(
                "TransactionWorkflow",
                TxOrder(
                    chain_id=chain_id,
                    sender=offer.buyer_address,
                    request=TxRequest(request_id=request_id, to=feedback.to, data=feedback.data),
                ),
                id=f"tx-{chain_id}-{request_id}",
                task_queue=taskqueues.WORKFLOWS,
                result_type=TxOutcome,
            )
        except (Refused, ChildWorkflowError) as err:
            self.view.reason = f"bought, but the review was not left: {err}"
            return
        if outcome.status is TxStatus.CONFIRMED:
            self.view.feedback_tx_hash = outcome.tx_hash
            self._step("reviewed")
        else:
            self.view.reason = f"bought, but the review failed: {outcome.error}"

    async def _activity(self, name: str, argument: object, result_type: type[T], queue: str) -> T:
        try:
            result: T = await workflow.execute_activity(
                name,
                argument,
                result_type=result_type,
                task_queue=queue,
                start_to_close_timeout=timedelta(seconds=30),
                retry_policy=RETRY,
            )
        except ActivityError as err:
            cause = err.cause
            message = cause.message if isinstance(cause, ApplicationError) else str(cause or err)
            raise Refused(message) from err
        return result

    async def _audit(self) -> None:
        view = self.view
        await workflow.execute_activity(
            "record_audit_event",
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
            task_queue=taskqueues.IO,
            start_to_close_timeout=timedelta(seconds=30),
            retry_policy=RETRY,
        )

    def _step(self, name: str) -> None:
        self.view.steps.append(name)
