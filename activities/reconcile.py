"""Reconciliation activities: the token's ``AuthorizationUsed`` events (with their transfers), the
ledger rows to compare them with, and the flags a human reads (log lines and audit events).

The comparison itself is pure code in :mod:`agentfleet.payments.reconcile`, run by the workflow.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from sqlmodel import col, select
from temporalio import activity
from temporalio.exceptions import ApplicationError
from web3 import Web3

from activities.queues import runs_on
from agentfleet import db, taskqueues
from agentfleet.chain.networks import effective_confirmations
from agentfleet.chain.rpc import Web3Connection
from agentfleet.errors import FleetError
from agentfleet.models import AuditEvent, PaymentRecord
from agentfleet.operations import metrics
from agentfleet.payments.reconcile import (
    AUDIT_ACTOR,
    AUDIT_CHECKPOINT,
    AUDIT_FINDING,
    AUDIT_RANGE,
    USED_ON_CHAIN,
    LedgerEntries,
    LedgerEntry,
    LedgerQuery,
    OnChainSettlement,
    ReconcileRecord,
    ReconcileScope,
    SettlementBatch,
    SettlementQuery,
    payment_id_prefix,
    settlement_payment_id,
)
from agentfleet.settings import Settings

AUTHORIZATION_USED = Web3.keccak(text="AuthorizationUsed(address,bytes32)").to_0x_hex()
TRANSFER = Web3.keccak(text="Transfer(address,address,uint256)").to_0x_hex()
IDS_PER_QUERY = 500


class ReconcileActivities:
    task_queue = taskqueues.IO

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._url = settings.effective_database_url
        self._rpc = Web3Connection(settings.effective_rpc_url)

    async def close(self) -> None:
        await self._rpc.close()

    @activity.defn(name="reconcile_scope")
    def reconcile_scope(self) -> ReconcileScope:
        """FleetUSD of this chain's deployment, and the block after the last scheduled run's."""
        from agentfleet.chain.deployment.manifest import load_deployment

        try:
            deployment = load_deployment(self._settings)
        except FleetError as exc:
            raise ApplicationError(str(exc), type="NoDeployment") from exc
        token = deployment.contracts.get("FleetUSD") if deployment else None
        if deployment is None or token is None:
            raise ApplicationError(
                "no FleetUSD deployment for this chain; run `fleet up` or `fleet chain deploy`",
                type="NoDeployment",
                non_retryable=True,
            )
        deployed_at = deployment.deployed_at.isoformat()
        chain_id = self._settings.chain_id
        checkpoint = last_checkpoint(self._url, chain_id, token.address, deployed_at)
        return ReconcileScope(
            chain_id=chain_id,
            asset=token.address,
            deployed_block=token.block,
            deployed_at=deployed_at,
            resume_from=token.block if checkpoint is None else checkpoint + 1,
            confirmations=effective_confirmations(self._settings),
        )

    @activity.defn(name="read_authorizations_used")
    @runs_on(taskqueues.CHAIN)
    async def read_authorizations_used(self, query: SettlementQuery) -> SettlementBatch:
        """The token's ``AuthorizationUsed`` events from ``query.from_block`` on, each with its
        ``Transfer``; stops at the target block or once it holds ``max_events``."""
        w3 = self._rpc.get()
        actual = int(await w3.eth.chain_id)
        if actual != query.chain_id:
            raise ApplicationError(
                f"RPC at {self._rpc.url} serves chain {actual}, expected {query.chain_id}",
                type="WrongChain",
                non_retryable=True,
            )
        head = int(await w3.eth.block_number)
        target = head - query.confirmations
        if query.to_block is not None:
            target = min(target, query.to_block)
        target = max(min(target, query.from_block + query.max_blocks - 1), query.from_block - 1)
        asset = Web3.to_checksum_address(query.asset)
        settlements: list[OnChainSettlement] = []
        start, last = query.from_block, query.from_block - 1
        while start <= target and len(settlements) < query.max_events:
            end = min(start + query.chunk_blocks - 1, target)
            logs = await w3.eth.get_logs(
                {
                    "address": asset,
                    "fromBlock": start,
                    "toBlock": end,
                    "topics": [[AUTHORIZATION_USED, TRANSFER]],
                }
            )
            settlements += pair_settlements(query.chain_id, asset, logs)
            last, start = end, end + 1
            activity.heartbeat(last)
        return SettlementBatch(
            from_block=query.from_block,
            to_block=last,
            target_to_block=target,
            head=head,
            settlements=settlements,
        )

    @activity.defn(name="read_ledger_rows")
    def read_ledger_rows(self, query: LedgerQuery) -> LedgerEntries:
        return LedgerEntries(rows=ledger_rows(self._url, query))

    @activity.defn(name="flag_payment_discrepancies")
    def flag_payment_discrepancies(self, record: ReconcileRecord) -> int:
        """A warning and an audit event per finding the first time it is found (a later run
        finding it again only logs at info), and the run's summary. Returns the new findings."""
        report = record.report
        info = activity.info()
        fresh = 0
        with db.session_scope(self._url) as session:
            for finding in report.findings:
                inserted = db.record_once(
                    session,
                    AuditEvent(
                        idempotency_key=(
                            f"payment-discrepancy:{finding.kind.value}:{finding.payment_id}:"
                            f"{finding.tx_hash or '-'}"
                        ),
                        actor=AUDIT_ACTOR,
                        kind=AUDIT_FINDING,
                        subject=finding.payment_id,
                        workflow_id=info.workflow_id,
                        detail=finding.model_dump(mode="json"),
                    ),
                )
                level = "warning" if inserted else "info"
                getattr(activity.logger, level)(
                    "payment discrepancy %s %s: %s",
                    finding.kind.value,
                    finding.payment_id,
                    finding.detail,
                )
                fresh += int(inserted)
            summary = AuditEvent(
                idempotency_key=f"payments-reconciled:{info.workflow_id}:{info.workflow_run_id}",
                actor=AUDIT_ACTOR,
                kind=AUDIT_CHECKPOINT if report.checkpoint else AUDIT_RANGE,
                subject=checkpoint_subject(report.chain_id, report.asset),
                workflow_id=info.workflow_id,
                detail={
                    "from_block": report.from_block,
                    "to_block": report.to_block,
                    "head": report.head,
                    "behind": report.behind,
                    "settlements": report.settlements,
                    "matched": report.matched,
                    "counts": {kind.value: n for kind, n in report.counts.items()},
                    "deployed_at": record.deployed_at,
                },
            )
            summarized = db.record_once(session, summary)
            session.commit()
        if summarized:
            metrics.AUDIT_EVENTS.labels(kind=summary.kind).inc()
        if fresh:
            metrics.AUDIT_EVENTS.labels(kind=AUDIT_FINDING).inc(fresh)
        return fresh


