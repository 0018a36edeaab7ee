"""Holding and releasing a payer's funds through its ``PayerWorkflow`` entity.

:class:`HoldDesk` is one process's line to the payer entities: the asks that arrive while an
update to the same payer is in flight go together in the next one, so a burst of a payer's
payments costs a few updates (the server admits about ten updates in flight per workflow).
"""

from __future__ import annotations

import asyncio
import contextlib

from temporalio.client import Client, WithStartWorkflowOperation
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.service import RPCError, RPCStatusCode

from agentfleet import taskqueues
from agentfleet.payments.holds import (
    HoldAnswer,
    HoldAsk,
    HoldAsks,
    PayerState,
    PayerStatus,
    Release,
    payer_workflow_id,
)
from workflows.payer import PayerWorkflow

_GONE = (RPCStatusCode.NOT_FOUND, RPCStatusCode.FAILED_PRECONDITION)
"""An update to a payer entity that has just closed (idle): start it again with the update."""

Payer = tuple[int, str, str]


async def hold_funds(client: Client, payer: Payer, asks: list[HoldAsk]) -> dict[str, HoldAnswer]:
    """Ask the entity of ``payer`` (chain id, asset, address) to hold each ask's amount; the
    entity is started when it is not running."""
    chain_id, asset, address = payer
    request = HoldAsks(chain_id=chain_id, asset=asset, payer=address, asks=asks)
    handle = client.get_workflow_handle(payer_workflow_id(chain_id, asset, address))
    try:
        answers = await handle.execute_update(PayerWorkflow.hold, request)
    except RPCError as exc:
        if exc.status not in _GONE:
            raise
        start = WithStartWorkflowOperation(
            PayerWorkflow.run,
            PayerState(chain_id=chain_id, asset=asset, payer=address),
            id=handle.id,
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
            id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
            task_queue=taskqueues.WORKFLOWS,
        )
        answers = await client.execute_update_with_start_workflow(
            PayerWorkflow.hold, request, start_workflow_operation=start
        )
    return answers.answers


async def release_funds(client: Client, payer: Payer, release: Release) -> None:
    """End the hold of ``release.payment_id`` (nothing happens when the entity holds nothing
    for it, or is gone)."""
    chain_id, asset, address = payer
    handle = client.get_workflow_handle(payer_workflow_id(chain_id, asset, address))
    try:
        await handle.signal(PayerWorkflow.release, release)
    except RPCError as exc:
        if exc.status is not RPCStatusCode.NOT_FOUND:
            raise


async def payer_status(client: Client, payer: Payer) -> PayerStatus | None:
    """What the entity holds now (None: no entity, so nothing held)."""
    chain_id, asset, address = payer
    handle = client.get_workflow_handle(payer_workflow_id(chain_id, asset, address))
    try:
        return await handle.query(PayerWorkflow.status)
    except RPCError as exc:
        if exc.status is RPCStatusCode.NOT_FOUND:
            return None
        raise


class HoldDesk:
    """This process's line to the payer entities (asks batched per payer)."""

    def __init__(self, client: Client) -> None:
        self.client = client
        self._waiting: dict[Payer, dict[str, tuple[HoldAsk, list[asyncio.Future[HoldAnswer]]]]]
        self._waiting = {}
        self._draining: dict[Payer, asyncio.Task[None]] = {}

    async def hold(self, payer: Payer, ask: HoldAsk) -> HoldAnswer:
        key = (payer[0], payer[1].lower(), payer[2].lower())
        future: asyncio.Future[HoldAnswer] = asyncio.get_running_loop().create_future()
        queued = self._waiting.setdefault(key, {})
        if ask.payment_id in queued:
            queued[ask.payment_id][1].append(future)
        else:
            queued[ask.payment_id] = (ask, [future])
        task = self._draining.get(key)
        if task is None or task.done():
            self._draining[key] = asyncio.create_task(self._drain(key, payer))
        return await future

    async def _drain(self, key: Payer, payer: Payer) -> None:
        while self._waiting.get(key):
            batch = self._waiting.pop(key)
            try:
                answers = await hold_funds(self.client, payer, [ask for ask, _ in batch.values()])
            except Exception as exc:  # every waiter of the batch gets it (its activity retries)
                for _, futures in batch.values():
                    for future in futures:
                        if not future.done():
                            future.set_exception(exc)
                continue
            for payment_id, (_, futures) in batch.items():
                for future in futures:
                    if not future.done():
                        future.set_result(answers[payment_id])
        with contextlib.suppress(KeyError):
            del self._draining[key]
