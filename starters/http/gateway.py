"""What the paid-skill routes and the facilitator share: terms, 402s, and starting or joining a
payment's saga."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from fastapi import HTTPException
from fastapi.responses import JSONResponse
from temporalio.client import Client, WorkflowExecutionStatus, WorkflowHandle
from temporalio.service import RPCError, RPCStatusCode
from x402.http import encode_payment_required_header
from x402.schemas import PaymentRequired, PaymentRequirements, ResourceInfo, SettleResponse

from activities.skills import SkillActivities
from agentfleet import search_attributes, taskqueues
from agentfleet.chain.deployment import load_deployment
from agentfleet.chain.networks import active_profile, effective_confirmations
from agentfleet.chain.rpc import Web3Connection
from agentfleet.errors import FleetError
from agentfleet.payments.model import PaymentOrder, PaymentStatus, PaymentView
from agentfleet.payments.terms import Terms
from agentfleet.redaction import redact
from agentfleet.settings import Settings
from agentfleet.temporal import connect, started_or_attached
from starters.http.results import ResultAccess
from workflows.payment_saga import (
    PaymentSagaWorkflow,
    payment_start_attributes,
    payment_workflow_id,
)

PAYMENT_REQUIRED = "PAYMENT-REQUIRED"
PAYLOAD_MEMO = "payload_sha256"
"""The saga's memo key for the sha256 of the payment payload it was started with."""
SKILL_RUN_S = 15
"""Upper bound of a skill's run (the saga's activity timeout)."""
BEFORE_BROADCAST = {PaymentStatus.VERIFYING.value, PaymentStatus.EXECUTING.value}
"""Saga statuses in which its settlement has not been broadcast: the payload is not public."""
IDENTIFIER_SCHEMA = {
    "type": "object",
    "properties": {
        "id": {"type": "string", "minLength": 16, "maxLength": 128, "pattern": "^[a-zA-Z0-9_-]+$"}
    },
}

SagaHandle = WorkflowHandle[Any, PaymentView]


@dataclass(frozen=True)
class Joined:
    """A payment's saga as a request found it: ``fresh`` when this request started it or joined
    it before its settlement was broadcast (so the request had the payload while only the payer
    did)."""

    handle: SagaHandle
    fresh: bool


