"""Database tables of agentfleet (SQLModel), the schema Alembic migrates to.

Every table lives here and registers itself on ``SQLModel.metadata``; ``agentfleet/migrations``
compares that metadata with the database, so a new table is a class here plus a migration made by
``alembic revision --autogenerate``. Constraint and index names follow :data:`NAMING_CONVENTION`
so migrations can drop or alter them by name on every backend (SQLite included).

Timestamps are :class:`UTCDateTime`: callers give timezone-aware datetimes and always read back
timezone-aware UTC, whatever the backend stores.
"""

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, DateTime, Text, UniqueConstraint
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator
from sqlmodel import Field, SQLModel

NAMING_CONVENTION: dict[str, str] = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}
SQLModel.metadata.naming_convention = NAMING_CONVENTION


def utcnow() -> datetime:
    """The current time, timezone-aware UTC."""
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp stored as UTC and read back timezone-aware UTC on every backend.

    PostgreSQL stores ``timestamp with time zone``; SQLite has no time zones, so the value is
    stored as naive UTC and UTC is attached on the way out. Naive datetimes are refused rather
    than guessed.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(f"naive datetime {value.isoformat()} given; pass a timezone-aware one")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


JSONDocument = JSON().with_variant(JSONB(), "postgresql")
"""JSON on SQLite, JSONB on PostgreSQL (indexable, compared by value)."""


class AuditEvent(SQLModel, table=True):
    """One thing that happened, written once per ``idempotency_key``.

    Activities derive the key from what they did (e.g. ``payment-settled:<nonce>``), so a retry
    after a crash finds the row already there: use :func:`agentfleet.db.record_once`.
    """

    __tablename__ = "audit_events"

    id: int | None = Field(default=None, primary_key=True)
    idempotency_key: str = Field(unique=True)
    occurred_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)
    actor: str
    kind: str = Field(index=True)
    subject: str = Field(index=True)
    workflow_id: str | None = Field(default=None, index=True)
    detail: dict[str, Any] = Field(default_factory=dict, sa_type=JSONDocument, nullable=False)


class WalletKey(SQLModel, table=True):
    """A private key agentfleet holds, encrypted as an eth-account keystore (v3 JSON).

    The label is the business key (``relayer-0``, ``bot:forecaster-1``): generating a key for a
    label that already has one returns the stored key, so a retried activity never makes two.
    """

    __tablename__ = "wallet_keys"

    address: str = Field(primary_key=True)
    label: str = Field(unique=True)
    keystore: dict[str, Any] = Field(sa_type=JSONDocument, nullable=False)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)


class ChainTransaction(SQLModel, table=True):
    """Every transaction agentfleet sends, recorded before it is broadcast.

    ``attempts`` lists each signed version (same nonce, rising fees) with its hash and raw bytes,
    so an unknown outcome always has hashes to reconcile and a crash after signing re-sends the
    very same transaction instead of signing a new one.
    """

    __tablename__ = "chain_transactions"
    __table_args__ = (UniqueConstraint("chain_id", "sender", "nonce"),)

    request_id: str = Field(primary_key=True)
    chain_id: int = Field(sa_type=BigInteger)
    sender: str = Field(index=True)
    nonce: int = Field(sa_type=BigInteger)
    to: str | None = None
    value: str = "0"
    data: str = "0x"
    gas_limit: int = Field(sa_type=BigInteger)
    status: str = Field(index=True)
    tx_hash: str | None = Field(default=None, index=True)
    attempts: list[dict[str, Any]] = Field(
        default_factory=list, sa_type=JSONDocument, nullable=False
    )
    block_number: int | None = Field(default=None, sa_type=BigInteger)
    block_hash: str | None = None
    gas_used: int | None = Field(default=None, sa_type=BigInteger)
    reorgs: int = 0
    error: str | None = None
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)


class BotRecord(SQLModel, table=True):
    """A bot as SQL reporting sees it; written by activities only (the entity workflow is the
    source of truth, this row follows it)."""

    __tablename__ = "bots"

    name: str = Field(primary_key=True)
    kind: str = Field(index=True)
    owner: str = Field(index=True)
    status: str = Field(index=True)
    description: str = ""
    params: dict[str, Any] = Field(default_factory=dict, sa_type=JSONDocument, nullable=False)
    address: str | None = Field(default=None, index=True)
    agent_id: int | None = Field(default=None, sa_type=BigInteger)
    reason: str | None = None
    model_version: str | None = None
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)
    retired_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


