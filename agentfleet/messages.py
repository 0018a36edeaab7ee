"""Pydantic models that cross the workflow/activity boundary (inputs and results).

Every workflow and activity takes one model and returns one. Add fields with defaults; never
change the meaning of an existing field (recorded histories must keep replaying).
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel, Field


class NoopInput(BaseModel):
    step: int = 0


class NoopResult(BaseModel):
    step: int = 0


class SkeletonInput(BaseModel):
    """Shape of a skeleton workflow: N sequential do-nothing activities, regular or local."""

    activities: int = Field(default=3, ge=0, le=1000)
    local: bool = False
    task_queue: str | None = None
    """Queue of the regular activities; None means the workflow's own queue."""


class SkeletonResult(BaseModel):
    activities: int


class AuditRecord(BaseModel):
    """One audit row; ``idempotency_key`` makes a retried write land once."""

    idempotency_key: str
    actor: str
    kind: str
    subject: str
    workflow_id: str | None = None
    detail: dict[str, str | int | float | bool | None] = Field(default_factory=dict)


class AuditWriteResult(BaseModel):
    inserted: bool


class DatabaseStatus(BaseModel):
    backend: str
    revision: str | None


class ChainHeadRequest(BaseModel):
    pass


class ChainHead(BaseModel):
    chain_id: int
    block_number: int


class StackCheckInput(BaseModel):
    """Which parts of the stack the check exercises; ``label`` names the run in the audit log."""

    label: str = "stack-check"
    check_chain: bool = True


class StackCheckResult(BaseModel):
    database: DatabaseStatus
    chain: ChainHead | None
    audit_inserted: bool
    checked_at: datetime


class TxStatus(StrEnum):
    """Where a transaction ended: mined and buried (confirmed), mined reverted or impossible
    (failed), or not known yet (unknown: its hashes are recorded and it is checked again)."""

    CONFIRMED = "confirmed"
    FAILED = "failed"
    UNKNOWN = "unknown"


class GasPolicy(BaseModel):
    """EIP-1559 fees and patience of a relayer (from the chain profile)."""

    max_fee_gwei: float = 500.0
    priority_fee_gwei: float = 1.0
    bump_percent: int = Field(default=15, ge=10)
    stuck_after_s: float = 20.0
    receipt_timeout_s: float = 120.0


class TxRequest(BaseModel):
    """A transaction to send; ``request_id`` is its business key (sending twice sends once)."""

    request_id: str = Field(min_length=1, max_length=200)
    to: str | None = None
    data: str = "0x"
    value: int = Field(default=0, ge=0)
    gas_limit: int | None = Field(default=None, gt=0)


class TxOutcome(BaseModel):
    request_id: str
    status: TxStatus
    sender: str
    nonce: int | None = None
    tx_hash: str | None = None
    block_number: int | None = None
    block_hash: str | None = None
    gas_used: int | None = None
    confirmations: int = 0
    reorgs: int = 0
    error: str | None = None


class TxOrder(BaseModel):
    """Input of a TransactionWorkflow: what to send, from which account, how carefully."""

    chain_id: int
    sender: str
    request: TxRequest
    confirmations: int = 0
    policy: GasPolicy = Field(default_factory=GasPolicy)
    reorg_window_s: float = 15.0
    """After the outcome, the relayer checks the block again this much later (0: never)."""
    heartbeat_timeout_s: float = 10.0
    """How soon a send whose worker died is retried on another."""

    def to_send(self, nonce: int, request: TxRequest | None = None) -> SendTx:
        """The ``send_transaction`` input for this order at ``nonce`` (``request``: the order's
        request with its gas limit filled in, when it was estimated since)."""
        return SendTx(
            chain_id=self.chain_id,
            sender=self.sender,
            nonce=nonce,
            request=request or self.request,
            confirmations=self.confirmations,
            policy=self.policy,
        )


class RelayerState(BaseModel):
    """What a relayer entity carries across continue-as-new."""

    chain_id: int
    address: str
    next_nonce: int | None = None
    reserved: dict[str, int] = Field(default_factory=dict)
    """request id -> nonce, until the transaction's outcome arrives."""
    finished: dict[str, TxOrder] = Field(default_factory=dict)
    """Outcomes still to be checked again (reorg window, unknown outcomes)."""
    recheck: dict[str, datetime] = Field(default_factory=dict)
    """request id -> when to look at it again."""
    nonces: dict[str, int] = Field(default_factory=dict)
    """Nonces of the recent requests (so a late duplicate reservation gets the same nonce)."""
    continue_as_new_after: int | None = None
    """Continue as new once a run's history has this many events, before Temporal suggests it
    (tests force it early); None: when Temporal suggests it."""


class NonceReservation(BaseModel):
    request_id: str
    nonce: int


class TxFinished(BaseModel):
    order: TxOrder
    outcome: TxOutcome


class RelayerStatus(BaseModel):
    address: str
    chain_id: int
    next_nonce: int | None
    reserved: int
    pending_recheck: int


class NonceQuery(BaseModel):
    chain_id: int
    sender: str
    chain_only: bool = False
    """Only the chain's pending count (a relayer resync after a dev chain reset), not also the
    nonces recorded in the database."""


class PrepareTx(BaseModel):
    chain_id: int
    sender: str
    request: TxRequest


class PreparedTx(BaseModel):
    gas_limit: int


class ReserveNonce(BaseModel):
    chain_id: int
    sender: str
    request_id: str
    reply_to: str | None = None
    """Workflow id that gets the ``nonce_reserved`` signal."""


class ReserveNonces(BaseModel):
    """The ``reserve_now`` update: nonces for several requests at once (a worker process sends
    the reservations that arrive while one is in flight as the next batch)."""

    chain_id: int
    sender: str
    request_ids: list[str] = Field(min_length=1)


class NonceReservations(BaseModel):
    nonces: dict[str, int]
    """request id -> its nonce (the same one every time it is asked)."""


class EnsureRelayer(BaseModel):
    chain_id: int
    sender: str


class SendTx(BaseModel):
    chain_id: int
    sender: str
    nonce: int
    request: TxRequest
    confirmations: int = 0
    policy: GasPolicy = Field(default_factory=GasPolicy)
