"""Durable transactions: TransactionWorkflow per transaction, RelayerWorkflow per account.

``TransactionWorkflow`` (id ``tx-{chain}-{request_id}``: sending the same request twice sends
once) simulates the transaction (a revert spends no nonce), reserves a nonce from the account's
relayer, and sends through ``send_transaction``, which records the signed bytes before broadcast.

``RelayerWorkflow`` (id ``relayer-{chain}-{address}``) is the only writer of its account's nonces,
so concurrent transactions never collide ("nonce too low", "replacement transaction
underpriced"). A TransactionWorkflow reserves by ``reserve`` signal (answered by signal); the
``send_with_relayer`` activity (``workflows.transactions.send_by_activity``, the payment saga's
settlement) by the ``reserve_now`` update. Both handlers are short (no activity), so many
transactions reserve at once. Finished transactions come back by signal and are checked again
after their reorg window; unknown outcomes are re-sent from their recorded bytes until they
resolve. It continues as new when Temporal suggests it (or past the state's
``continue_as_new_after`` events), carrying its nonces and pending re-checks.
"""

from __future__ import annotations

import contextlib
from datetime import timedelta

from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError

from workflows import calls, patches
from workflows.entities import continue_as_new_due

with workflow.unsafe.imports_passed_through():
    from activities.chain import ChainActivities
    from agentfleet.chain.transactions import (
        FINISHED_SIGNAL,
        RELAYER_WORKFLOW,
        RESERVE_NOW_UPDATE,
        relayer_workflow_id,
    )
    from agentfleet.messages import (
        EnsureRelayer,
        NonceQuery,
        NonceReservation,
        NonceReservations,
        PrepareTx,
        RelayerState,
        RelayerStatus,
        ReserveNonce,
        ReserveNonces,
        TxFinished,
        TxOrder,
        TxOutcome,
        TxRequest,
        TxStatus,
    )

from workflows.transactions import RPC_RETRY, execute_send

RECENT_NONCES = 5000


def _is_hex(text: str) -> bool:
    if not text.startswith("0x"):
        return False
    try:
        bytes.fromhex(text[2:])
    except ValueError:
        return False
    return True


@workflow.defn(name="TransactionWorkflow")
class TransactionWorkflow:
    def __init__(self) -> None:
        self.reservation: NonceReservation | None = None

    @workflow.signal
    def nonce_reserved(self, reservation: NonceReservation) -> None:
        self.reservation = reservation

    async def _reserve(self, order: TxOrder, request_id: str) -> NonceReservation:
        """Ask the sender's relayer for a nonce by signal (no in-flight limit, batched by the
        relayer); the relayer is started by an activity the first time it is missing."""
        relayer = workflow.get_external_workflow_handle(
            relayer_workflow_id(order.chain_id, order.sender)
        )
        ask = ReserveNonce(
            chain_id=order.chain_id,
            sender=order.sender,
            request_id=request_id,
            reply_to=workflow.info().workflow_id,
        )
        try:
            await relayer.signal("reserve", ask)
        except Exception:  # the relayer does not exist yet (or was retired)
            await calls.run(
                ChainActivities.ensure_relayer,
                EnsureRelayer(chain_id=order.chain_id, sender=order.sender),
                start_to_close_timeout=timedelta(seconds=30),
                retry_policy=RPC_RETRY,
            )
            await relayer.signal("reserve", ask)
        await workflow.wait_condition(lambda: self.reservation is not None)
        assert self.reservation is not None  # noqa: S101 - narrowed by the condition above
        return self.reservation

    @workflow.run
    async def run(self, order: TxOrder) -> TxOutcome:
        request = order.request
        if request.gas_limit is None:
            try:
                prepared = await calls.run(
                    ChainActivities.prepare_transaction,
                    PrepareTx(chain_id=order.chain_id, sender=order.sender, request=request),
                    start_to_close_timeout=timedelta(seconds=30),
                    schedule_to_close_timeout=timedelta(minutes=5),
                    retry_policy=RPC_RETRY,
                )
            except ActivityError as err:
                return TxOutcome(
                    request_id=request.request_id,
                    status=TxStatus.FAILED,
                    sender=order.sender,
                    error=str(err.cause or err),
                )
            request = request.model_copy(update={"gas_limit": prepared.gas_limit})
        reservation = await self._reserve(order, request.request_id)
        outcome = await execute_send(
            order.to_send(reservation.nonce, request), order.heartbeat_timeout_s
        )
        relayer = workflow.get_external_workflow_handle(
            relayer_workflow_id(order.chain_id, order.sender)
        )
        await relayer.signal(
            "finished",
            TxFinished(order=order.model_copy(update={"request": request}), outcome=outcome),
        )
        return outcome


