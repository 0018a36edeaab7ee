"""ReconcilePaymentsWorkflow: the payments ledger compared with the token's on-chain record, run
by the Temporal Schedule ``reconcile-payments`` (each run's id is
``schedule-reconcile-payments-<time>``) or by ``fleet payments reconcile``.

The sequence: ``reconcile_scope`` (fleet-io: the token, its deployment block and the checkpoint)
-> batches until the range is covered: ``read_authorizations_used`` (fleet-chain: the
``AuthorizationUsed`` events with their transfers, ``chunk_blocks`` per log query, up to about
``max_events``) -> ``read_ledger_rows`` (fleet-io: those payments' rows and the rows that say they
settled in the batch's blocks) -> :func:`agentfleet.payments.reconcile.compare`; a missing row is
read again after ``recheck_after_s`` (its saga may be about to write it) -> one
``flag_payment_discrepancies`` (fleet-io: a warning and an audit event per finding, and the run's
summary, which is the next scheduled run's checkpoint) -> when anything differs, one alert per
listed finding (``raise_alerts``, patch ``alerts``). What the finding kinds mean and how the range
is chosen: :mod:`agentfleet.payments.reconcile`."""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

from workflows import calls, patches

with workflow.unsafe.imports_passed_through():
    from activities.reconcile import ReconcileActivities
    from agentfleet.operations.alerts import AlertKind, Severity
    from agentfleet.payments.reconcile import (
        FindingKind,
        LedgerEntries,
        LedgerEntry,
        LedgerQuery,
        ReconcileRecord,
        ReconcileReport,
        ReconcileRequest,
        ReconcileScope,
        SettlementBatch,
        SettlementQuery,
        compare,
    )

from workflows.alerting import new_alert, raise_alerts

SCHEDULE_ID = "reconcile-payments"
WORKFLOW_ID = "schedule-reconcile-payments"
"""The id the schedule's action gives each run (Temporal appends the scheduled time)."""
STEP_RETRY = RetryPolicy(
    maximum_interval=timedelta(seconds=10),
    maximum_attempts=5,
    non_retryable_error_types=["WrongChain", "NoDeployment"],
)
"""A run that cannot reach the chain or the database fails; the next scheduled one retries."""


@workflow.defn(name="ReconcilePaymentsWorkflow")
class ReconcilePaymentsWorkflow:
    @workflow.init
    def __init__(self, request: ReconcileRequest) -> None:
        self.report: ReconcileReport | None = None

    @workflow.query
    def progress(self) -> ReconcileReport | None:
        """The report so far (None until the token and the range are known)."""
        return self.report

    @workflow.run
    async def run(self, request: ReconcileRequest) -> ReconcileReport:
        scope: ReconcileScope = await calls.run(
            ReconcileActivities.reconcile_scope,
            start_to_close_timeout=timedelta(seconds=30),
            retry_policy=STEP_RETRY,
        )
        start = scope.resume_from if request.from_block is None else request.from_block
        report = ReconcileReport(
            chain_id=scope.chain_id,
            asset=scope.asset,
            from_block=start,
            to_block=start - 1,
            checkpoint=request.from_block is None,
            workflow_id=workflow.info().workflow_id,
        )
        self.report = report
        target = request.to_block
        while target is None or report.to_block < target:
            batch = await self._read_chain(request, scope, report.to_block + 1, target)
            target = batch.target_to_block
            report.head = batch.head
            report.to_block = batch.to_block
            if batch.to_block >= batch.from_block:
                await self._compare(request, scope, batch)
            if batch.to_block >= target:
                break
        safe_head = (report.head or 0) - scope.confirmations
        report.behind = max(0, safe_head - report.to_block)
        await calls.run(
            ReconcileActivities.flag_payment_discrepancies,
            ReconcileRecord(report=report, deployed_at=scope.deployed_at),
            start_to_close_timeout=timedelta(seconds=60),
            retry_policy=STEP_RETRY,
        )
        workflow.upsert_memo(
            {
                "blocks": f"{report.from_block}..{report.to_block}",
                "findings": report.total_findings,
            }
        )
        if not report.clean and workflow.patched(patches.ALERTS.id):
            await raise_alerts(
                [
                    new_alert(
                        AlertKind.RECONCILE_DIFFERENCE,
                        finding.payment_id,
                        f"{finding.kind.value}: {finding.detail}",
                        Severity.CRITICAL,
                    )
                    for finding in report.findings
                ]
            )
        if not report.clean:
            workflow.logger.warning(
                "payments reconciliation found %d discrepancies in blocks %d..%d: %s",
                report.total_findings,
                report.from_block,
                report.to_block,
                ", ".join(f"{kind.value} {n}" for kind, n in sorted(report.counts.items())),
            )
        return report

    async def _read_chain(
        self, request: ReconcileRequest, scope: ReconcileScope, start: int, end: int | None
    ) -> SettlementBatch:
        batch: SettlementBatch = await calls.run(
            ReconcileActivities.read_authorizations_used,
            SettlementQuery(
                chain_id=scope.chain_id,
                asset=scope.asset,
                from_block=start,
                to_block=end,
                confirmations=scope.confirmations,
                max_blocks=request.max_blocks,
                chunk_blocks=request.chunk_blocks,
                max_events=request.max_events,
            ),
            start_to_close_timeout=timedelta(minutes=5),
            heartbeat_timeout=timedelta(seconds=60),
            retry_policy=STEP_RETRY,
        )
        return batch

    async def _compare(
        self, request: ReconcileRequest, scope: ReconcileScope, batch: SettlementBatch
    ) -> None:
        assert self.report is not None  # noqa: S101 - set by run before the first batch
        rows = await self._ledger(
            scope,
            [s.payment_id for s in batch.settlements],
            batch.from_block,
            batch.to_block,
        )
        found = compare(batch.settlements, rows, batch.from_block, batch.to_block)
        missing = [f.payment_id for f in found.findings if f.kind is FindingKind.MISSING_ROW]
        if missing and request.recheck_after_s > 0:
            await workflow.sleep(timedelta(seconds=request.recheck_after_s))
            merged = {row.payment_id: row for row in rows}
            merged.update((row.payment_id, row) for row in await self._ledger(scope, missing))
            rows = list(merged.values())
            found = compare(batch.settlements, rows, batch.from_block, batch.to_block)
        self.report.settlements += len(batch.settlements)
        self.report.ledger_rows += len(rows)
        self.report.matched += found.matched
        self.report.add(found.findings)

    async def _ledger(
        self,
        scope: ReconcileScope,
        payment_ids: list[str],
        from_block: int | None = None,
        to_block: int | None = None,
    ) -> list[LedgerEntry]:
        entries: LedgerEntries = await calls.run(
            ReconcileActivities.read_ledger_rows,
            LedgerQuery(
                chain_id=scope.chain_id,
                asset=scope.asset,
                payment_ids=payment_ids,
                from_block=from_block,
                to_block=to_block,
            ),
            start_to_close_timeout=timedelta(seconds=60),
            retry_policy=STEP_RETRY,
        )
        return entries.rows