def checkpoint_subject(chain_id: int, asset: str) -> str:
    return f"{chain_id}:{asset.lower()}"


def last_checkpoint(url: str, chain_id: int, asset: str, deployed_at: str) -> int | None:
    """The last block the latest scheduled run of this deployment covered (None: no run yet)."""
    with db.session_scope(url) as session:
        latest = session.exec(
            select(AuditEvent)
            .where(AuditEvent.kind == AUDIT_CHECKPOINT)
            .where(AuditEvent.subject == checkpoint_subject(chain_id, asset))
            .order_by(col(AuditEvent.id).desc())
            .limit(1)
        ).first()
    if latest is None or latest.detail.get("deployed_at") != deployed_at:
        return None
    to_block = latest.detail.get("to_block")
    return int(to_block) if isinstance(to_block, int) else None


def pair_settlements(
    chain_id: int, asset: str, logs: Iterable[Mapping[str, Any]]
) -> list[OnChainSettlement]:
    """Each ``AuthorizationUsed`` log with the first ``Transfer`` from its authorizer that
    follows it in the same transaction (FleetUSD emits them in that order)."""
    ordered = sorted(logs, key=lambda log: (int(log["blockNumber"]), int(log["logIndex"])))
    settlements = []
    for index, log in enumerate(ordered):
        topics = log["topics"]
        if _hex(topics[0]) != AUTHORIZATION_USED:
            continue
        authorizer = _address(topics[1])
        nonce = _hex(topics[2])
        tx_hash = _hex(log["transactionHash"])
        settlement = OnChainSettlement(
            payment_id=settlement_payment_id(chain_id, asset, authorizer, nonce),
            authorizer=authorizer,
            nonce=nonce,
            tx_hash=tx_hash,
            block_number=int(log["blockNumber"]),
            log_index=int(log["logIndex"]),
        )
        for later in ordered[index + 1 :]:
            if _hex(later["transactionHash"]) != tx_hash:
                break
            moved = later["topics"]
            if _hex(moved[0]) == TRANSFER and _address(moved[1]) == authorizer:
                settlement.pay_to = _address(moved[2])
                settlement.amount = int(_hex(later["data"]), 16)
                break
        settlements.append(settlement)
    return settlements


def ledger_rows(url: str, query: LedgerQuery) -> list[LedgerEntry]:
    """Rows of ``query.payment_ids`` and, with a block range, this token's rows that say they
    settled (or were refunded) in it."""
    prefix = payment_id_prefix(query.chain_id, query.asset)
    found: dict[str, PaymentRecord] = {}
    with db.session_scope(url) as session:
        ids = sorted(set(query.payment_ids))
        for chunk in _chunks(ids, IDS_PER_QUERY):
            rows = session.exec(
                select(PaymentRecord).where(col(PaymentRecord.payment_id).in_(chunk))
            ).all()
            found.update((row.payment_id, row) for row in rows)
        if query.from_block is not None and query.to_block is not None:
            rows = session.exec(
                select(PaymentRecord)
                .where(PaymentRecord.chain_id == query.chain_id)
                .where(col(PaymentRecord.payment_id).startswith(prefix))
                .where(col(PaymentRecord.status).in_(sorted(USED_ON_CHAIN)))
                .where(col(PaymentRecord.block_number) >= query.from_block)
                .where(col(PaymentRecord.block_number) <= query.to_block)
            ).all()
            found.update((row.payment_id, row) for row in rows)
    return [
        LedgerEntry(
            payment_id=row.payment_id,
            status=row.status,
            amount=row.amount,
            payer=row.payer,
            pay_to=row.pay_to,
            tx_hash=row.tx_hash,
            block_number=row.block_number,
        )
        for row in sorted(found.values(), key=lambda row: row.payment_id)
    ]


def _chunks(items: Sequence[str], size: int) -> Iterable[Sequence[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _hex(value: Any) -> str:
    text = value if isinstance(value, str) else Web3.to_hex(value)
    return text.lower()


def _address(topic: Any) -> str:
    return Web3.to_checksum_address("0x" + _hex(topic)[-40:])