@workflow.defn(name=RELAYER_WORKFLOW)
class RelayerWorkflow:
    @workflow.init
    def __init__(self, state: RelayerState) -> None:
        self.state = state
        self.wake = False

    @workflow.run
    async def run(self, state: RelayerState) -> None:
        if self.state.next_nonce is None:
            self.state.next_nonce = await calls.run(
                ChainActivities.read_account_nonce,
                NonceQuery(chain_id=self.state.chain_id, sender=self.state.address),
                start_to_close_timeout=timedelta(seconds=30),
                retry_policy=RPC_RETRY,
            )
        while True:
            due = min(self.state.recheck.values(), default=None)
            timeout = None if due is None else max(due - workflow.now(), timedelta(0))
            with contextlib.suppress(TimeoutError):
                await workflow.wait_condition(
                    lambda: self.wake or continue_as_new_due(self.state.continue_as_new_after),
                    timeout=timeout,
                )
            self.wake = False
            await self._recheck_due()
            if continue_as_new_due(self.state.continue_as_new_after):
                await workflow.wait_condition(workflow.all_handlers_finished)
                workflow.continue_as_new(self.state)

    async def _recheck_due(self) -> None:
        now = workflow.now()
        for request_id, due in sorted(self.state.recheck.items(), key=lambda item: item[1]):
            order = self.state.finished.get(request_id)
            nonce = self.state.nonces.get(request_id)
            if due > now or order is None or nonce is None:
                continue
            send = order.to_send(nonce)
            checked = await calls.run(
                ChainActivities.verify_transaction,
                send,
                start_to_close_timeout=timedelta(seconds=30),
                retry_policy=RPC_RETRY,
            )
            if checked is None:
                checked = await execute_send(send, order.heartbeat_timeout_s)
            if checked.status is TxStatus.UNKNOWN:
                self.state.recheck[request_id] = workflow.now() + timedelta(seconds=30)
            else:
                self.state.recheck.pop(request_id, None)
                self.state.finished.pop(request_id, None)

    def _nonce_of(self, request_id: str) -> int:
        """The nonce of ``request_id``: a new one the first time, the same one after that."""
        known = self.state.reserved.get(request_id)
        if known is None:
            known = self.state.nonces.get(request_id)
        if known is None:
            known = self.state.next_nonce or 0
            self.state.next_nonce = known + 1
            self.state.reserved[request_id] = known
            self.state.nonces[request_id] = known
            while len(self.state.nonces) > RECENT_NONCES:
                del self.state.nonces[next(iter(self.state.nonces))]
        return known

    @workflow.signal
    async def reserve(self, request: ReserveNonce) -> None:
        """The nonce of ``request_id`` (a new one the first time, the same one after that),
        answered by a ``nonce_reserved`` signal to ``reply_to``."""
        if request.chain_id != self.state.chain_id or (
            request.sender.lower() != self.state.address.lower()
        ):
            workflow.logger.warning("reserve for another account ignored: %s", request.sender)
            return
        await workflow.wait_condition(lambda: self.state.next_nonce is not None)
        reservation = NonceReservation(
            request_id=request.request_id, nonce=self._nonce_of(request.request_id)
        )
        if request.reply_to:
            handle = workflow.get_external_workflow_handle(request.reply_to)
            await handle.signal("nonce_reserved", reservation)

    @workflow.update(name=RESERVE_NOW_UPDATE)
    async def reserve_now(self, request: ReserveNonces) -> NonceReservations:
        """The nonces of ``request_ids``, answered at once (the same ones when asked again).
        For senders that are activities (``send_with_relayer``): one update instead of a signal
        each way, and a pure handler, so a burst costs a workflow task per batch."""
        await workflow.wait_condition(lambda: self.state.next_nonce is not None)
        return NonceReservations(nonces={rid: self._nonce_of(rid) for rid in request.request_ids})

    @reserve_now.validator
    def _reserve_for_this_account(self, request: ReserveNonces) -> None:
        if request.chain_id != self.state.chain_id or (
            request.sender.lower() != self.state.address.lower()
        ):
            raise ApplicationError(
                f"relayer {self.state.address} on chain {self.state.chain_id} does not send "
                f"for {request.sender} on chain {request.chain_id}"
            )

    @workflow.signal(name=FINISHED_SIGNAL)
    def finished(self, done: TxFinished) -> None:
        """A transaction's outcome: keep it for the reorg re-check (or until it is known)."""
        request_id = done.outcome.request_id
        self.state.reserved.pop(request_id, None)
        unknown = done.outcome.status is TxStatus.UNKNOWN
        window = 30.0 if unknown else done.order.reorg_window_s
        # An outcome without a nonce is that of a send_with_relayer activity that failed: the
        # nonce it reserved (if it got that far) is the one recorded here.
        if (done.outcome.nonce is not None or request_id in self.state.nonces) and window > 0:
            self.state.finished[request_id] = done.order
            self.state.recheck[request_id] = workflow.now() + timedelta(seconds=window)
            if workflow.patched(patches.RELAYER_WAKES_ON_FINISHED.id):
                # An idle relayer waits without a timeout: wake it, so it sets a timer for
                # this re-check (before this patch, re-checks waited for the next reservation).
                self.wake = True

    @workflow.signal
    def recheck_now(self) -> None:
        """Move every pending re-check to now (operators and tests; a reorg suspected)."""
        now = workflow.now()
        for request_id in self.state.recheck:
            self.state.recheck[request_id] = now
        self.wake = True

    @workflow.update
    async def resync(self) -> int:
        """Re-read the next nonce from the chain alone (a dev chain was reset under us: the
        recorded nonces are ahead of it). Only when nothing is in flight (see the validator)."""
        self.state.next_nonce = None
        self.state.next_nonce = await calls.run(
            ChainActivities.read_account_nonce,
            NonceQuery(chain_id=self.state.chain_id, sender=self.state.address, chain_only=True),
            start_to_close_timeout=timedelta(seconds=30),
            retry_policy=RPC_RETRY,
        )
        return self.state.next_nonce

    @resync.validator
    def _resync_allowed(self) -> None:
        if self.state.reserved or self.state.recheck or self.state.next_nonce is None:
            raise ApplicationError(
                f"relayer {self.state.address} has transactions in flight; resync refused"
            )

    @workflow.query
    def status(self) -> RelayerStatus:
        return RelayerStatus(
            address=self.state.address,
            chain_id=self.state.chain_id,
            next_nonce=self.state.next_nonce,
            reserved=len(self.state.reserved),
            pending_recheck=len(self.state.recheck),
        )


def validate_request(request: TxRequest) -> str | None:
    """Why a request cannot be sent, or None (used at the edge before any workflow starts)."""
    if request.to is not None and not (_is_hex(request.to) and len(request.to) == 42):
        return f"'to' is not an address: {request.to!r}"
    if not _is_hex(request.data):
        return "'data' must be 0x-prefixed hex"
    if request.to is None and request.data == "0x":
        return "a transaction needs 'to' or contract code"
    return None