class PriceBar(SQLModel, table=True):
    """One OHLCV bar of a symbol (``fleet data import``); forecasters read their series here,
    else from the labelled synthetic feed."""

    __tablename__ = "price_bars"

    symbol: str = Field(primary_key=True)
    ts: datetime = Field(primary_key=True, sa_type=UTCDateTime)
    open: float
    high: float
    low: float
    close: float
    volume: float = 0.0
    source: str = "import"


class PaymentRecord(SQLModel, table=True):
    """The payment ledger: one row per x402 payment that passed verification, written by the
    payment saga (an upsert keyed by the payment id, so retries never add a second row).

    Amounts are token units as decimal strings (uint256 does not fit a BIGINT). Reconciliation
    compares these rows with the token's ``AuthorizationUsed`` events.
    """

    __tablename__ = "payments"

    payment_id: str = Field(primary_key=True)
    chain_id: int = Field(sa_type=BigInteger, index=True)
    asset: str
    nonce: str
    payer: str = Field(index=True)
    pay_to: str = Field(index=True)
    amount: str
    buyer: str | None = None
    seller: str | None = Field(default=None, index=True)
    skill: str | None = None
    status: str = Field(index=True)
    relayer: str | None = None
    tx_hash: str | None = Field(default=None, index=True)
    block_number: int | None = Field(default=None, sa_type=BigInteger)
    confirmations: int = 0
    reason: str | None = None
    refund_tx_hash: str | None = None
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)


class PaymentIdentifier(SQLModel, table=True):
    """x402 ``payment-identifier`` ids seen by the gateway: the first payload claims an id, the
    same payload again gets the same answer, another payload under it is refused (409)."""

    __tablename__ = "payment_identifiers"

    identifier: str = Field(primary_key=True)
    payment_id: str
    payload_sha256: str
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)


class FacilitatorKey(SQLModel, table=True):
    """An API key of the x402 facilitator (``fleet facilitator key add``): only its SHA-256 is
    kept; ``pay_to`` lists the addresses its payments may pay (None: the fleet's own wallets,
    ``["*"]``: any)."""

    __tablename__ = "facilitator_keys"

    key_id: str = Field(primary_key=True)
    name: str = Field(index=True)
    key_sha256: str
    pay_to: list[str] | None = Field(default=None, sa_type=JSONDocument)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)
    revoked_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


class ChannelRecord(SQLModel, table=True):
    """A publishing destination (``fleet channel add``). Secrets stay in settings, not here."""

    __tablename__ = "channels"

    name: str = Field(primary_key=True)
    kind: str = Field(index=True)
    target: str
    rate_per_s: float
    burst: int = 1
    max_length: int
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)


class ContentItem(SQLModel, table=True):
    """One content item as SQL reporting sees it; the pipeline workflow (``content-{id}``) is the
    source of truth and its activities keep this row in step. The audit trail is in
    ``audit_events`` (subject = content id, kinds ``content.*``)."""

    __tablename__ = "content_items"

    content_id: str = Field(primary_key=True)
    bot: str = Field(index=True)
    channel: str = Field(index=True)
    brief: str
    submitted_by: str
    state: str = Field(index=True)
    text: str | None = None
    subject: str | None = None
    publish_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    policy: str | None = None
    decided_by: str | None = None
    message_id: str | None = None
    reason: str | None = None
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)


class PublishAttempt(SQLModel, table=True):
    """The send of one content item, written before the request leaves: a retry that finds it
    ``sending`` knows an earlier attempt may have published and does not send again."""

    __tablename__ = "publish_attempts"

    content_id: str = Field(primary_key=True)
    channel: str = Field(index=True)
    state: str
    message_id: str | None = None
    error: str | None = None
    attempts: int = 0
    started_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)


class ModelVersion(SQLModel, table=True):
    """The model registry: every version a learning task produced, its lineage and metrics.

    Weights live in the content-addressed artifact store; ``artifact`` is their ``sha256:`` ref.
    ``status`` is ``champion`` (one per task, what bots serve), ``candidate`` (being decided),
    ``rejected`` (lost to the champion) or ``retired`` (an earlier champion).
    """

    __tablename__ = "model_versions"
    __table_args__ = (UniqueConstraint("task", "version"),)

    version_id: str = Field(primary_key=True)
    task: str = Field(index=True)
    version: int
    parent: str | None = None
    round_id: str | None = Field(default=None, unique=True)
    participants: list[str] = Field(default_factory=list, sa_type=JSONDocument, nullable=False)
    excluded: list[dict[str, Any]] = Field(
        default_factory=list, sa_type=JSONDocument, nullable=False
    )
    metrics: dict[str, Any] = Field(default_factory=dict, sa_type=JSONDocument, nullable=False)
    artifact: str
    status: str = Field(index=True)
    strategy: str | None = None
    head: bool = False
    """The version its task's next round trains from (one per task)."""
    controls: dict[str, str] = Field(default_factory=dict, sa_type=JSONDocument, nullable=False)
    """Participant -> the artifact holding its drift-correction control as of this version."""
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)


