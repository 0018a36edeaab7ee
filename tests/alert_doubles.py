"""Test doubles for the alert sources (kept apart: the workflow sandbox re-imports this module).

Health runs and reconciliation runs reach their alert paths here without a chain: their
activities are replaced by doubles registered under the same names (Temporal's own mocking
seam), and the bots they signal are :class:`StandInBot` entities.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from temporalio import activity, workflow
from temporalio.common import RawValue

with workflow.unsafe.imports_passed_through():
    from agentfleet import taskqueues
    from agentfleet.bots.health import (
        BotHealth,
        FleetHealthSummary,
        HealthBatch,
        HealthBatchResult,
        HealthCheck,
        HealthTarget,
        HealthTargets,
        ModelHealth,
        ModelRollback,
    )
    from agentfleet.bots.model import BotKind, BotRef, BotStatus, ChainContext
    from agentfleet.messages import TxOrder, TxOutcome, TxStatus
    from agentfleet.payments.model import (
        Authorization,
        Payment,
        PaymentOrder,
        PaymentView,
        Verified,
        VerifyRequest,
        payment_id,
    )
    from agentfleet.payments.reconcile import (
        LedgerEntries,
        LedgerEntry,
        LedgerQuery,
        ReconcileRecord,
        ReconcileScope,
        SettlementBatch,
        SettlementQuery,
    )
    from agentfleet.payments.terms import Terms

ASSET = "0x" + "ab" * 20
LOST_PAYMENT = f"payment-31337-{ASSET}-0x{'cd' * 20}-0x{'01' * 32}"


@workflow.defn(name="StandInBot")
class StandInBot:
    """A bot entity that takes any signal (the health run's ``health``, ``note``) and waits."""

    @workflow.run
    async def run(self) -> None:
        await workflow.wait_condition(lambda: False)

    @workflow.signal(dynamic=True)
    def any_signal(self, name: str, args: Sequence[RawValue]) -> None:
        del name, args


def health_doubles(bots: list[str]) -> dict[str, list[Any]]:
    """Every bot of ``bots`` is active, out of gas; the digits champion did worse than its
    parent and is rolled back."""

    @activity.defn(name="health_targets")
    async def health_targets(check: HealthCheck) -> HealthTargets:
        return HealthTargets(
            bots=[
                HealthTarget(
                    bot=BotRef(name=name, kind=BotKind.FORECASTER, status=BotStatus.ACTIVE),
                    address="0x" + "11" * 20,
                    agent_id=1,
                )
                for name in bots
            ]
        )

    @activity.defn(name="chain_context")
    async def chain_context() -> ChainContext:
        return ChainContext(
            chain_id=31337, is_dev=True, fleet_usd=ASSET, identity_registry="0x" + "22" * 20
        )

    @activity.defn(name="check_bots_health")
    async def check_bots_health(batch: HealthBatch) -> HealthBatchResult:
        return HealthBatchResult(
            results=[
                BotHealth(
                    name=target.bot.name,
                    status=BotStatus.ACTIVE,
                    healthy=False,
                    reasons=["gas: 0 native left, below the 0.001 minimum"],
                )
                for target in batch.targets
            ]
        )

    @activity.defn(name="check_models")
    async def check_models(check: HealthCheck) -> ModelHealth:
        return ModelHealth(
            checked=["digits"],
            rolled_back=[
                ModelRollback(
                    task="digits",
                    from_version="digits-v3",
                    to_version="digits-v2",
                    reason="accuracy 0.81 < 0.93",
                )
            ],
        )

    @activity.defn(name="report_health")
    async def report_health(summary: FleetHealthSummary) -> None:
        del summary

    return {
        taskqueues.IO: [health_targets, chain_context, report_health],
        taskqueues.CHAIN: [check_bots_health],
        taskqueues.LLM: [check_models],
    }


def reconcile_doubles() -> dict[str, list[Any]]:
    """Blocks 1..10 hold no settlement, but the ledger says ``LOST_PAYMENT`` settled in block 5."""

    @activity.defn(name="reconcile_scope")
    async def reconcile_scope() -> ReconcileScope:
        return ReconcileScope(
            chain_id=31337, asset=ASSET, deployed_block=1, deployed_at="0x", resume_from=1
        )

    @activity.defn(name="read_authorizations_used")
    async def read_authorizations_used(query: SettlementQuery) -> SettlementBatch:
        return SettlementBatch(from_block=1, to_block=10, target_to_block=10, head=10)

    @activity.defn(name="read_ledger_rows")
    async def read_ledger_rows(query: LedgerQuery) -> LedgerEntries:
        row = LedgerEntry(
            payment_id=LOST_PAYMENT,
            status="settled",
            amount="1000",
            payer="0x" + "cd" * 20,
            pay_to="0x" + "ef" * 20,
            tx_hash="0x" + "99" * 32,
            block_number=5,
        )
        return LedgerEntries(rows=[row])

    @activity.defn(name="flag_payment_discrepancies")
    async def flag_payment_discrepancies(record: ReconcileRecord) -> None:
        del record

    return {
        taskqueues.IO: [reconcile_scope, read_ledger_rows, flag_payment_discrepancies],
        taskqueues.CHAIN: [read_authorizations_used],
    }


def payment_doubles() -> dict[str, list[Any]]:
    """The authorization verifies; the settlement reverts on chain; the ledger write is a
    no-op. Record is the saga's local activity (on the workflows' worker); verify runs on the
    chain queue, as the settlement."""

    @activity.defn(name="verify_payment")
    async def verify_payment(request: VerifyRequest) -> Verified:
        payer = request.payment.authorization.from_
        return Verified(valid=True, payer=payer, relayer="0x" + "33" * 20, calldata="0x")

    @activity.defn(name="record_payment")
    async def record_payment(view: PaymentView) -> None:
        del view

    @activity.defn(name="send_with_relayer")
    async def send_with_relayer(order: TxOrder) -> TxOutcome:
        return TxOutcome(
            request_id=order.request.request_id,
            status=TxStatus.FAILED,
            sender=order.sender,
            nonce=0,
            error="execution reverted: authorization is used or canceled",
        )

    return {
        taskqueues.WORKFLOWS: [record_payment],
        taskqueues.CHAIN: [verify_payment, send_with_relayer],
    }


def failing_payment() -> PaymentOrder:
    terms = Terms(network="eip155:31337", asset=ASSET, amount=1000, pay_to="0x" + "ef" * 20)
    authorization = Authorization(
        from_="0x" + "cd" * 20,
        to=terms.pay_to,
        value=1000,
        valid_after=0,
        valid_before=2**40,
        nonce="0x" + "02" * 32,
        signature="0x" + "00" * 65,
    )
    payment = Payment(x402_version=2, accepted=terms, authorization=authorization, sha256="0" * 64)
    return PaymentOrder(
        payment_id=payment_id(31337, ASSET, authorization), payment=payment, terms=terms
    )