class Gateway:
    """Settings, a Temporal client (connected on first use, so the app starts before Temporal
    does), an RPC connection, the skill runner for free calls, result access."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.chain = active_profile(settings)
        self.rpc = Web3Connection(settings.effective_rpc_url)
        self.skills = SkillActivities(settings)
        self.access = ResultAccess(settings)
        self._client: Client | None = None
        self._lock = asyncio.Lock()

    async def client(self) -> Client:
        async with self._lock:
            if self._client is None:
                try:
                    self._client = await connect(self.settings)
                except FleetError as exc:
                    raise HTTPException(503, f"payments are unavailable: {exc}") from None
            return self._client

    async def close(self) -> None:
        await self.rpc.close()
        await self.skills.close()

    def asset(self) -> str:
        try:
            deployment = load_deployment(self.settings)
        except FleetError as exc:
            raise HTTPException(503, str(exc)) from None
        if deployment is None:
            raise HTTPException(503, "no contracts on this chain yet; run `fleet chain deploy`")
        return deployment.address("FleetUSD")

    def terms(self, amount: int, pay_to: str) -> Terms:
        policy = self.chain.gas
        settle_s = policy.receipt_timeout_s + effective_confirmations(self.settings) * 15
        return Terms(
            network=self.chain.caip2,
            asset=self.asset(),
            amount=amount,
            pay_to=pay_to,
            max_timeout_seconds=int(SKILL_RUN_S + settle_s + 300),
        )

    def order(self, **fields: Any) -> PaymentOrder:
        return PaymentOrder(
            confirmations=effective_confirmations(self.settings), gas=self.chain.gas, **fields
        )

    def payment_required(
        self, terms: Terms, url: str, description: str, error: str | None = None
    ) -> JSONResponse:
        """402 with the SDK's ``PaymentRequired`` in the body and in ``PAYMENT-REQUIRED``."""
        required = PaymentRequired(
            error=error,
            resource=ResourceInfo(url=url, description=description, mime_type="application/json"),
            accepts=[PaymentRequirements.model_validate(terms.requirements())],
            extensions={
                "payment-identifier": {"info": {"required": False}, "schema": IDENTIFIER_SCHEMA}
            },
        )
        return JSONResponse(
            required.model_dump(by_alias=True, exclude_none=True),
            status_code=402,
            headers={
                PAYMENT_REQUIRED: encode_payment_required_header(required),
                "cache-control": "no-store",
            },
        )

    async def start_or_join(self, order: PaymentOrder) -> Joined:
        """The saga of ``order.payment_id``: started, or the running/finished one joined; a
        different payload under that id is a 409."""
        client = await self.client()
        try:
            handle, started = await started_or_attached(
                client,
                PaymentSagaWorkflow.run,
                order,
                id=payment_workflow_id(order.payment_id),
                task_queue=taskqueues.WORKFLOWS,
                search_attributes=payment_start_attributes(),
                memo={PAYLOAD_MEMO: order.payment.sha256},
            )
        except RPCError as exc:
            raise HTTPException(503, f"payments are unavailable: {exc.message}") from None
        if started:  # this payload is the saga's input: nothing to compare
            return Joined(handle, fresh=True)
        payload_sha256, status = await self._started_with(handle)
        if payload_sha256 is not None and payload_sha256 != order.payment.sha256:
            raise HTTPException(
                409, f"payment {order.payment_id} was submitted with a different payload"
            )
        return Joined(handle, fresh=status in BEFORE_BROADCAST)

    async def _started_with(self, handle: SagaHandle) -> tuple[str | None, str | None]:
        """(sha256 of the payload the saga started with, its PaymentStatus) from one describe,
        which a burst of retries of one payment can afford (a query each would queue them all
        behind the saga's worker); a saga started before the memo: its view."""
        try:
            description = await handle.describe()
        except RPCError as exc:
            if exc.status is RPCStatusCode.NOT_FOUND:
                return None, None
            raise HTTPException(503, f"payments are unavailable: {exc.message}") from None
        status = description.typed_search_attributes.get(search_attributes.PAYMENT_STATUS)
        memo = await description.memo()
        if PAYLOAD_MEMO in memo:
            return str(memo[PAYLOAD_MEMO]), status
        view = await self.view(handle)
        return (None if view is None else view.payload_sha256), status

    async def view(self, handle: SagaHandle) -> PaymentView | None:
        """The saga's view: its result when it has finished, else its ``status`` query."""
        found = await self.state(handle)
        return found[0] if found else None

    async def state(self, handle: SagaHandle) -> tuple[PaymentView, bool] | None:
        """(view, whether the saga has ended), or None for no such saga. A status can read
        final a moment before the saga ends (the ledger row is its last step): only the end
        is final."""
        try:
            description = await handle.describe()
        except RPCError as exc:
            if exc.status is RPCStatusCode.NOT_FOUND:
                return None
            raise HTTPException(503, f"payments are unavailable: {exc.message}") from None
        if description.status is WorkflowExecutionStatus.COMPLETED:
            return await handle.result(), True
        if description.status is not WorkflowExecutionStatus.RUNNING:
            raise HTTPException(500, f"payment saga {handle.id} ended {description.status}")
        return await handle.query(PaymentSagaWorkflow.status), False

    async def wait(self, handle: SagaHandle, seconds: float) -> PaymentView | None:
        """The saga's result within ``seconds``, else None (it carries on). Losing Temporal
        meanwhile is a 503: the saga is durable, the same payment sent again joins it."""
        try:
            async with asyncio.timeout(seconds):
                return await handle.result()
        except TimeoutError:
            return None
        except RPCError as exc:
            raise HTTPException(
                503,
                f"payment {handle.id} is in progress but Temporal did not answer "
                f"({exc.message}); send the same payment again: it is never charged twice",
            ) from None


def settle_response(view: PaymentView) -> SettleResponse:
    settled = view.status is PaymentStatus.SETTLED
    return SettleResponse(
        success=settled,
        payer=view.payer,
        transaction=view.tx_hash or "",
        network=view.network,
        amount=str(view.amount) if settled else None,
        error_reason=None if settled else (view.reason or "unexpected_settle_error"),
        error_message=None if settled or view.detail is None else redact(view.detail),
    )
