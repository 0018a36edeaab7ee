"""Starting, joining and reading a payment's saga (``PaymentSagaWorkflow``, id = the payment id).

The same payment sent again, concurrently or after its saga ended, reaches the one saga: it is
joined, never started twice. Temporal trouble is :class:`PaymentsUnavailable` (the saga is
durable: the same payment sent later joins it and is never charged twice).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from temporalio.client import Client, WorkflowExecutionStatus, WorkflowHandle
from temporalio.service import RPCError, RPCStatusCode

from agentfleet import search_attributes, taskqueues
from agentfleet.errors import FleetError
from agentfleet.payments.model import BEFORE_BROADCAST, PayloadConflict, PaymentOrder, PaymentView
from agentfleet.temporal import started_or_attached
from workflows.payment_saga import (
    PaymentSagaWorkflow,
    payment_start_attributes,
    payment_workflow_id,
)

PAYLOAD_MEMO = "payload_sha256"
"""The saga's memo key for the sha256 of the payment payload it was started with."""

SagaHandle = WorkflowHandle[Any, PaymentView]


class PaymentsUnavailable(FleetError):
    """Temporal, the chain or the contracts cannot be reached or read now."""


class SagaEnded(FleetError):
    """A saga that ended without a result (terminated, cancelled, failed)."""


class NoSuchPayment(FleetError):
    """No saga has that payment id."""


@dataclass(frozen=True)
class Joined:
    """A payment's saga as a request found it: ``fresh`` when this request started it or joined
    it before its settlement was broadcast (so the request had the payload while only the payer
    did)."""

    handle: SagaHandle
    fresh: bool


@dataclass(frozen=True)
class SagaState:
    """A saga's view and whether it has ended (only the end is final); ``withheld`` when the
    view's result was left out for a reader who is not the payer."""

    view: PaymentView
    final: bool
    withheld: bool = False


def unavailable(exc: RPCError) -> PaymentsUnavailable:
    return PaymentsUnavailable(f"payments are unavailable: {exc.message}")


def saga_handle(client: Client, payment_id: str) -> SagaHandle:
    return client.get_workflow_handle_for(PaymentSagaWorkflow.run, payment_workflow_id(payment_id))


async def saga_view(client: Client, payment_id: str) -> PaymentView | None:
    """The running saga's view (its ``status`` query), or None when there is none to ask."""
    try:
        return await saga_handle(client, payment_id).query(PaymentSagaWorkflow.status)
    except RPCError:
        return None


async def start_or_join(client: Client, order: PaymentOrder) -> Joined:
    """The saga of ``order.payment_id``: started, or the running/finished one joined;
    PayloadConflict when it was started with a different payload."""
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
        raise unavailable(exc) from None
    if started:  # this payload is the saga's input: nothing to compare
        return Joined(handle, fresh=True)
    payload_sha256, status = await _started_with(handle)
    if payload_sha256 is not None and payload_sha256 != order.payment.sha256:
        raise PayloadConflict(f"payment {order.payment_id} was submitted with a different payload")
    return Joined(handle, fresh=status in BEFORE_BROADCAST)


async def _started_with(handle: SagaHandle) -> tuple[str | None, str | None]:
    """(sha256 of the payload the saga started with, its PaymentStatus) from one describe,
    which a burst of retries of one payment can afford (a query each would queue them all
    behind the saga's worker); a saga started before the memo: its view."""
    try:
        description = await handle.describe()
    except RPCError as exc:
        if exc.status is RPCStatusCode.NOT_FOUND:
            return None, None
        raise unavailable(exc) from None
    status = description.typed_search_attributes.get(search_attributes.PAYMENT_STATUS)
    memo = await description.memo()
    if PAYLOAD_MEMO in memo:
        return str(memo[PAYLOAD_MEMO]), status
    found = await saga_state(handle)
    return (None if found is None else found.view.payload_sha256), status


async def saga_state(handle: SagaHandle) -> SagaState | None:
    """The saga's state, or None for no such saga. A status can read final a moment before the
    saga ends (the ledger row is its last step): only the end is final."""
    try:
        description = await handle.describe()
    except RPCError as exc:
        if exc.status is RPCStatusCode.NOT_FOUND:
            return None
        raise unavailable(exc) from None
    if description.status is WorkflowExecutionStatus.COMPLETED:
        return SagaState(await handle.result(), final=True)
    if description.status is not WorkflowExecutionStatus.RUNNING:
        raise SagaEnded(f"payment saga {handle.id} ended {description.status}")
    return SagaState(await handle.query(PaymentSagaWorkflow.status), final=False)


async def saga_result(handle: SagaHandle, seconds: float) -> PaymentView | None:
    """The saga's result within ``seconds``, else None (it carries on)."""
    try:
        async with asyncio.timeout(seconds):
            return await handle.result()
    except TimeoutError:
        return None
    except RPCError as exc:
        raise PaymentsUnavailable(
            f"payment {handle.id} is in progress but Temporal did not answer "
            f"({exc.message}); send the same payment again: it is never charged twice"
        ) from None
