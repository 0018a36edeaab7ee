"""PaymentSagaWorkflow: one x402 payment, verified -> skill executed -> settled exactly once.

The workflow id is the payment id (``payment-{chainId}-{asset}-{from}-{nonce}``): every
submission of one authorization (100 concurrent requests, a client's retry, a facilitator
``/settle`` after a timeout) reaches this one workflow and gets its answer. Steps:

1. ``verify_payment``, an activity (fleet-chain): the x402 checks against the token through the
   relayer that will settle, and the amount held at the payer's entity (an update). A refusal ends
   the saga ``rejected``: nothing executed, settled or recorded.
2. ``run_skill`` (fleet-llm), when a skill is bought. A failure ends it ``skill_failed``: nothing
   settled, the buyer gets the skill's error.
3. Settlement: one ``send_with_relayer`` activity (fleet-chain) with the payment id as its
   request id: the nonce from the relayer entity (an update), signed and recorded before
   broadcast, confirmed to the profile's depth, the outcome handed back to the relayer. The
   request id makes a second settlement of the same payment impossible, even across crashes.
4. ``record_payment``, a local activity: the ledger row, an upsert keyed by the payment id.
5. Only when settlement failed or its outcome is unknown: an alert (``raise_alerts``, patch
   ``alerts``); a settled payment raises nothing and waits for nothing more.

An outcome that is not known yet (the chain did not answer, no receipt in time) is never final
(patch ``settle-until-known``): the saga raises the alert and sends again under the same
request id (the same nonce, the same signed bytes) until the chain says settled or failed, so
the buyer keeps getting 202 and its status URL, never an answer that invites a second payment.

The status is also the ``PaymentStatus`` search attribute (patch ``payment-status``), so the Web
UI lists pending payments with ``PaymentStatus IN ("verifying", "executing", "settling")``.

The result (the skill's data included) is released to the buyer only when the status is
``settled``. The ``status`` query is what ``GET /payments/{id}`` shows while it runs.

Four workflow tasks for a settled purchase; the record runs inside the last (a local activity's
result is a marker in the history). Sagas started before patch ``verify-activity`` verified with a
local activity, inside the first task: a burst of sagas larger than the worker's workflow-task
slots then left no slot for the payer's entity and hung. Sagas started before patch
``lean-saga`` ran verify (fleet-chain) and record (fleet-io) as activities and settled through a
child ``TransactionWorkflow``. Both replay and finish the way they started.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any, TypeVar

from temporalio import workflow
from temporalio.common import RetryPolicy, SearchAttributePair, TypedSearchAttributes
from temporalio.exceptions import ActivityError

from workflows import calls, patches

with workflow.unsafe.imports_passed_through():
    from activities.payments import PaymentActivities
    from activities.skills import SkillActivities
    from agentfleet import search_attributes
    from agentfleet.bots.model import SkillResult
    from agentfleet.messages import GasPolicy, TxOrder, TxOutcome, TxRequest, TxStatus
    from agentfleet.operations.alerts import AlertKind, Severity
    from agentfleet.payments.model import (
        PaymentOrder,
        PaymentStatus,
        PaymentView,
        Reason,
        Verified,
        VerifyRequest,
    )

from workflows.alerting import new_alert, raise_alerts
from workflows.transactions import run_transaction, send_by_activity

RETRY = RetryPolicy(
    initial_interval=timedelta(milliseconds=200), maximum_interval=timedelta(seconds=10)
)
SKILL_TIMEOUT = timedelta(seconds=15)
STEP_TIMEOUT = timedelta(seconds=10)
STEP_OPTIONS: dict[str, Any] = {"start_to_close_timeout": STEP_TIMEOUT, "retry_policy": RETRY}
P = TypeVar("P")
R = TypeVar("R")
"""Verify and record take well under a second; a worker that dies in one is replaced soon."""


def payment_workflow_id(payment_id: str) -> str:
    return payment_id


def payment_start_attributes() -> TypedSearchAttributes:
    """What a saga is started with: ``PaymentStatus`` "verifying" (the saga sets the rest)."""
    return TypedSearchAttributes(
        [SearchAttributePair(search_attributes.PAYMENT_STATUS, PaymentStatus.VERIFYING.value)]
    )


@workflow.defn(name="PaymentSagaWorkflow")
class PaymentSagaWorkflow:
    @workflow.init
    def __init__(self, order: PaymentOrder) -> None:
        self.lean = False
        auth = order.payment.authorization
        self.view = PaymentView(
            payment_id=order.payment_id,
            status=PaymentStatus.VERIFYING,
            network=order.terms.network,
            asset=order.terms.asset,
            amount=auth.value,
            payer=auth.from_,
            pay_to=auth.to,
            seller=order.call.bot.name if order.call else None,
            skill=order.call.skill if order.call else None,
            buyer=order.buyer,
            payload_sha256=order.payment.sha256,
        )

    @workflow.query
    def status(self) -> PaymentView:
        """The saga so far (the skill's data stays hidden until the payment settled)."""
        return self._released()

    @workflow.run
    async def run(self, order: PaymentOrder) -> PaymentView:
        self.lean = workflow.patched(patches.LEAN_SAGA.id)
        if not self.lean:  # a lean saga starts with PaymentStatus "verifying" (payment_start)
            self._set_status(PaymentStatus.VERIFYING)
        verify = VerifyRequest(
            payment=order.payment, terms=order.terms, payment_id=order.payment_id
        )
        verified: Verified
        if workflow.patched(patches.VERIFY_ACTIVITY.id):
            # Not a local activity: verify waits on the payer entity's hold update, and a local
            # activity would keep this workflow task's worker slot while it waits.
            verified = await calls.run(PaymentActivities.verify_payment, verify, **STEP_OPTIONS)
        else:
            verified = await self._short_step(PaymentActivities.verify_payment, verify)
        if not verified.valid:
            return self._end(PaymentStatus.REJECTED, verified.reason, verified.detail)
        self.view.relayer = verified.relayer
        self._step("verified")
        if order.call is not None:
            self._set_status(PaymentStatus.EXECUTING)
            result = await self._run_skill(order)
            if not result.ok:
                self.view.result = result
                self._end(PaymentStatus.SKILL_FAILED, "skill_failed", result.error)
                await self._record()
                return self._released()
            self.view.result = result
            self._step("executed")
        self._set_status(PaymentStatus.SETTLING)
        outcome = await self._settle(order, verified)
        if outcome.status is TxStatus.UNKNOWN and workflow.patched(patches.SETTLE_UNTIL_KNOWN.id):
            outcome = await self._settle_until_known(order, verified, outcome)
        if outcome.status is TxStatus.CONFIRMED:
            self.view.tx_hash = outcome.tx_hash
            self.view.block_number = outcome.block_number
            self.view.confirmations = outcome.confirmations
            self._step("settled")
            self._step("confirmed")
            self._set_status(PaymentStatus.SETTLED)
        else:
            self.view.tx_hash = outcome.tx_hash
            self._end(PaymentStatus.FAILED, Reason.TRANSACTION_FAILED, outcome.error)
        await self._record()
        self._step("recorded")
        if self.view.status is PaymentStatus.FAILED and workflow.patched(patches.ALERTS.id):
            await self._alert(outcome)
        return self._released()

    async def _alert(self, outcome: TxOutcome) -> None:
        """A settlement that failed (nothing moved) or whose outcome is unknown (money may have
        moved; the relayer keeps checking) is an operator's business."""
        view = self.view
        unknown = outcome.status is TxStatus.UNKNOWN
        what = f"{view.seller}/{view.skill}" if view.seller else "facilitator settle"
        text = (
            f"{what}: {view.amount} units from {view.payer}: settlement "
            f"{'outcome unknown' if unknown else 'failed'}: {view.detail or outcome.error or '?'}"
        )
        await raise_alerts(
            [
                new_alert(
                    AlertKind.PAYMENT_UNKNOWN if unknown else AlertKind.PAYMENT_FAILED,
                    view.payment_id,
                    text,
                    Severity.CRITICAL if unknown else Severity.WARNING,
                )
            ]
        )

    async def _settle_until_known(
        self, order: PaymentOrder, verified: Verified, outcome: TxOutcome
    ) -> TxOutcome:
        """Send again (same request id: same nonce, same recorded bytes, or the receipt found)
        until the chain answers; each try waits as long as the first did."""
        self.view.detail = (
            f"settlement outcome not known yet ({outcome.error or 'no answer'}); the saga keeps "
            "checking: do not pay again"
        )
        self._step("unknown")
        await self._alert(outcome)
        while outcome.status is TxStatus.UNKNOWN:
            outcome = await self._settle(order, verified, tell_relayer=False)
        self.view.detail = None
        return outcome

    async def _run_skill(self, order: PaymentOrder) -> SkillResult:
        assert order.call is not None  # noqa: S101 - checked by the caller
        try:
            result: SkillResult = await calls.run(
                SkillActivities.run_skill,
                order.call,
                start_to_close_timeout=SKILL_TIMEOUT,
                retry_policy=RetryPolicy(maximum_attempts=3),
            )
        except ActivityError as err:
            return SkillResult(
                bot=order.call.bot.name, skill=order.call.skill, ok=False, error=str(err.cause)
            )
        return result

    async def _settle(
        self, order: PaymentOrder, verified: Verified, tell_relayer: bool = True
    ) -> TxOutcome:
        chain_id = order.terms.chain_id
        tx = TxOrder(
            chain_id=chain_id,
            sender=verified.relayer or "",
            request=TxRequest(
                request_id=order.payment_id,
                to=order.terms.asset,
                data=verified.calldata or "0x",
                gas_limit=verified.gas_limit,
            ),
            confirmations=order.confirmations,
            policy=order.gas or GasPolicy(),
        )
        if self.lean:
            return await send_by_activity(tx, tell_relayer=tell_relayer)
        return await run_transaction(tx)

    async def _record(self) -> None:
        await self._short_step(PaymentActivities.record_payment, self.view)

    async def _short_step(self, method: Callable[[Any, P], Awaitable[R]], arg: P) -> R:
        """Record (and verify, in sagas started before ``verify-activity``): a local activity in
        a lean saga, an activity on its queue before."""
        if self.lean:
            return await calls.run_local(method, arg, **STEP_OPTIONS)
        return await calls.run(method, arg, **STEP_OPTIONS)

    def _step(self, name: str) -> None:
        self.view.steps.append(name)

    def _set_status(self, status: PaymentStatus) -> None:
        """The view's status, and the ``PaymentStatus`` search attribute for the Web UI's lists
        (patch ``payment-status``, implied by ``lean-saga``: an upsert rides on the task's
        other commands, no round trip; each patch also costs an upsert of its own)."""
        self.view.status = status
        if self.lean or workflow.patched(patches.PAYMENT_STATUS.id):
            workflow.upsert_search_attributes([search_attributes.PAYMENT_STATUS.value_set(status)])

    def _end(self, status: PaymentStatus, reason: str | None, detail: str | None) -> PaymentView:
        self._set_status(status)
        self.view.reason = reason
        self.view.detail = detail
        return self.view

    def _released(self) -> PaymentView:
        """The view as the buyer gets it: the skill's data only once the payment settled."""
        if self.view.status is PaymentStatus.SETTLED or self.view.result is None:
            return self.view
        kept = self.view.result.model_copy(update={"data": {}})
        return self.view.model_copy(update={"result": kept})
