"""BotLifecycleWorkflow: one durable entity per bot (``bot-{name}``).

provisioning (wallet, funds) -> registering (ERC-8004) -> active <-> paused -> retiring -> retired,
plus failed (with the reason; the ``retry`` update resumes at the failed step) and degraded (set by
health checks). Every step is an activity or a child TransactionWorkflow, so a crash anywhere
resumes where it stopped: the wallet is generated once per bot, funding and registration are
transactions keyed by the bot's incarnation, and the registry is looked up before registering.
Commands are updates with validators (bad input is rejected and changes nothing), ``status`` and
``history`` are queries, and BotName/BotKind/BotStatus/BotOwner keep the Web UI's filters current.
As a buyer the entity owns its daily budget: ``hold_spending`` (an update answered at once)
grants or refuses a purchase's hold, ``settle_spending`` and ``release_spending`` (signals) end it,
``spending`` (a query) shows the day (see agentfleet.payments.spending). An agent bot's runs hold
their model calls and purchases the same way against ``budget.per_day`` (``hold_budget``,
``spend_budget``, ``release_budget``, ``agent_budget``).

Why one module over 450 lines: the entity is one state machine, and every command's handler and
validator guards the same state; the steps' logic lives in activities and the core already.
"""

from __future__ import annotations

from collections.abc import Awaitable
from datetime import timedelta
from typing import Any, TypeVar

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError

from workflows import calls

with workflow.unsafe.imports_passed_through():
    from activities.identity import IdentityActivities
    from agentfleet import search_attributes
    from agentfleet.bots.model import (
        BotEvent,
        BotHistory,
        BotKind,
        BotLifecycleInput,
        BotRecordUpdate,
        BotState,
        BotStatus,
        BotView,
        ChainContext,
        ConfigureRequest,
        Registration,
        RegistrationQuery,
        RegistrationTx,
        RetireRequest,
        Wallet,
        WalletRequest,
    )
    from agentfleet.bots.params import parse_params
    from agentfleet.messages import TxOrder, TxOutcome, TxRequest, TxStatus
    from agentfleet.netguard import ANY_FLEET
    from agentfleet.payments import spending as budget
    from agentfleet.payments.spending import (
        HoldAnswer,
        SpendingDay,
        SpendingHold,
        SpendingRef,
        SpentAmount,
    )
    from agentfleet.payments.terms import to_units

from workflows.transactions import deepest_cause, run_transaction

HISTORY_LIMIT = 50
RECENT_UPDATES = 500
RETRY = RetryPolicy(maximum_interval=timedelta(seconds=10), maximum_attempts=20)
STEP_TIMEOUT = timedelta(seconds=15)
T = TypeVar("T")
STEP: dict[str, Any] = {"start_to_close_timeout": STEP_TIMEOUT, "retry_policy": RETRY}
"""Each step is a quick call; a worker that dies mid-step is noticed after this long."""
FUNDS_POLL = timedelta(minutes=1)


