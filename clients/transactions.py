"""How code sends a transaction: start (or attach to) its TransactionWorkflow and await it, and
the relayer entity's nonce desk and signals.

The workflow id is the request id (``tx-{chain}-{request_id}``): the same request sent again,
concurrently, after a crash or after it finished, returns the same outcome and never sends a
second transaction. Pick among several relayer accounts with
:func:`agentfleet.chain.transactions.pick_relayer`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from temporalio.client import (
    Client,
    WithStartWorkflowOperation,
    WorkflowQueryFailedError,
    WorkflowUpdateFailedError,
)
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.service import RPCError, RPCStatusCode

from agentfleet import taskqueues
from agentfleet.chain.transactions import relayer_id, transaction_workflow_id
from agentfleet.errors import FleetError
from agentfleet.messages import (
    GasPolicy,
    NonceReservations,
    RelayerState,
    ReserveNonces,
    TxFinished,
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


async def ensure_relayer(client: Client, chain_id: int, sender: str) -> None:
    """Start the relayer entity of ``sender`` unless it runs already."""

    await client.start_workflow(
        RelayerWorkflow.run,
        RelayerState(chain_id=chain_id, address=sender),
        id=relayer_id(chain_id, sender),
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
        id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
        task_queue=taskqueues.WORKFLOWS,
    )


async def reserve_nonces(
    client: Client, chain_id: int, sender: str, request_ids: Sequence[str]
) -> dict[str, int]:
    """The nonces of ``request_ids`` from the relayer entity of ``sender`` (started if missing):
    new ones the first time, the same ones when asked again. An update the server refuses for
    the moment (too many in flight) is retried by the client; past its retries the error goes
    to the caller, whose activity is retried."""

    ask = ReserveNonces(chain_id=chain_id, sender=sender, request_ids=list(request_ids))
    handle = client.get_workflow_handle_for(RelayerWorkflow.run, relayer_id(chain_id, sender))
    reserved: NonceReservations
    try:
        reserved = await handle.execute_update(RelayerWorkflow.reserve_now, ask)
    except RPCError as exc:
        if exc.status is not RPCStatusCode.NOT_FOUND:
            raise
        start = WithStartWorkflowOperation(
            RelayerWorkflow.run,
            RelayerState(chain_id=chain_id, address=sender),
            id=handle.id,
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
            id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
            task_queue=taskqueues.WORKFLOWS,
        )
        reserved = await client.execute_update_with_start_workflow(
            RelayerWorkflow.reserve_now, ask, start_workflow_operation=start
        )
    return reserved.nonces


class NonceDesk:
    """One worker process's line to one relayer entity: reservations that arrive while an
    update is in flight go together in the next one. Sequential sends pay one update each; a
    burst costs a few updates instead of one each (the server admits only ~10 updates in
    flight per workflow and the client backs the rest off)."""

    def __init__(self, client: Client, chain_id: int, sender: str) -> None:
        self.client = client
        self.chain_id = chain_id
        self.sender = sender
        self._waiting: dict[str, list[asyncio.Future[int]]] = {}
        self._draining: asyncio.Task[None] | None = None

    async def reserve(self, request_id: str) -> int:
        """The nonce of ``request_id``."""
        future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._waiting.setdefault(request_id, []).append(future)
        if self._draining is None or self._draining.done():
            self._draining = asyncio.create_task(self._drain())
        return await future

    async def _drain(self) -> None:
        while self._waiting:
            batch, self._waiting = self._waiting, {}
            try:
                nonces = await reserve_nonces(self.client, self.chain_id, self.sender, [*batch])
            except Exception as exc:  # every waiter of the batch gets it (its activity retries)
                for futures in batch.values():
                    for future in futures:
                        if not future.done():
                            future.set_exception(exc)
                continue
            for request_id, futures in batch.items():
                for future in futures:
                    if not future.done():
                        future.set_result(nonces[request_id])


async def hand_to_relayer(client: Client, done: TxFinished) -> None:
    """Tell the sender's relayer a transaction's outcome (it re-checks it after the reorg
    window, or until an unknown outcome is known)."""
    handle = client.get_workflow_handle(relayer_id(done.order.chain_id, done.order.sender))
    await handle.signal("finished", done)


async def resync_relayer(client: Client, chain_id: int, sender: str, chain_nonce: int) -> bool:
    """When the relayer of ``sender`` is idle and its next nonce is not the chain's pending count
    (a dev chain reset or swapped under a running fleet), have it read the nonce from the chain
    again. True if it did. Dev chains only: on a real network a difference is a real problem."""

    handle = client.get_workflow_handle_for(RelayerWorkflow.run, relayer_id(chain_id, sender))
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
