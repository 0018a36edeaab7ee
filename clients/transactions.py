"""How code sends a transaction: start (or attach to) its TransactionWorkflow and await it, and
the relayer entity's nonce desk and signals.

The workflow id is the request id (``tx-{chain}-{request_id}``): the same request sent again,
concurrently, after a crash or after it finished, returns the same outcome and never sends a
second transaction. Pick among several relayer accounts with
:func:`agentfleet.chain.transactions.pick_relayer`.
"""

from __future__ import annotations

from temporalio.client import (
    Client,
    WorkflowQueryFailedError,
    WorkflowUpdateFailedError,
)
from temporalio.service import RPCError

from agentfleet import taskqueues
from agentfleet.chain.transactions import relayer_id, transaction_workflow_id
from agentfleet.errors import FleetError
from agentfleet.messages import (
    GasPolicy,
    TxOrder,
    TxOutcome,
    TxRequest,
)
from agentfleet.temporal import start_or_attach
from workflows.relayer import RelayerWorkflow, TransactionWorkflow, validate_request


async def send_transaction(
    client: Client,
    *,
    chain_id: int,
    sender: str,
    request: TxRequest,
    confirmations: int = 0,
    policy: GasPolicy | None = None,
    reorg_window_s: float = 15.0,
    heartbeat_timeout_s: float = 10.0,
) -> TxOutcome:
    """Send ``request`` from ``sender`` (a key in the keystore) and wait for its outcome."""
    problem = validate_request(request)
    if problem:
        raise FleetError(f"transaction {request.request_id}: {problem}")
    order = TxOrder(
        chain_id=chain_id,
        sender=sender,
        request=request,
        confirmations=confirmations,
        policy=policy or GasPolicy(),
        reorg_window_s=reorg_window_s,
        heartbeat_timeout_s=heartbeat_timeout_s,
    )
    handle = await start_or_attach(
        client,
        TransactionWorkflow.run,
        order,
        id=transaction_workflow_id(chain_id, request.request_id),
        task_queue=taskqueues.WORKFLOWS,
    )
    outcome: TxOutcome = await handle.result()
    return outcome


async def resync_relayer(client: Client, chain_id: int, sender: str, chain_nonce: int) -> bool:
    """When the relayer of ``sender`` is idle and its next nonce is not the chain's pending count
    (a dev chain reset or swapped under a running fleet), have it read the nonce from the chain
    again. True if it did. Dev chains only: on a real network a difference is a real problem."""

    handle = client.get_workflow_handle(relayer_id(chain_id, sender))
    try:
        status = await handle.query(RelayerWorkflow.status)
    except (RPCError, WorkflowQueryFailedError):  # no relayer yet: it reads the chain when born
        return False
    if status.next_nonce is None or status.next_nonce == chain_nonce:
        return False
    if status.reserved or status.pending_recheck:
        return False
    try:
        await handle.execute_update(RelayerWorkflow.resync)
    except WorkflowUpdateFailedError:  # a transaction arrived meanwhile
        return False
    return True
