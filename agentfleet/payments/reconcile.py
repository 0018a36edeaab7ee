"""Payments reconciliation: the ledger (table ``payments``) against the token's own record.

``ReconcilePaymentsWorkflow`` reads FleetUSD's ``AuthorizationUsed(authorizer, nonce)`` events in
a block range, each with the ``Transfer`` the same call emitted right after it (the amount and the
payee), reads the ledger rows of those payments and of every payment the ledger says settled in
the range, and compares them with :func:`compare`. What differs is a :class:`Finding`:

* ``missing_row`` - an authorization used on chain whose payment id
  (``payment-{chainId}-{asset}-{authorizer}-{nonce}``) has no ledger row: a transfer made outside
  agentfleet with an EIP-3009 authorization, or a row that was lost.
* ``unknown_settlement`` - the ledger says a payment settled (or was refunded) in a block of the
  range, but the chain used no such authorization there; or the ledger says it did not settle
  (``skill_failed``, ``failed``...) while its nonce was used on chain; or the ledger's
  settlement transaction is not the one that used the nonce.
* ``amount_mismatch`` - the chain moved another amount than the ledger's, or paid someone else.

Each finding is logged as a warning and written once as an audit event (kind
``payment_discrepancy``, subject the payment id; ``fleet_audit_events_recorded_total`` counts
them) for a human to look at; the run's summary is an audit event too. A missing row is read
again after ``recheck_after_s`` before it is reported, since a saga writes its row a moment after
its settlement is confirmed.

Block range: a run given no ``from_block`` continues after the last such run (its summary, kind
``payments_reconciled``, is the checkpoint; a redeployed token starts again at its deployment
block), or starts at the token's deployment block. It ends at ``to_block`` or at the head minus
the network's confirmations, and covers at most ``max_blocks`` (the next run goes on from there;
the report's ``behind`` says how far the head is). Logs are read ``chunk_blocks`` at a time and
compared in batches of about ``max_events`` settlements, so payloads stay small; the report lists
at most :data:`MAX_FINDINGS` findings (its counts are complete).

``fleet payments reconcile`` calls :func:`clients.reconcile.run_reconciliation`; the Temporal
Schedule ``reconcile-payments`` (:func:`clients.schedules.ensure_reconcile_schedule`)
runs it hourly.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import timedelta
from enum import StrEnum
from typing import NamedTuple

from pydantic import BaseModel, ConfigDict, Field, model_validator

from agentfleet.payments.model import PaymentStatus

WORKFLOW_TYPE = "ReconcilePaymentsWorkflow"
MAX_BLOCKS = 50_000
"""Blocks one run covers at most (the next run continues)."""
CHUNK_BLOCKS = 2_000
"""Blocks per ``eth_getLogs`` call (most providers refuse much wider ranges)."""
MAX_EVENTS = 1_000
"""About how many settlements one batch (chain read -> ledger read -> compare) holds."""
MAX_FINDINGS = 200
"""Findings listed in a report (and flagged one by one); the counts include the rest."""
RECHECK_AFTER_S = 30.0
RUN_TIMEOUT = timedelta(hours=1)
USED_ON_CHAIN = frozenset({PaymentStatus.SETTLED.value, PaymentStatus.REFUNDED.value})
"""Ledger statuses that say the authorization was used on chain."""
AUDIT_ACTOR = "reconcile-payments"
AUDIT_FINDING = "payment_discrepancy"
AUDIT_CHECKPOINT = "payments_reconciled"
"""Summary of a run that continued from the checkpoint (the next such run starts after it)."""
AUDIT_RANGE = "payments_reconciled_range"
"""Summary of a run given an explicit ``from_block`` (it moves no checkpoint)."""


class FindingKind(StrEnum):
    MISSING_ROW = "missing_row"
    UNKNOWN_SETTLEMENT = "unknown_settlement"
    AMOUNT_MISMATCH = "amount_mismatch"


class ReconcileRequest(BaseModel):
    """Input of ``ReconcilePaymentsWorkflow`` (the schedule starts it with the defaults)."""

    model_config = ConfigDict(extra="forbid")

    from_block: int | None = Field(default=None, ge=0)
    """First block; None: after the last run that had none (the checkpoint), else the token's
    deployment block."""
    to_block: int | None = Field(default=None, ge=0)
    """Last block; None: the head minus the network's confirmations (never beyond it)."""
    max_blocks: int = Field(default=MAX_BLOCKS, ge=1, le=1_000_000)
    chunk_blocks: int = Field(default=CHUNK_BLOCKS, ge=1, le=100_000)
    max_events: int = Field(default=MAX_EVENTS, ge=1, le=10_000)
    recheck_after_s: float = Field(default=RECHECK_AFTER_S, ge=0, le=3600)
    """How long to wait before reading a missing row again (0: report it at once)."""

    @model_validator(mode="after")
    def _ordered(self) -> ReconcileRequest:
        if (
            self.from_block is not None
            and self.to_block is not None
            and self.to_block < self.from_block
        ):
            raise ValueError(f"to_block {self.to_block} is before from_block {self.from_block}")
        return self


