"""Payments reconciliation: the ledger against the token's ``AuthorizationUsed`` events.

End to end on the real dev server and anvil (a payment through the gateway, then the ledger or
the chain changed behind agentfleet's back), the workflow's batching, recheck and caps with test
doubles on the time-skipping server, and the pure comparison."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from eth_account import Account
from sqlmodel import col, select
from temporalio import activity
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from activities.reconcile import AUTHORIZATION_USED, TRANSFER, pair_settlements
from agentfleet import db, taskqueues
from agentfleet.chain.accounts import dev_account
from agentfleet.chain.deployment.manifest import load_deployment
from agentfleet.chain.eip3009 import random_nonce, sign_transfer_authorization
from agentfleet.models import AuditEvent, PaymentRecord
from agentfleet.operations.alerts import Alert, AlertBatch
from agentfleet.payments.reconcile import (
    AUDIT_CHECKPOINT,
    AUDIT_FINDING,
    MAX_FINDINGS,
    FindingKind,
    LedgerEntries,
    LedgerEntry,
    LedgerQuery,
    OnChainSettlement,
    ReconcileRecord,
    ReconcileReport,
    ReconcileRequest,
    ReconcileScope,
    SettlementBatch,
    SettlementQuery,
    compare,
    settlement_payment_id,
)
from clients.reconcile import run_reconciliation, start_reconciliation
from clients.schedules import (
    RECONCILE_SCHEDULE_ID,
    describe_schedule,
    ensure_reconcile_schedule,
    pause_schedule,
    trigger_schedule,
)
from tests.replay import record_history
from tests.test_payments import PRICE, Market, market
from workers.main import WORKFLOW_RUNNER
from workflows.reconcile import ReconcilePaymentsWorkflow

__all__ = ["market"]  # the fixture, imported to be used here

ASSET = "0x5FbDB2315678afecb367f032d93F642f64180aa3"
PAYER = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"
SELLER = "0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC"
FABRICATED_PAYER = "0x000000000000000000000000000000000000dEaD"


def settlement(nonce: int, amount: int = 10_000, block: int = 100) -> OnChainSettlement:
    hex_nonce = f"0x{nonce:064x}"
    return OnChainSettlement(
        payment_id=settlement_payment_id(31337, ASSET, PAYER, hex_nonce),
        authorizer=PAYER,
        nonce=hex_nonce,
        tx_hash=f"0x{nonce:064x}",
        block_number=block,
        log_index=0,
        pay_to=SELLER,
        amount=amount,
    )


def row_of(s: OnChainSettlement, **changes: Any) -> LedgerEntry:
    row = LedgerEntry(
        payment_id=s.payment_id,
        status="settled",
        amount=str(s.amount),
        payer=s.authorizer,
        pay_to=(s.pay_to or "").lower(),
        tx_hash=s.tx_hash.upper().replace("0X", "0x"),
        block_number=s.block_number,
    )
    return row.model_copy(update=changes)


def kinds(findings: Any) -> list[tuple[FindingKind, str]]:
    return [(f.kind, f.payment_id) for f in findings]


def test_compare_matches_a_ledger_that_agrees_with_the_chain() -> None:
    paid = [settlement(1), settlement(2, amount=5)]
    found = compare(paid, [row_of(s) for s in paid], 90, 110)
    assert found.findings == [] and found.matched == 2


def test_compare_flags_each_kind_of_difference() -> None:
    outside, lost_status, wrong_tx, short, elsewhere, ok = (settlement(n) for n in range(1, 7))
    fabricated = row_of(settlement(7), block_number=105)
    before_range = row_of(settlement(8), block_number=50)
    rows = [
        row_of(lost_status, status="skill_failed", tx_hash=None),
        row_of(wrong_tx, tx_hash="0x" + "ab" * 32),
        row_of(short, amount="9999"),
        row_of(elsewhere, pay_to="0x000000000000000000000000000000000000bEEF"),
        row_of(ok),
        fabricated,
        before_range,
        row_of(settlement(9), status="rejected", block_number=101),
    ]
    paid = [outside, lost_status, wrong_tx, short, elsewhere, ok]

    found = compare(paid, rows, 90, 110)

    assert kinds(found.findings) == [
        (FindingKind.MISSING_ROW, outside.payment_id),
        (FindingKind.UNKNOWN_SETTLEMENT, lost_status.payment_id),
        (FindingKind.UNKNOWN_SETTLEMENT, wrong_tx.payment_id),
        (FindingKind.AMOUNT_MISMATCH, short.payment_id),
        (FindingKind.AMOUNT_MISMATCH, elsewhere.payment_id),
        (FindingKind.UNKNOWN_SETTLEMENT, fabricated.payment_id),
    ]
    assert found.matched == 1
    missing, _, _, amount, payee, unknown = found.findings
    assert "no row" in missing.detail and missing.chain_amount == 10_000
    assert (amount.chain_amount, amount.ledger_amount) == (10_000, "9999")
    assert "moved 10000 units, the ledger says 9999" in amount.detail
    assert "the ledger says 0x000000000000000000000000000000000000bEEF" in payee.detail
    assert "blocks 90..110" in unknown.detail and unknown.ledger_status == "settled"
    assert kinds(compare(paid[:1], rows).findings) == [
        (FindingKind.MISSING_ROW, outside.payment_id)
    ]


def test_compare_flags_a_transfer_without_amount_and_a_non_numeric_ledger_amount() -> None:
    no_transfer = settlement(1).model_copy(update={"amount": None, "pay_to": None})
    garbled = settlement(2)
    found = compare([no_transfer, garbled], [row_of(no_transfer), row_of(garbled, amount="x")])
    assert [f.kind for f in found.findings] == [FindingKind.AMOUNT_MISMATCH] * 2
    assert "no Transfer" in found.findings[0].detail


def test_settlements_pair_each_authorization_with_its_transfer() -> None:
    def topic(address: str) -> str:
        return "0x" + "0" * 24 + address[2:].lower()

    nonce = "0x" + "11" * 32
    tx, other_tx = "0x" + "aa" * 32, "0x" + "bb" * 32
    logs = [
        {
            "blockNumber": 7,
            "logIndex": 1,
            "transactionHash": tx,
            "topics": [TRANSFER, topic(PAYER), topic(SELLER)],
            "data": hex(42),
        },
        {
            "blockNumber": 7,
            "logIndex": 0,
            "transactionHash": tx,
            "topics": [AUTHORIZATION_USED, topic(PAYER), nonce],
            "data": "0x",
        },
        {
            "blockNumber": 8,
            "logIndex": 0,
            "transactionHash": other_tx,
            "topics": [AUTHORIZATION_USED, topic(SELLER), "0x" + "22" * 32],
            "data": "0x",
        },
    ]
    first, lone = pair_settlements(31337, ASSET, logs)
    assert first.payment_id == settlement_payment_id(31337, ASSET, PAYER, nonce)
    assert (first.authorizer, first.pay_to, first.amount, first.tx_hash) == (PAYER, SELLER, 42, tx)
    assert (lone.authorizer, lone.amount, lone.pay_to, lone.block_number) == (SELLER, None, None, 8)


def test_request_refuses_a_range_that_ends_before_it_starts() -> None:
    try:
        ReconcileRequest(from_block=10, to_block=9)
    except ValueError as exc:
        assert "before from_block" in str(exc)
    else:
        raise AssertionError("accepted")


class FakeFleet:
    """Test doubles of the reconciliation activities: a chain of ``blocks`` with settlements
    in some of them, and a ledger the test fills (rows may appear while the workflow waits)."""

    def __init__(self, head: int, on_chain: dict[int, list[OnChainSettlement]]) -> None:
        self.head = head
        self.on_chain = on_chain
        self.ledger: dict[str, LedgerEntry] = {}
        self.late: dict[str, LedgerEntry] = {}
        """Rows written right after a read that found them missing (a saga finishing)."""
        self.chain_calls: list[SettlementQuery] = []
        self.ledger_calls: list[LedgerQuery] = []
        self.flagged: list[ReconcileRecord] = []
        self.alerts: list[Alert] = []

    def activities(self) -> list[Callable[..., Any]]:
        @activity.defn(name="reconcile_scope")
        async def reconcile_scope() -> ReconcileScope:
            return ReconcileScope(
                chain_id=31337,
                asset=ASSET,
                deployed_block=10,
                deployed_at="2026-01-01T00:00:00+00:00",
                resume_from=10,
            )

        @activity.defn(name="read_authorizations_used")
        async def read_authorizations_used(query: SettlementQuery) -> SettlementBatch:
            self.chain_calls.append(query)
            target = min(self.head, query.to_block if query.to_block is not None else self.head)
            target = min(target, query.from_block + query.max_blocks - 1)
            found: list[OnChainSettlement] = []
            block = query.from_block
            while block <= target and len(found) < query.max_events:
                found += self.on_chain.get(block, [])
                block += 1
            return SettlementBatch(
                from_block=query.from_block,
                to_block=block - 1,
                target_to_block=target,
                head=self.head,
                settlements=found,
            )

        @activity.defn(name="read_ledger_rows")
        async def read_ledger_rows(query: LedgerQuery) -> LedgerEntries:
            self.ledger_calls.append(query)
            rows = [self.ledger[i] for i in query.payment_ids if i in self.ledger]
            for missing in set(query.payment_ids) & set(self.late):
                self.ledger[missing] = self.late.pop(missing)
            return LedgerEntries(rows=rows)

        @activity.defn(name="flag_payment_discrepancies")
        async def flag_payment_discrepancies(record: ReconcileRecord) -> int:
            self.flagged.append(record)
            return len(record.report.findings)

        @activity.defn(name="raise_alerts")
        async def raise_alerts(batch: AlertBatch) -> None:
            self.alerts.extend(batch.alerts)

        return [
            reconcile_scope,
            read_authorizations_used,
            read_ledger_rows,
            flag_payment_discrepancies,
            raise_alerts,
        ]

    async def run(self, env: WorkflowEnvironment, request: ReconcileRequest) -> ReconcileReport:
        client = env.client
        async with (
            Worker(
                client,
                task_queue=taskqueues.WORKFLOWS,
                workflows=[ReconcilePaymentsWorkflow],
                workflow_runner=WORKFLOW_RUNNER,
            ),
            Worker(client, task_queue=taskqueues.IO, activities=self.activities()),
            Worker(client, task_queue=taskqueues.CHAIN, activities=self.activities()),
        ):
            report: ReconcileReport = await client.execute_workflow(
                ReconcilePaymentsWorkflow.run,
                request,
                id=f"reconcile-test-{uuid.uuid4().hex[:8]}",
                task_queue=taskqueues.WORKFLOWS,
            )
        return report


async def test_batches_cover_the_range_and_a_row_written_meanwhile_is_not_reported(
    time_skipping_env: WorkflowEnvironment,
) -> None:
    paid = {block: [settlement(block, block=block)] for block in (10, 11, 12, 14)}
    fake = FakeFleet(head=15, on_chain=paid)
    fake.ledger = {paid[b][0].payment_id: row_of(paid[b][0]) for b in (10, 11, 14)}
    fake.late = {paid[12][0].payment_id: row_of(paid[12][0])}

    report = await fake.run(time_skipping_env, ReconcileRequest(max_events=2))

    assert (report.from_block, report.to_block, report.head, report.behind) == (10, 15, 15, 0)
    assert report.clean and (report.settlements, report.matched) == (4, 4), report.findings
    assert [(q.from_block, q.to_block) for q in fake.chain_calls] == [
        (10, None),
        (12, 15),
        (15, 15),
    ]
    assert [len(q.payment_ids) for q in fake.ledger_calls] == [2, 2, 1, 0], "12 read again"
    [record] = fake.flagged
    assert record.report == report and report.checkpoint is True


async def test_findings_are_capped_and_counted_and_the_range_capped(
    time_skipping_env: WorkflowEnvironment,
) -> None:
    outside = {20: [settlement(n, block=20) for n in range(MAX_FINDINGS + 50)]}
    fake = FakeFleet(head=1_000, on_chain=outside)

    report = await fake.run(
        time_skipping_env, ReconcileRequest(from_block=20, max_blocks=100, recheck_after_s=0)
    )

    assert (report.from_block, report.to_block, report.behind) == (20, 119, 881)
    assert report.counts == {FindingKind.MISSING_ROW: MAX_FINDINGS + 50}
    assert len(report.findings) == MAX_FINDINGS and report.truncated
    assert report.checkpoint is False and len(fake.ledger_calls) == 1
    assert [a.key for a in fake.alerts] == [f.payment_id for f in report.findings]


async def reconcile(market: Market, **fields: Any) -> tuple[ReconcileReport, str]:
    request = ReconcileRequest(recheck_after_s=fields.pop("recheck_after_s", 0), **fields)
    handle = await start_reconciliation(market.client, market.settings, request)
    return await handle.result(), handle.id


def update_row(market: Market, payment_id: str, **changes: Any) -> None:
    with db.session_scope(market.settings.effective_database_url) as session:
        row = session.get(PaymentRecord, payment_id)
        assert row is not None
        for name, value in changes.items():
            setattr(row, name, value)
        session.add(row)
        session.commit()


def audit(market: Market, kind: str) -> list[AuditEvent]:
    with db.session_scope(market.settings.effective_database_url) as session:
        return list(
            session.exec(
                select(AuditEvent).where(AuditEvent.kind == kind).order_by(col(AuditEvent.id))
            ).all()
        )


def pay_outside_agentfleet(market: Market, value: int) -> tuple[str, int]:
    """A ``transferWithAuthorization`` signed and submitted by hand, not through the gateway:
    its payment id and block."""
    payer, payee = dev_account(5), Account.create().address
    signed = sign_transfer_authorization(
        payer.key,
        chain_id=31337,
        token=market.token.address,
        from_=payer.address,
        to=payee,
        value=value,
        valid_after=0,
        valid_before=int(time.time()) + 300,
        nonce=random_nonce(),
    )
    tx = market.token.functions.transferWithAuthorization(*signed.bytes_args()).transact(
        {"from": dev_account(9).address}
    )
    receipt = market.w3.eth.wait_for_transaction_receipt(tx)
    assert receipt["status"] == 1
    pid = settlement_payment_id(31337, market.token.address, payer.address, signed.nonce)
    return pid, int(receipt["blockNumber"])


async def pay_through_gateway(market: Market) -> PaymentRecord:
    async with market.http(dev_account(7)) as http:
        response = await http.post(market.path, json={"symbol": "ETHUSDT"})
    assert response.status_code == 200, response.text
    [row] = market.ledger()
    assert row.status == "settled"
    return row


def deployed_block(market: Market) -> int:
    deployment = load_deployment(market.settings)
    assert deployment is not None
    return deployment.contracts["FleetUSD"].block


async def test_reconciliation_flags_what_differs_between_the_ledger_and_the_chain(
    market: Market,
) -> None:
    row = await pay_through_gateway(market)
    start = deployed_block(market)

    clean, _ = await reconcile(market, from_block=start)
    assert clean.clean, clean.findings
    assert (clean.settlements, clean.matched, clean.ledger_rows) == (1, 1, 1)
    assert (clean.from_block, clean.to_block) == (start, market.w3.eth.block_number)

    update_row(market, row.payment_id, amount="1")
    fabricated = PaymentRecord(
        payment_id=settlement_payment_id(
            31337, market.token.address, FABRICATED_PAYER, "0x" + "9" * 64
        ),
        chain_id=31337,
        asset=market.token.address,
        nonce="0x" + "9" * 64,
        payer=FABRICATED_PAYER,
        pay_to=market.seller_address,
        amount=str(PRICE),
        status="settled",
        tx_hash="0x" + "9" * 64,
        block_number=row.block_number,
    )
    with db.session_scope(market.settings.effective_database_url) as session:
        session.add(fabricated)
        session.commit()
    tampered, _ = await reconcile(market, from_block=start)
    assert kinds(tampered.findings) == [
        (FindingKind.AMOUNT_MISMATCH, row.payment_id),
        (FindingKind.UNKNOWN_SETTLEMENT, fabricated.payment_id),
    ]
    mismatch = tampered.findings[0]
    assert (mismatch.chain_amount, mismatch.ledger_amount, mismatch.tx_hash) == (
        PRICE,
        "1",
        row.tx_hash,
    )
    update_row(market, row.payment_id, amount=str(PRICE), status="skill_failed")
    update_row(market, fabricated.payment_id, status="rejected")
    not_settled, _ = await reconcile(market, from_block=start)
    assert kinds(not_settled.findings) == [(FindingKind.UNKNOWN_SETTLEMENT, row.payment_id)]
    update_row(market, row.payment_id, status="settled")

    outside, outside_block = pay_outside_agentfleet(market, 123_456)
    found, _ = await reconcile(market, from_block=start)
    assert kinds(found.findings) == [(FindingKind.MISSING_ROW, outside)]
    assert found.findings[0].chain_amount == 123_456
    assert found.findings[0].block_number == outside_block
    assert (found.settlements, found.matched) == (2, 1)

    with db.session_scope(market.settings.effective_database_url) as session:
        session.delete(session.get(PaymentRecord, row.payment_id))
        session.commit()
    lost, lost_id = await reconcile(market, from_block=start, recheck_after_s=1)
    assert sorted(kinds(lost.findings)) == sorted(
        [(FindingKind.MISSING_ROW, outside), (FindingKind.MISSING_ROW, row.payment_id)]
    )
    assert lost.counts == {FindingKind.MISSING_ROW: 2} and lost.matched == 0
    handle = market.client.get_workflow_handle(lost_id)
    assert await (await handle.describe()).memo() == {
        "blocks": f"{start}..{lost.to_block}",
        "findings": 2,
    }

    flagged = audit(market, AUDIT_FINDING)
    assert sorted((e.detail["kind"], e.subject) for e in flagged) == sorted(
        [
            ("amount_mismatch", row.payment_id),
            ("unknown_settlement", fabricated.payment_id),
            ("unknown_settlement", row.payment_id),
            ("missing_row", outside),
            ("missing_row", row.payment_id),
        ]
    ), "each discrepancy flagged once, however many runs found it"
    assert audit(market, AUDIT_CHECKPOINT) == [], "runs given a range move no checkpoint"
    backend = (
        "postgresql" if market.settings.effective_database_url.startswith("post") else "sqlite"
    )
    await record_history(handle, f"reconcile_payments_{backend}")


async def test_each_scheduled_run_continues_after_the_last_one(market: Market) -> None:
    settings, client = market.settings, market.client
    first = await run_reconciliation(client, settings, ReconcileRequest(recheck_after_s=0))
    assert first.checkpoint and first.clean
    assert (first.from_block, first.to_block) == (
        deployed_block(market),
        market.w3.eth.block_number,
    )

    outside, block = pay_outside_agentfleet(market, 7)
    second = await run_reconciliation(client, settings, ReconcileRequest(recheck_after_s=0))
    assert (second.from_block, second.to_block) == (first.to_block + 1, block)
    assert kinds(second.findings) == [(FindingKind.MISSING_ROW, outside)]
    checkpoints = [e.detail["to_block"] for e in audit(market, AUDIT_CHECKPOINT)]
    assert checkpoints == [first.to_block, second.to_block]

    try:
        view = await ensure_reconcile_schedule(client, every=timedelta(hours=1))
        assert (view.id, view.workflow, view.every) == (
            RECONCILE_SCHEDULE_ID,
            "ReconcilePaymentsWorkflow",
            "1h",
        )
        await pause_schedule(client, RECONCILE_SCHEDULE_ID, "kept")
        again = await ensure_reconcile_schedule(client, every=timedelta(hours=1))
        assert (again.state, again.note) == ("paused", "kept")
        await trigger_schedule(client, RECONCILE_SCHEDULE_ID)
        done = await until_completed(client)
        scheduled: ReconcileReport = await client.get_workflow_handle(
            done, result_type=ReconcileReport
        ).result()
        assert scheduled.checkpoint and scheduled.from_block == second.to_block + 1
        assert scheduled.clean and scheduled.workflow_id == done
        assert done.startswith("schedule-reconcile-payments")
    finally:
        await cleanup_schedule(client)


async def until_completed(client: Client) -> str:
    for _ in range(300):
        view = await describe_schedule(client, RECONCILE_SCHEDULE_ID)
        if view.last_result == "completed" and view.last_workflow_id:
            return view.last_workflow_id
        await asyncio.sleep(0.1)
    raise AssertionError(f"the scheduled run did not complete: {view!r}")


async def cleanup_schedule(client: Client) -> None:
    """Delete the schedule and stop what it started (nothing leaks into later tests)."""
    handle = client.get_schedule_handle(RECONCILE_SCHEDULE_ID)
    try:
        running = (await handle.describe()).info.running_actions
        await handle.delete()
    except Exception:  # noqa: BLE001 - never created
        return
    for action in running:
        workflow = client.get_workflow_handle(getattr(action, "workflow_id", ""))
        if (await workflow.describe()).status is WorkflowExecutionStatus.RUNNING:
            await workflow.terminate("test over")