class LearningRoundRecord(SQLModel, table=True):
    """One learning round as SQL sees it (``learning-{task}-{round}``): who took part, who was
    dropped or excluded and why, what it produced and whether it was promoted."""

    __tablename__ = "learning_rounds"

    round_id: str = Field(primary_key=True)
    task: str = Field(index=True)
    round: int
    status: str = Field(index=True)
    strategy: str
    participants: list[str] = Field(default_factory=list, sa_type=JSONDocument, nullable=False)
    dropped: list[dict[str, Any]] = Field(
        default_factory=list, sa_type=JSONDocument, nullable=False
    )
    excluded: list[dict[str, Any]] = Field(
        default_factory=list, sa_type=JSONDocument, nullable=False
    )
    candidate: str | None = None
    champion: str | None = None
    metrics: dict[str, Any] = Field(default_factory=dict, sa_type=JSONDocument, nullable=False)
    started_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)
    finished_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


class PatternRecord(SQLModel, table=True):
    """A pattern a bot shared (a regime on a symbol, with its confidence) and how it fared:
    ``validated`` by enough of the first bots asked, then broadcast to the rest; ``rejected``
    otherwise (not broadcast further)."""

    __tablename__ = "patterns"

    pattern_id: str = Field(primary_key=True)
    source: str = Field(index=True)
    symbol: str
    regime: str
    confidence: float
    status: str = Field(index=True)
    asked: int = 0
    holds: int = 0
    success_rate: float | None = None
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)


class PatternValidation(SQLModel, table=True):
    """One bot's verdict on a shared pattern, on its own data (once per bot and pattern)."""

    __tablename__ = "pattern_validations"
    __table_args__ = (UniqueConstraint("pattern_id", "bot"),)

    id: int | None = Field(default=None, primary_key=True)
    pattern_id: str = Field(index=True)
    bot: str
    holds: bool
    confidence: float | None = None
    error: str | None = None
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)


class AlertRecord(SQLModel, table=True):
    """One alert digest as sent (``agentfleet.operations.alerts``): every new alert of one kind
    within a window, grouped; ``channels`` are the alert channels it was handed to (empty:
    recorded and logged only)."""

    __tablename__ = "alerts"

    digest_id: str = Field(primary_key=True)
    kind: str = Field(index=True)
    severity: str
    count: int
    keys: list[str] = Field(default_factory=list, sa_type=JSONDocument, nullable=False)
    text: str
    repeats: int = 0
    channels: list[str] = Field(default_factory=list, sa_type=JSONDocument, nullable=False)
    first_at: datetime = Field(sa_type=UTCDateTime, nullable=False)
    last_at: datetime = Field(sa_type=UTCDateTime, nullable=False)
    created_at: datetime = Field(
        default_factory=utcnow, sa_type=UTCDateTime, nullable=False, index=True
    )


class UsageRecord(SQLModel, table=True):
    """One model call of an agent run (``agentfleet.agents``): tokens and their cost, keyed by
    run and call number so a retried or replayed call is counted once."""

    __tablename__ = "usage"

    run_id: str = Field(primary_key=True)
    call_no: int = Field(primary_key=True)
    bot: str = Field(index=True)
    model: str
    input_tokens: int
    output_tokens: int
    cost_units: int = Field(sa_type=BigInteger)
    """Token units (micro-fUSD) at ``settings.model_prices`` when the call was made."""
    created_at: datetime = Field(
        default_factory=utcnow, sa_type=UTCDateTime, nullable=False, index=True
    )


class CommandAnswerPage(SQLModel, table=True):
    """One batch of a large fleet command's answers (``agentfleet.bots.command_store``): a JSON
    array of ``BotAnswer`` in target order, written once by the batch's activity (a retry finds
    it), keyed by command id, workflow run id and batch number."""

    __tablename__ = "command_answers"

    command_id: str = Field(primary_key=True)
    run_id: str = Field(primary_key=True)
    batch: int = Field(primary_key=True)
    bots: int
    """Answers in ``answers``."""
    answers: str = Field(sa_type=Text)
    created_at: datetime = Field(
        default_factory=utcnow, sa_type=UTCDateTime, nullable=False, index=True
    )