class StepFailed(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@workflow.defn(name="BotLifecycleWorkflow")
class BotLifecycleWorkflow:
    @workflow.init
    def __init__(self, start: BotLifecycleInput) -> None:
        self.state = start.state or BotState(spec=start.spec, params=dict(start.spec.params))
        self.retire_reason: str | None = None
        self.retry_requested = False
        self.retired = False

    @workflow.run
    async def run(self, start: BotLifecycleInput) -> BotView:
        if self.state.created_at is None:
            self.state.created_at = workflow.now()
            self._event("created", f"{self.state.spec.kind.value} by {self.state.spec.owner}")
        await self._publish("")
        await self._advance()
        while True:
            await workflow.wait_condition(
                lambda: (
                    self.retire_reason is not None
                    or self.retry_requested
                    or workflow.info().is_continue_as_new_suggested()
                )
            )
            if self.retire_reason is not None:
                view = await self._retire(self.retire_reason)
                await workflow.wait_condition(workflow.all_handlers_finished)
                return view
            if self.retry_requested:
                self.retry_requested = False
                await self._advance()
                continue
            await workflow.wait_condition(workflow.all_handlers_finished)
            workflow.continue_as_new(BotLifecycleInput(spec=self.state.spec, state=self.state))

    # -- steps ----------------------------------------------------------------------------

    async def _advance(self) -> None:
        try:
            if self.state.status is BotStatus.PROVISIONING:
                await self._provision()
                await self._set(BotStatus.REGISTERING, "provisioned", self.state.address or "")
            if self.state.status is BotStatus.REGISTERING:
                await self._register()
                await self._set(BotStatus.ACTIVE, "registered", f"agent {self.state.agent_id}")
        except StepFailed as failed:
            self.state.failed_step = self.state.status
            self.state.errors += 1
            await self._set(BotStatus.FAILED, "failed", failed.reason, reason=failed.reason)

    async def _step(self, call: Awaitable[T]) -> T:
        """An activity of a step; its failure fails the step, naming the activity."""
        try:
            return await call
        except ActivityError as err:
            raise StepFailed(f"{err.activity_type}: {deepest_cause(err)}") from err

    async def _transaction(
        self, context: ChainContext, sender: str, request: TxRequest
    ) -> TxOutcome:
        order = TxOrder(chain_id=context.chain_id, sender=sender, request=request)
        outcome = await run_transaction(order)
        if outcome.status is not TxStatus.CONFIRMED:
            raise StepFailed(f"transaction {request.request_id}: {outcome.error or outcome.status}")
        return outcome

    def _key(self, what: str) -> str:
        incarnation = workflow.info().first_execution_run_id.replace("-", "")[:12]
        return f"{what}-{self.state.spec.name}-{incarnation}"

    async def _provision(self) -> None:
        wallet: Wallet = await self._step(
            calls.run(
                IdentityActivities.provision_wallet, WalletRequest(bot=self.state.spec.name), **STEP
            )
        )
        self.state.address = wallet.address
        await self._publish("wallet")
        context: ChainContext = await self._step(
            calls.run(IdentityActivities.chain_context, **STEP)
        )
        if not context.is_dev:
            await self._wait_for_funds(wallet, context)
            return
        if context.funder is None:
            raise StepFailed("no relayer account to fund the bot from")
        query = RegistrationQuery(bot=self.state.spec.name, address=wallet.address, context=context)
        await self._transaction(
            context,
            context.funder,
            TxRequest(request_id=self._key("fund-eth"), to=wallet.address, value=context.fund_wei),
        )
        fusd: RegistrationTx = await self._step(
            calls.run(IdentityActivities.fusd_transfer_tx, query, **STEP)
        )
        await self._transaction(
            context,
            context.funder,
            TxRequest(request_id=self._key("fund-fusd"), to=fusd.to, data=fusd.data),
        )
        self._event("funded", f"{context.fund_wei} wei and {context.fund_fusd_units} fUSD units")

    async def _wait_for_funds(self, wallet: Wallet, context: ChainContext) -> None:
        """On a real chain the operator funds the bot; say so and look again every minute."""
        while True:
            balance: int = await self._step(
                calls.run(IdentityActivities.native_balance, wallet, **STEP)
            )
            if balance > 0:
                return
            self.state.reason = f"waiting for gas: send native tokens to {wallet.address}"
            await self._publish("")
            await workflow.sleep(FUNDS_POLL)

    async def _register(self) -> None:
        context: ChainContext = await self._step(
            calls.run(IdentityActivities.chain_context, **STEP)
        )
        address = self.state.address or ""
        query = RegistrationQuery(bot=self.state.spec.name, address=address, context=context)
        found: Registration = await self._step(
            calls.run(IdentityActivities.find_registration, query, **STEP)
        )
        if found.agent_id is None:
            tx: RegistrationTx = await self._step(
                calls.run(IdentityActivities.registration_tx, query, **STEP)
            )
            await self._transaction(
                context,
                address,
                TxRequest(request_id=self._key("register"), to=tx.to, data=tx.data),
            )
            found = await self._step(calls.run(IdentityActivities.find_registration, query, **STEP))
        if found.agent_id is None:
            raise StepFailed("registered, but the registry does not list the agent")
        if (found.agent_wallet or "").lower() != address.lower():
            raise StepFailed(f"agent wallet is {found.agent_wallet}, expected {address}")
        self.state.agent_id = found.agent_id

    async def _retire(self, reason: str) -> BotView:
        await self._set(BotStatus.RETIRING, "retiring", reason, reason=reason)
        await self._step(
            calls.run(
                IdentityActivities.delete_bot_schedules,
                WalletRequest(bot=self.state.spec.name),
                **STEP,
            )
        )
        await self._set(BotStatus.RETIRED, "retired", reason, reason=reason)
        self.retired = True
        return self._view()

    # -- state, records, search attributes ------------------------------------------------

    def _event(self, event: str, detail: str = "") -> None:
        self.state.history.append(BotEvent(at=workflow.now(), event=event, detail=detail))
        del self.state.history[:-HISTORY_LIMIT]

    async def _set(
        self, status: BotStatus, event: str, detail: str = "", *, reason: str | None = None
    ) -> None:
        self.state.status = status
        self.state.reason = reason
        self._event(event, detail)
        await self._publish(event)

    async def _publish(self, event: str) -> None:
        """Search attributes and memo now; the ``bots`` row and audit trail through an activity."""
        spec = self.state.spec
        workflow.upsert_search_attributes(
            [
                search_attributes.BOT_NAME.value_set(spec.name),
                search_attributes.BOT_KIND.value_set(spec.kind.value),
                search_attributes.BOT_STATUS.value_set(self.state.status.value),
                search_attributes.BOT_OWNER.value_set(spec.owner),
            ]
        )
        workflow.upsert_memo({"description": spec.description, "wallet": self.state.address})
        await calls.run(
            IdentityActivities.record_bot,
            BotRecordUpdate(
                name=spec.name,
                kind=spec.kind,
                owner=spec.owner,
                status=self.state.status,
                description=spec.description,
                params=self.state.params,
                address=self.state.address,
                agent_id=self.state.agent_id,
                reason=self.state.reason,
                model_version=self.state.model_version,
                event=event,
                workflow_id=workflow.info().workflow_id,
            ),
            start_to_close_timeout=timedelta(seconds=30),
            retry_policy=RetryPolicy(maximum_interval=timedelta(seconds=10)),
        )

    def _view(self) -> BotView:
        spec = self.state.spec
        return BotView(
            name=spec.name,
            kind=spec.kind,
            owner=spec.owner,
            description=spec.description,
            disclosure=spec.disclosure,
            status=self.state.status,
            reason=self.state.reason,
            params=self.state.params,
            address=self.state.address,
            agent_id=self.state.agent_id,
            model_version=self.state.model_version,
            created_at=self.state.created_at,
            commands_handled=self.state.commands_handled,
            errors=self.state.errors,
        )

    # -- commands ---------------------------------------------------------------------------

    def _first_delivery(self) -> bool:
        """False for an update this entity (in this or an earlier run) already applied."""
        info = workflow.current_update_info()
        if info is None:
            return True
        if info.id in self.state.recent_updates:
            return False
        self.state.recent_updates.append(info.id)
        del self.state.recent_updates[:-RECENT_UPDATES]
        self.state.commands_handled += 1
        return True

    def _reject_unless(self, allowed: set[BotStatus], action: str) -> None:
        if self.state.status not in allowed or self.retire_reason is not None:
            status = "retiring" if self.retire_reason else self.state.status.value
            names = ", ".join(sorted(s.value for s in allowed))
            raise ApplicationError(
                f"bot {self.state.spec.name} is {status}; {action} needs it {names}",
                type="InvalidState",
            )

    @workflow.update
    async def pause(self) -> BotView:
        if not self._first_delivery():
            return self._view()
        await self._set(BotStatus.PAUSED, "paused")
        return self._view()

    @pause.validator
    def _validate_pause(self) -> None:
        self._reject_unless({BotStatus.ACTIVE, BotStatus.DEGRADED}, "pause")

    @workflow.update
    async def resume(self) -> BotView:
        if not self._first_delivery():
            return self._view()
        await self._set(BotStatus.ACTIVE, "resumed")
        return self._view()

    @resume.validator
    def _validate_resume(self) -> None:
        self._reject_unless({BotStatus.PAUSED}, "resume")

    @workflow.update
    async def configure(self, request: ConfigureRequest) -> BotView:
        if not self._first_delivery():
            return self._view()
        merged = {**self.state.params, **request.params}
        self.state.params = parse_params(self.state.spec.kind, merged).model_dump(mode="json")
        self._event("configured", ", ".join(f"{k}={v}" for k, v in sorted(request.params.items())))
        await self._publish("configured")
        return self._view()

    @configure.validator
    def _validate_configure(self, request: ConfigureRequest) -> None:
        self._reject_unless(
            {BotStatus.ACTIVE, BotStatus.PAUSED, BotStatus.DEGRADED, BotStatus.FAILED},
            "configure",
        )
        try:
            parse_params(
                self.state.spec.kind,
                {**self.state.params, **request.params},
                urls=request.urls or ANY_FLEET,
            )
        except ValueError as exc:
            raise ApplicationError(str(exc), type="InvalidParams") from None

    @workflow.update
    async def retire(self, request: RetireRequest) -> BotView:
        if not self._first_delivery():
            await workflow.wait_condition(lambda: self.retired)
            return self._view()
        self.retire_reason = request.reason
        await workflow.wait_condition(lambda: self.retired)
        return self._view()

    @retire.validator
    def _validate_retire(self, request: RetireRequest) -> None:
        self._reject_unless(
            {
                BotStatus.ACTIVE,
                BotStatus.PAUSED,
                BotStatus.DEGRADED,
                BotStatus.FAILED,
            },
            "retire",
        )

    @workflow.update
    async def retry(self) -> BotView:
        if not self._first_delivery():
            return self._view()
        step = self.state.failed_step or BotStatus.PROVISIONING
        self.state.failed_step = None
        await self._set(step, "retrying", f"at {step.value}")
        self.retry_requested = True
        await workflow.wait_condition(
            lambda: (
                not self.retry_requested
                and self.state.status not in (BotStatus.PROVISIONING, BotStatus.REGISTERING)
            )
        )
        return self._view()

    @retry.validator
    def _validate_retry(self) -> None:
        self._reject_unless({BotStatus.FAILED}, "retry")

    @workflow.update
    def hold_spending(self, hold: SpendingHold) -> HoldAnswer:
        """Hold a purchase's amount of today's budget, or refuse it (answered at once)."""
        self.state.spending = budget.day_of(self.state.spending, hold)
        return budget.decide(
            self.state.spending, hold, self.state.spec.name, self._daily_limit() or 0
        )

    @hold_spending.validator
    def _validate_hold_spending(self, hold: SpendingHold) -> None:
        self._validate_hold(hold, self._daily_limit(), "buy skills")

    def _validate_hold(self, hold: SpendingHold, limit: int | None, what: str) -> None:
        self._reject_unless({BotStatus.ACTIVE, BotStatus.DEGRADED}, "spending")
        if limit is None:
            raise ApplicationError(
                f"a {self.state.spec.kind.value} bot does not {what}", type="InvalidParams"
            )
        today = workflow.now().date()
        if hold.day != today:
            raise ApplicationError(
                f"the ledger figure is for {hold.day}, bot {self.state.spec.name}'s day is "
                f"{today}; read it again",
                type="StaleDay",
            )

    def _daily_limit(self) -> int | None:
        """``spending.per_day`` in token units from the entity's own parameters, if it buys."""
        policy = getattr(parse_params(self.state.spec.kind, self.state.params), "spending", None)
        return None if policy is None else to_units(policy.per_day)

    @workflow.signal
    def settle_spending(self, ref: SpendingRef) -> None:
        """A held purchase settled: its hold is spent."""
        budget.settle(self.state.spending, ref)

    @workflow.signal
    def release_spending(self, ref: SpendingRef) -> None:
        """A held purchase paid nothing: its hold is dropped."""
        budget.release(self.state.spending, ref)

    @workflow.update
    def hold_budget(self, hold: SpendingHold) -> HoldAnswer:
        """An agent's model call or purchase holds its cost of today's budget, which counts
        tokens and purchases together (``budget.per_day``), or is refused (answered at once)."""
        self.state.budget = budget.day_of(self.state.budget, hold)
        return budget.decide(
            self.state.budget, hold, self.state.spec.name, self._budget_limit() or 0
        )

    @hold_budget.validator
    def _validate_hold_budget(self, hold: SpendingHold) -> None:
        self._validate_hold(hold, self._budget_limit(), "run as an agent")

    def _budget_limit(self) -> int | None:
        """``budget.per_day`` in token units, for an agent."""
        limits = getattr(parse_params(self.state.spec.kind, self.state.params), "budget", None)
        return None if limits is None else to_units(limits.per_day)

    @workflow.signal
    def spend_budget(self, spent: SpentAmount) -> None:
        """A held model call or purchase ended costing ``spent.amount``."""
        budget.settle_amount(self.state.budget, spent)

    @workflow.signal
    def release_budget(self, ref: SpendingRef) -> None:
        """A held model call or purchase cost nothing: its hold is dropped."""
        budget.release(self.state.budget, ref)

    @workflow.signal
    async def health(self, report: BotEvent) -> None:
        """A health check's verdict: ``degraded`` with the reason, or ``recovered``."""
        if report.event == "degraded" and self.state.status is BotStatus.ACTIVE:
            await self._set(BotStatus.DEGRADED, "degraded", report.detail, reason=report.detail)
        elif report.event == "recovered" and self.state.status is BotStatus.DEGRADED:
            await self._set(BotStatus.ACTIVE, "recovered", report.detail)

    @workflow.signal
    def note(self, event: BotEvent) -> None:
        """Fire-and-forget events (e.g. the model version a learning round promoted)."""
        if event.event == "model" and event.detail:
            self.state.model_version = event.detail
        self._event(event.event, event.detail)

    @workflow.query
    def status(self) -> BotView:
        return self._view()

    @workflow.query
    def history(self) -> BotHistory:
        return BotHistory(events=list(self.state.history))

    @workflow.query
    def spending(self) -> SpendingDay | None:
        """Today's budget as a buyer (None before its first purchase)."""
        return self.state.spending

    @workflow.query
    def agent_budget(self) -> SpendingDay | None:
        """Today's budget as an agent (tokens and purchases; None before its first hold)."""
        return self.state.budget


__all__ = ["BotKind", "BotLifecycleWorkflow"]
