"""How a workflow sends a transaction, apart from the relayer and transaction workflows.

Workflows that send (the payment saga, a bot's registration, a buyer's feedback) import these
helpers from here, not from ``workflows.relayer``: the sandbox imports a workflow's modules
afresh for every run, and this module defines no workflow classes to re-build each time.

* :func:`run_transaction` - a child ``TransactionWorkflow`` (id ``tx-{chain}-{request_id}``).
* :func:`send_by_activity` - one ``send_with_relayer`` activity (the payment saga's settlement).
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable
from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import (
    ActivityError,
    ApplicationError,
    ChildWorkflowError,
    FailureError,
)

from workflows import calls

with workflow.unsafe.imports_passed_through():
    from activities.chain import ChainActivities
    from agentfleet import taskqueues
    from agentfleet.chain.transactions import relayer_workflow_id, transaction_workflow_id
    from agentfleet.messages import SendTx, TxFinished, TxOrder, TxOutcome, TxStatus

RPC_RETRY = RetryPolicy(
    initial_interval=timedelta(milliseconds=200), maximum_interval=timedelta(seconds=10)
)


async def run_transaction(order: TxOrder) -> TxOutcome:
    """From another workflow: ``order`` as a child TransactionWorkflow, whose id is its request
    id (so a replayed or repeated step never sends twice). A child that fails is a ``failed``
    outcome with the deepest cause, so callers check one thing: the status."""
    try:
        outcome: TxOutcome = await workflow.execute_child_workflow(
            "TransactionWorkflow",
            order,
            id=transaction_workflow_id(order.chain_id, order.request.request_id),
            task_queue=taskqueues.WORKFLOWS,
            result_type=TxOutcome,
        )
    except ChildWorkflowError as err:
        return TxOutcome(
            request_id=order.request.request_id,
            status=TxStatus.FAILED,
            sender=order.sender,
            error=deepest_cause(err),
        )
    return outcome


async def send_by_activity(order: TxOrder, tell_relayer: bool = True) -> TxOutcome:
    """From another workflow: ``order`` sent by one ``send_with_relayer`` activity, which takes
    the request's nonce from the relayer entity by update and hands it the outcome. The same
    guarantees as :func:`run_transaction` (the request id names one nonce at the relayer and one
    set of signed bytes in the database, so a retry re-sends those bytes, never a new
    transaction) in fewer steps: no child workflow, no signal each way. An outcome the activity
    could not report (no nonce in it: retries exhausted, or failed for good) is told to the
    relayer here, so it keeps checking an unknown one until it is known; a caller that sends again
    itself until the outcome is known says ``tell_relayer=False`` (one sender per request)."""
    outcome = await _send_activity(
        ChainActivities.send_with_relayer, order, order.heartbeat_timeout_s
    )
    if outcome.nonce is None and tell_relayer:
        relayer = workflow.get_external_workflow_handle(
            relayer_workflow_id(order.chain_id, order.sender)
        )
        # The signal fails only when there is no relayer: then no nonce was reserved.
        with contextlib.suppress(FailureError):
            await relayer.signal("finished", TxFinished(order=order, outcome=outcome))
    return outcome


def deepest_cause(err: BaseException) -> str:
    """The innermost cause of a Temporal failure chain (what actually went wrong)."""
    cause: BaseException | None = err
    while cause is not None and getattr(cause, "cause", None) is not None:
        cause = cause.cause  # type: ignore[attr-defined]
    return str(cause or err)


async def execute_send(send: SendTx, heartbeat_timeout_s: float) -> TxOutcome:
    """Run ``send_transaction``; retries exhausted means unknown, a non-retryable error failed."""
    return await _send_activity(ChainActivities.send_transaction, send, heartbeat_timeout_s)


async def _send_activity(
    method: Callable[..., Awaitable[TxOutcome]], arg: SendTx | TxOrder, heartbeat_timeout_s: float
) -> TxOutcome:
    """One sending activity (timeouts from the gas policy); retries exhausted is an ``unknown``
    outcome, a non-retryable error a ``failed`` one (without a nonce when ``arg`` has none)."""
    policy = arg.policy
    try:
        outcome: TxOutcome = await calls.run(
            method,
            arg,
            start_to_close_timeout=timedelta(seconds=policy.receipt_timeout_s + 30),
            schedule_to_close_timeout=timedelta(
                seconds=4 * policy.receipt_timeout_s + min(120, 4 * policy.receipt_timeout_s)
            ),
            heartbeat_timeout=timedelta(seconds=heartbeat_timeout_s),
            retry_policy=RPC_RETRY,
        )
        return outcome
    except ActivityError as err:
        cause = err.cause
        failed_for_good = isinstance(cause, ApplicationError) and cause.non_retryable
        return TxOutcome(
            request_id=arg.request.request_id,
            status=TxStatus.FAILED if failed_for_good else TxStatus.UNKNOWN,
            sender=arg.sender,
            nonce=arg.nonce if isinstance(arg, SendTx) else None,
            error=str(cause or err),
        )
