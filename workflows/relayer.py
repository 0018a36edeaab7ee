"""RelayerWorkflow: one durable entity per sending account (``relayer-{chain}-{address}``).

It is the only writer of its account's nonces, so any number of concurrent requests never collide
("nonce too low", "replacement transaction underpriced"). A request is simulated first (a revert
spends no nonce), then gets the next nonce and goes to ``send_transaction``, which records the
signed bytes before broadcast. Finished transactions stay on a re-check list for a reorg window;
unknown outcomes are re-checked until they resolve. Requests are updates: the caller gets the
outcome; the same ``request_id`` twice gets the same outcome.
"""

from __future__ import annotations

import contextlib
from datetime import datetime, timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from agentfleet import taskqueues
    from agentfleet.messages import (
        NonceQuery,
        PreparedTx,
        PrepareTx,
        RelayerState,
        RelayerStatus,
        SendTx,
        TxOutcome,
        TxRequest,
        TxStatus,
    )

RECENT_LIMIT = 2000
RPC_RETRY = RetryPolicy(
    initial_interval=timedelta(milliseconds=200), maximum_interval=timedelta(seconds=10)
)


def _is_hex(text: str) -> bool:
    if not text.startswith("0x"):
        return False
    try:
        bytes.fromhex(text[2:])
    except ValueError:
        return False
    return True


