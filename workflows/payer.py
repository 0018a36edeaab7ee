"""PayerWorkflow: the funds a payer's in-flight payments hold, one entity per payer and token.

Id ``payer-{chainId}-{asset}-{payer}``. A payment saga's verify step holds the payment's amount
with the ``hold`` update (a pure handler: a burst of asks costs a workflow task per batch);
the saga's ledger step ``release``s it, as spent in a block or as nothing moved. The entity
closes itself after an hour with nothing held; the next ask starts it again.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

from temporalio import workflow
from temporalio.exceptions import ApplicationError

with workflow.unsafe.imports_passed_through():
    from agentfleet.payments.holds import (
        SPENT_DEPTH,
        SPENT_KEEP_S,
        Hold,
        HoldAnswer,
        HoldAnswers,
        HoldAsk,
        HoldAsks,
        PayerState,
        PayerStatus,
        Release,
        Spent,
    )

IDLE_CLOSE = timedelta(hours=1)


@workflow.defn(name="PayerWorkflow")
class PayerWorkflow:
    @workflow.init
    def __init__(self, state: PayerState) -> None:
        self.state = state
        self.changes = 0

    @workflow.run
    async def run(self, state: PayerState) -> None:
        while True:
            if workflow.info().is_continue_as_new_suggested():
                await workflow.wait_condition(workflow.all_handlers_finished)
                workflow.continue_as_new(self.state)
            self._forget_spent()
            idle = not self.state.holds and not self.state.spent
            try:
                await workflow.wait_condition(
                    self._changed_since(self.changes),
                    timeout=IDLE_CLOSE if idle else self._next_forget(),
                )
            except TimeoutError:
                if not idle:
                    continue
                await workflow.wait_condition(workflow.all_handlers_finished)
                if not self.state.holds and not self.state.spent:
                    return

    def _changed_since(self, seen: int) -> Callable[[], bool]:
        return lambda: self.changes != seen or workflow.info().is_continue_as_new_suggested()

    def _next_forget(self) -> timedelta | None:
        """Time until the oldest settled amount is forgotten (None: nothing to forget)."""
        if not self.state.spent:
            return None
        oldest = min(spent.at for spent in self.state.spent.values())
        due = oldest + timedelta(seconds=SPENT_KEEP_S) - workflow.now()
        return max(due, timedelta(seconds=1))

    def _forget_spent(self) -> None:
        """Settled amounts every balance read now shows (or too old to matter) are dropped."""
        horizon = workflow.now() - timedelta(seconds=SPENT_KEEP_S)
        for payment_id, spent in list(self.state.spent.items()):
            if spent.block + SPENT_DEPTH <= self.state.newest_block or spent.at <= horizon:
                del self.state.spent[payment_id]
                self.state.forgotten_through = max(self.state.forgotten_through, spent.block)

    @workflow.update
    def hold(self, asks: HoldAsks) -> HoldAnswers:
        """Hold each ask's amount when it fits in its balance (the same payment again: the same
        answer); refused asks hold nothing."""
        answers = {ask.payment_id: self._hold(ask) for ask in asks.asks}
        self._forget_spent()
        self.changes += 1
        return HoldAnswers(answers=answers)

    @hold.validator
    def _hold_for_this_payer(self, asks: HoldAsks) -> None:
        state = self.state
        if (asks.chain_id, asks.asset.lower(), asks.payer.lower()) != (
            state.chain_id,
            state.asset.lower(),
            state.payer.lower(),
        ):
            raise ApplicationError(
                f"payer entity {state.payer} of {state.asset} on chain {state.chain_id} does "
                f"not hold funds of {asks.payer} in {asks.asset} on chain {asks.chain_id}"
            )

    def _hold(self, ask: HoldAsk) -> HoldAnswer:
        state = self.state
        if ask.payment_id in state.holds or ask.payment_id in state.spent:
            return HoldAnswer(granted=True)
        if ask.block < state.forgotten_through:
            return HoldAnswer(granted=False, stale=True)
        state.newest_block = max(state.newest_block, ask.block)
        committed = sum(hold.amount for hold in state.holds.values()) + sum(
            spent.amount for spent in state.spent.values() if spent.block > ask.block
        )
        if committed + ask.amount > ask.balance:
            return HoldAnswer(granted=False, committed=committed)
        state.holds[ask.payment_id] = Hold(amount=ask.amount, since=workflow.now())
        return HoldAnswer(granted=True, committed=committed)

    @workflow.signal
    def release(self, release: Release) -> None:
        """A held payment ended: settled in a block (its amount counts until balance reads show
        it), or nothing moved (its amount is free again). Unknown payments are not released."""
        hold = self.state.holds.pop(release.payment_id, None)
        if hold is not None and release.settled_block is not None:
            self.state.spent[release.payment_id] = Spent(
                amount=hold.amount, block=release.settled_block, at=workflow.now()
            )
        self.changes += 1

    @workflow.query
    def status(self) -> PayerStatus:
        state = self.state
        return PayerStatus(
            payer=state.payer,
            asset=state.asset,
            chain_id=state.chain_id,
            held=sum(hold.amount for hold in state.holds.values()),
            holds=len(state.holds),
            spent_unseen=sum(spent.amount for spent in state.spent.values()),
        )