class ReconcileScope(BaseModel):
    """``reconcile_scope``'s answer: which token on which chain, and where to start."""

    chain_id: int
    asset: str
    deployed_block: int
    deployed_at: str
    """The deployment's time: a checkpoint of another deployment (a reset chain) is ignored."""
    resume_from: int
    """The block after the checkpoint, or the deployment block when there is none."""
    confirmations: int = 0


class SettlementQuery(BaseModel):
    """Input of ``read_authorizations_used`` (fleet-chain)."""

    chain_id: int
    asset: str
    from_block: int
    to_block: int | None = None
    """None: the head minus ``confirmations``."""
    confirmations: int = 0
    max_blocks: int = MAX_BLOCKS
    chunk_blocks: int = CHUNK_BLOCKS
    max_events: int = MAX_EVENTS


class OnChainSettlement(BaseModel):
    """One ``AuthorizationUsed`` event with the ``Transfer`` of the same call."""

    payment_id: str
    authorizer: str
    nonce: str
    tx_hash: str
    block_number: int
    log_index: int
    pay_to: str | None = None
    amount: int | None = None
    """Token units moved; None when the transaction has no Transfer from the authorizer."""


class SettlementBatch(BaseModel):
    """What one ``read_authorizations_used`` call read: blocks ``from_block..to_block`` (it
    stops early once it holds ``max_events``), on the way to ``target_to_block``."""

    from_block: int
    to_block: int
    target_to_block: int
    head: int
    settlements: list[OnChainSettlement] = Field(default_factory=list)


class LedgerQuery(BaseModel):
    """Input of ``read_ledger_rows``: the rows of ``payment_ids``, and (when a block range is
    given) every row of this token that says it settled in it."""

    chain_id: int
    asset: str
    payment_ids: list[str] = Field(default_factory=list)
    from_block: int | None = None
    to_block: int | None = None


class LedgerEntry(BaseModel):
    """The columns of a ledger row that reconciliation compares."""

    payment_id: str
    status: str
    amount: str
    payer: str
    pay_to: str
    tx_hash: str | None = None
    block_number: int | None = None


class LedgerEntries(BaseModel):
    rows: list[LedgerEntry] = Field(default_factory=list)


class Finding(BaseModel):
    """One difference between the ledger and the chain, for a human."""

    kind: FindingKind
    payment_id: str
    detail: str
    """One line saying what differs."""
    tx_hash: str | None = None
    block_number: int | None = None
    chain_amount: int | None = None
    ledger_amount: str | None = None
    ledger_status: str | None = None


class ReconcileReport(BaseModel):
    """A run's answer: the range it covered, what it compared and what differed."""

    chain_id: int
    asset: str
    from_block: int
    to_block: int
    """Last block covered (``from_block - 1`` when there was nothing new)."""
    head: int | None = None
    behind: int = 0
    """Blocks between ``to_block`` and the head minus confirmations, left to the next run."""
    checkpoint: bool = False
    """The range continued from the last scheduled run (and is the next one's start)."""
    settlements: int = 0
    """``AuthorizationUsed`` events read."""
    ledger_rows: int = 0
    """Ledger rows compared."""
    matched: int = 0
    """Settlements whose ledger row agrees."""
    counts: dict[FindingKind, int] = Field(default_factory=dict)
    findings: list[Finding] = Field(default_factory=list)
    """The first :data:`MAX_FINDINGS` findings."""
    truncated: bool = False
    """More findings than listed (``counts`` has them all)."""
    workflow_id: str | None = None

    @property
    def total_findings(self) -> int:
        return sum(self.counts.values())

    @property
    def clean(self) -> bool:
        return self.total_findings == 0

    def add(self, findings: Iterable[Finding]) -> None:
        for finding in findings:
            self.counts[finding.kind] = self.counts.get(finding.kind, 0) + 1
            if len(self.findings) < MAX_FINDINGS:
                self.findings.append(finding)
            else:
                self.truncated = True


class ReconcileRecord(BaseModel):
    """Input of ``flag_payment_discrepancies``: the report and the deployment it covered."""

    report: ReconcileReport
    deployed_at: str


class Comparison(NamedTuple):
    findings: list[Finding]
    matched: int