@workflow.defn(name="RelayerWorkflow")
class RelayerWorkflow:
    @workflow.init
    def __init__(self, state: RelayerState) -> None:
        self.state = state
        self.in_flight: set[str] = set()
        self.wake = False

    @workflow.run
    async def run(self, state: RelayerState) -> None:
        if self.state.next_nonce is None:
            self.state.next_nonce = await workflow.execute_activity(
                "read_account_nonce",
                NonceQuery(chain_id=self.state.chain_id, sender=self.state.address),
                result_type=int,
                task_queue=taskqueues.CHAIN,
                start_to_close_timeout=timedelta(seconds=30),
                retry_policy=RPC_RETRY,
            )
        while True:
            due = self._next_due()
            timeout = None if due is None else max(due - workflow.now(), timedelta(0))
            with contextlib.suppress(TimeoutError):
                await workflow.wait_condition(
                    lambda: self.wake or workflow.info().is_continue_as_new_suggested(),
                    timeout=timeout,
                )
            self.wake = False
            await self._recheck_due()
            if workflow.info().is_continue_as_new_suggested():
                await workflow.wait_condition(
                    lambda: workflow.all_handlers_finished() and not self.in_flight
                )
                workflow.continue_as_new(self.state)

    def _next_due(self) -> datetime | None:
        return min(self.state.recheck.values(), default=None)

    async def _recheck_due(self) -> None:
        now = workflow.now()
        for request_id, due in sorted(self.state.recheck.items(), key=lambda item: item[1]):
            if due > now:
                continue
            outcome = self.state.recent.get(request_id)
            if outcome is None or outcome.nonce is None:
                self.state.recheck.pop(request_id, None)
                continue
            order = self._order(TxRequest(request_id=request_id), outcome.nonce)
            checked = await workflow.execute_activity(
                "verify_transaction",
                order,
                result_type=TxOutcome | None,  # type: ignore[arg-type]
                task_queue=taskqueues.CHAIN,
                start_to_close_timeout=timedelta(seconds=30),
                retry_policy=RPC_RETRY,
            )
            if checked is None:
                checked = await self._send(order)
            self._remember(checked, recheck=checked.status is TxStatus.UNKNOWN)

    def _order(self, request: TxRequest, nonce: int) -> SendTx:
        return SendTx(
            chain_id=self.state.chain_id,
            sender=self.state.address,
            nonce=nonce,
            request=request,
            confirmations=self.state.confirmations,
            policy=self.state.policy,
        )

    async def _send(self, order: SendTx) -> TxOutcome:
        policy = self.state.policy
        try:
            outcome: TxOutcome = await workflow.execute_activity(
                "send_transaction",
                order,
                result_type=TxOutcome,
                task_queue=taskqueues.CHAIN,
                start_to_close_timeout=timedelta(seconds=policy.receipt_timeout_s + 30),
                schedule_to_close_timeout=timedelta(seconds=4 * policy.receipt_timeout_s + 120),
                heartbeat_timeout=timedelta(seconds=self.state.heartbeat_timeout_s),
                retry_policy=RPC_RETRY,
            )
            return outcome
        except ActivityError as err:
            cause = err.cause
            failed_for_good = isinstance(cause, ApplicationError) and cause.non_retryable
            return TxOutcome(
                request_id=order.request.request_id,
                status=TxStatus.FAILED if failed_for_good else TxStatus.UNKNOWN,
                sender=order.sender,
                nonce=order.nonce,
                error=str(cause or err),
            )

    def _remember(self, outcome: TxOutcome, *, recheck: bool) -> None:
        self.state.recent[outcome.request_id] = outcome
        while len(self.state.recent) > RECENT_LIMIT:
            oldest = next(iter(self.state.recent))
            if oldest in self.state.recheck:
                break
            del self.state.recent[oldest]
        if recheck:
            window = timedelta(seconds=self.state.reorg_window_s)
            self.state.recheck[outcome.request_id] = workflow.now() + window
        else:
            self.state.recheck.pop(outcome.request_id, None)

    @workflow.update
    async def submit(self, request: TxRequest) -> TxOutcome:
        known = self.state.recent.get(request.request_id)
        if known is not None:
            return known
        if request.request_id in self.in_flight:
            await workflow.wait_condition(lambda: request.request_id in self.state.recent)
            return self.state.recent[request.request_id]
        self.in_flight.add(request.request_id)
        try:
            outcome = await self._submit(request)
        finally:
            self.in_flight.discard(request.request_id)
        return outcome

    async def _submit(self, request: TxRequest) -> TxOutcome:
        await workflow.wait_condition(lambda: self.state.next_nonce is not None)
        if request.gas_limit is None:
            try:
                prepared = await workflow.execute_activity(
                    "prepare_transaction",
                    PrepareTx(
                        chain_id=self.state.chain_id, sender=self.state.address, request=request
                    ),
                    result_type=PreparedTx,
                    task_queue=taskqueues.CHAIN,
                    start_to_close_timeout=timedelta(seconds=30),
                    schedule_to_close_timeout=timedelta(minutes=5),
                    retry_policy=RPC_RETRY,
                )
            except ActivityError as err:
                outcome = TxOutcome(
                    request_id=request.request_id,
                    status=TxStatus.FAILED,
                    sender=self.state.address,
                    error=str(err.cause or err),
                )
                self._remember(outcome, recheck=False)
                return outcome
            request = request.model_copy(update={"gas_limit": prepared.gas_limit})
        nonce = self.state.next_nonce or 0
        self.state.next_nonce = nonce + 1
        outcome = await self._send(self._order(request, nonce))
        recheck = outcome.status is TxStatus.UNKNOWN or (
            outcome.status is TxStatus.CONFIRMED and self.state.reorg_window_s > 0
        )
        self._remember(outcome, recheck=recheck)
        return outcome

    @submit.validator
    def _validate_submit(self, request: TxRequest) -> None:
        if request.to is not None and not (_is_hex(request.to) and len(request.to) == 42):
            raise ApplicationError(f"'to' is not an address: {request.to!r}", type="BadRequest")
        if not _is_hex(request.data):
            raise ApplicationError("'data' must be 0x-prefixed hex", type="BadRequest")
        if request.to is None and request.data == "0x":
            raise ApplicationError("a transaction needs 'to' or contract code", type="BadRequest")

    @workflow.signal
    def recheck_now(self) -> None:
        """Move every pending re-check to now (operators and tests; a reorg suspected)."""
        now = workflow.now()
        for request_id in self.state.recheck:
            self.state.recheck[request_id] = now
        self.wake = True

    @workflow.query
    def status(self) -> RelayerStatus:
        return RelayerStatus(
            address=self.state.address,
            chain_id=self.state.chain_id,
            next_nonce=self.state.next_nonce,
            in_flight=len(self.in_flight),
            recent=len(self.state.recent),
            pending_recheck=len(self.state.recheck),
        )
