"""The relayer entity as activities talk to it: start it, reserve nonces (batched per worker
process), hand it a transaction's outcome. Addressed by its registered names
(:data:`agentfleet.chain.transactions.RELAYER_WORKFLOW` and the update and signal beside it), not
by its class: the relayer's workflows call the activities that use this module."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from temporalio.client import Client, WithStartWorkflowOperation
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.service import RPCError, RPCStatusCode

from agentfleet import taskqueues
from agentfleet.chain.transactions import (
    FINISHED_SIGNAL,
    RELAYER_WORKFLOW,
    RESERVE_NOW_UPDATE,
    relayer_id,
)
from agentfleet.messages import NonceReservations, RelayerState, ReserveNonces, TxFinished


async def ensure_relayer(client: Client, chain_id: int, sender: str) -> None:
    """Start the relayer entity of ``sender`` unless it runs already."""

    await client.start_workflow(
        RELAYER_WORKFLOW,
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
    handle = client.get_workflow_handle(relayer_id(chain_id, sender))
    reserved: NonceReservations
    try:
        reserved = await handle.execute_update(
            RESERVE_NOW_UPDATE, ask, result_type=NonceReservations
        )
    except RPCError as exc:
        if exc.status is not RPCStatusCode.NOT_FOUND:
            raise
        start: WithStartWorkflowOperation[Any, Any] = WithStartWorkflowOperation(
            RELAYER_WORKFLOW,
            RelayerState(chain_id=chain_id, address=sender),
            id=handle.id,
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
            id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
            task_queue=taskqueues.WORKFLOWS,
        )
        reserved = await client.execute_update_with_start_workflow(
            RESERVE_NOW_UPDATE, ask, start_workflow_operation=start, result_type=NonceReservations
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
    await handle.signal(FINISHED_SIGNAL, done)