def settlement_payment_id(chain_id: int, asset: str, authorizer: str, nonce: str) -> str:
    """The payment id of an authorization, as :func:`agentfleet.payments.model.payment_id` makes it
    (and the saga keys its ledger row by)."""
    return f"payment-{chain_id}-{asset.lower()}-{authorizer.lower()}-{nonce.lower()}"


def payment_id_prefix(chain_id: int, asset: str) -> str:
    """What every payment id of ``asset`` on ``chain_id`` starts with."""
    return f"payment-{chain_id}-{asset.lower()}-"


def compare(
    settlements: Sequence[OnChainSettlement],
    rows: Sequence[LedgerEntry],
    from_block: int | None = None,
    to_block: int | None = None,
) -> Comparison:
    """Findings of ``settlements`` (read on chain in ``from_block..to_block``) against ledger
    ``rows``. Rows that say they settled in that range and match no settlement are
    ``unknown_settlement``; without a range only the settlements' side is compared."""
    by_id = {row.payment_id: row for row in rows}
    findings: list[Finding] = []
    matched = 0
    seen: set[str] = set()
    for settlement in settlements:
        seen.add(settlement.payment_id)
        finding = _check(settlement, by_id.get(settlement.payment_id))
        if finding is None:
            matched += 1
        else:
            findings.append(finding)
    if from_block is not None and to_block is not None:
        for row in rows:
            if (
                row.payment_id in seen
                or row.status not in USED_ON_CHAIN
                or row.block_number is None
                or not from_block <= row.block_number <= to_block
            ):
                continue
            findings.append(
                Finding(
                    kind=FindingKind.UNKNOWN_SETTLEMENT,
                    payment_id=row.payment_id,
                    detail=(
                        f"the ledger says {row.status} in block {row.block_number} "
                        f"(tx {row.tx_hash}), but the chain used no such authorization in "
                        f"blocks {from_block}..{to_block}"
                    ),
                    tx_hash=row.tx_hash,
                    block_number=row.block_number,
                    ledger_amount=row.amount,
                    ledger_status=row.status,
                )
            )
    return Comparison(findings, matched)


def _check(settlement: OnChainSettlement, row: LedgerEntry | None) -> Finding | None:
    def finding(kind: FindingKind, detail: str) -> Finding:
        return Finding(
            kind=kind,
            payment_id=settlement.payment_id,
            detail=detail,
            tx_hash=settlement.tx_hash,
            block_number=settlement.block_number,
            chain_amount=settlement.amount,
            ledger_amount=row.amount if row else None,
            ledger_status=row.status if row else None,
        )

    used = (
        f"authorization {settlement.nonce[:10]}… of {settlement.authorizer} was used in tx "
        f"{settlement.tx_hash} (block {settlement.block_number})"
    )
    if row is None:
        moved = f"{settlement.amount} units to {settlement.pay_to}"
        return finding(
            FindingKind.MISSING_ROW,
            f"{used}, moving {moved}, but the ledger has no row: a transfer made outside "
            "agentfleet, or a lost row",
        )
    if row.status not in USED_ON_CHAIN:
        return finding(FindingKind.UNKNOWN_SETTLEMENT, f"the ledger says {row.status}, but {used}")
    if (row.tx_hash or "").lower() != settlement.tx_hash.lower():
        return finding(
            FindingKind.UNKNOWN_SETTLEMENT,
            f"the ledger says it settled in tx {row.tx_hash}, but {used}",
        )
    if settlement.amount is None:
        return finding(
            FindingKind.AMOUNT_MISMATCH, f"{used}, but that tx has no Transfer from the authorizer"
        )
    differences = []
    if _units(row.amount) != settlement.amount:
        differences.append(f"moved {settlement.amount} units, the ledger says {row.amount}")
    if (settlement.pay_to or "").lower() != row.pay_to.lower():
        differences.append(f"paid {settlement.pay_to}, the ledger says {row.pay_to}")
    if differences:
        return finding(
            FindingKind.AMOUNT_MISMATCH, f"tx {settlement.tx_hash} " + "; ".join(differences)
        )
    return None


def _units(amount: str) -> int | None:
    try:
        return int(amount)
    except ValueError:
        return None


def reconcile_workflow_id(chain_id: int, request: ReconcileRequest) -> str:
    """``reconcile-payments-{chainId}`` continuing from the checkpoint, else with the range
    asked: the same question asked twice at once is one run."""
    if request.from_block is None and request.to_block is None:
        return f"reconcile-payments-{chain_id}"
    start = "checkpoint" if request.from_block is None else str(request.from_block)
    end = "head" if request.to_block is None else str(request.to_block)
    return f"reconcile-payments-{chain_id}-{start}-{end}"


def one_line(text: str) -> str:
    """The first line of ``text``, at most 300 characters."""
    return (text.strip().splitlines() or [""])[0][:300]
