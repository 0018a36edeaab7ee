"""Alerts: what an operator must hear about, grouped so a storm is one message, not fifty.

Sources (health runs, payment sagas, reconciliation, the content pipeline's approval reminder,
learning rounds and the live degradation check) raise :class:`Alert` s through the
``raise_alerts`` activity, and the ``fleet up`` supervisor (a component's crash loop) through
``clients.alerts.send_alerts`` directly; the ``AlertsWorkflow`` entity (``alerts``) collects
them, groups those of one kind raised within a window (``FLEET_ALERT_WINDOW_S``) into one
:class:`AlertDigest`, and counts, without re-sending, a key already reported within the cooldown
(``FLEET_ALERT_COOLDOWN_S``).
``deliver_alert_digest`` records each digest in the ``alerts`` table and hands it to every channel
of ``FLEET_ALERT_CHANNELS`` through that channel's publisher, so alerts obey its rate limit.

These models are the contract between those parts; grouping and formatting are pure functions
here, so the workflow stays orchestration and a test can check them without a server.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel, Field

ALERTS_WORKFLOW_ID = "alerts"
ALERTS_WORKFLOW = "AlertsWorkflow"
"""The alerts entity's workflow type (activities start it by name: it calls them back)."""
ALERT_DISCLOSURE = "Automated alert from agentfleet (`fleet alerts list`)."
SHOWN_KEYS = 10
"""Keys named in a digest's first line; the rest are counted ("and 40 more")."""
SHOWN_DETAILS = 5
"""Detail lines (one per key) a digest carries."""


class AlertKind(StrEnum):
    BOT_DEGRADED = "bot_degraded"
    PAYMENT_FAILED = "payment_failed"
    PAYMENT_UNKNOWN = "payment_unknown"
    RECONCILE_DIFFERENCE = "reconcile_difference"
    APPROVAL_OVERDUE = "approval_overdue"
    LEARNING_ROLLBACK = "learning_rollback"
    MODEL_ROLLBACK = "model_rollback"
    AGENT_BUDGET = "agent_budget"
    AGENT_APPROVAL_OVERDUE = "agent_approval_overdue"
    COMPONENT_CRASH_LOOP = "component_crash_loop"


class Severity(StrEnum):
    INFO = "info"
    WARNING = "warning"
    CRITICAL = "critical"


SEVERITY_ORDER = {Severity.INFO: 0, Severity.WARNING: 1, Severity.CRITICAL: 2}

TITLES: dict[AlertKind, str] = {
    AlertKind.BOT_DEGRADED: "bots degraded",
    AlertKind.PAYMENT_FAILED: "payments failed",
    AlertKind.PAYMENT_UNKNOWN: "payments with an unknown outcome",
    AlertKind.RECONCILE_DIFFERENCE: "ledger differs from the chain",
    AlertKind.APPROVAL_OVERDUE: "content awaiting approval past its reminder",
    AlertKind.LEARNING_ROLLBACK: "learning rounds rolled back",
    AlertKind.MODEL_ROLLBACK: "models rolled back after degrading",
    AlertKind.AGENT_BUDGET: "agent runs stopped at their daily budget",
    AlertKind.AGENT_APPROVAL_OVERDUE: "agent tool calls awaiting approval past their reminder",
    AlertKind.COMPONENT_CRASH_LOOP: "stack components crash-looping",
}


class Alert(BaseModel):
    """One thing that went wrong, once. ``alert_id`` is derived from the source (the raising
    workflow's id, the kind and the key), so a retried or replayed raise is the same alert and
    the entity counts it once."""

    alert_id: str = Field(min_length=1, max_length=500)
    kind: AlertKind
    severity: Severity = Severity.WARNING
    key: str = Field(min_length=1, max_length=300)
    """What the alert is about: a bot name, a payment id, a content id, a task."""
    text: str = Field(max_length=2000)
    at: datetime
    source: str = ""
    """The raising workflow's id (where to look in the Web UI)."""


def alert_id(source: str, kind: AlertKind, key: str) -> str:
    return f"{source}:{kind.value}:{key}"


class AlertBatch(BaseModel):
    """What ``raise_alerts`` takes; the activity adds the grouping settings of its worker."""

    alerts: list[Alert]
    window_s: float | None = None
    cooldown_s: float | None = None


class AlertDigest(BaseModel):
    """One message: every new alert of one kind within one window."""

    digest_id: str
    kind: AlertKind
    severity: Severity
    count: int
    """Alerts grouped (a key raised twice counts twice)."""
    keys: list[str]
    """Distinct keys, in the order first raised."""
    details: dict[str, str] = Field(default_factory=dict)
    """The first text per key, for the first :data:`SHOWN_DETAILS` keys."""
    repeats: int = 0
    """Alerts of this kind whose key was already reported within the cooldown (not re-sent)."""
    first_at: datetime
    last_at: datetime
    sources: list[str] = Field(default_factory=list)


class DigestDelivery(BaseModel):
    """Where a digest went: handed to these channels' publishers; ``missing`` are configured
    alert channels that do not exist (``fleet channel add``)."""

    digest_id: str
    channels: list[str] = Field(default_factory=list)
    missing: list[str] = Field(default_factory=list)


class AlertsState(BaseModel):
    """Everything the ``alerts`` entity carries across continue-as-new."""

    window_s: float = 60.0
    cooldown_s: float = 900.0
    epoch: str | None = None
    """Set once per entity chain (``workflow.uuid4``): digest ids stay unique if the entity is
    ever terminated and started again, so a new digest never meets an old send marker."""
    sequence: int = 0
    pending: list[Alert] = Field(default_factory=list)
    window_opened_at: datetime | None = None
    seen: dict[str, datetime] = Field(default_factory=dict)
    """Alert ids recently raised (a repeated raise of one id is dropped)."""
    reported: dict[str, datetime] = Field(default_factory=dict)
    """``kind:key`` -> when last sent (the cooldown)."""
    held_repeats: dict[AlertKind, int] = Field(default_factory=dict)
    """Repeats not sent yet: told in the next message of their kind."""
    digests: int = 0
    suppressed: int = 0
    continue_as_new_after: int | None = None
    """Continue as new once a run's history has this many events, before Temporal suggests it
    (tests force it early); None: when Temporal suggests it."""


class AlertsView(BaseModel):
    """The entity's ``pending`` query."""

    pending: dict[AlertKind, int] = Field(default_factory=dict)
    window_closes_at: datetime | None = None
    digests: int = 0
    suppressed: int = 0
    """Repeats counted and not re-sent since the entity started."""


def group(
    alerts: Iterable[Alert],
    reported: dict[str, datetime],
    now: datetime,
    cooldown_s: float,
) -> tuple[dict[AlertKind, list[Alert]], dict[AlertKind, int]]:
    """Split ``alerts`` by kind into what is new and how many are repeats.

    A key (kind + key) already in ``reported`` less than ``cooldown_s`` ago is a repeat: counted,
    not re-sent. ``reported`` is not changed here; the caller records the keys it sends.
    """
    fresh: dict[AlertKind, list[Alert]] = {}
    repeats: dict[AlertKind, int] = {}
    for alert in alerts:
        last = reported.get(report_key(alert.kind, alert.key))
        if last is not None and (now - last).total_seconds() < cooldown_s:
            repeats[alert.kind] = repeats.get(alert.kind, 0) + 1
        else:
            fresh.setdefault(alert.kind, []).append(alert)
    return fresh, repeats


def report_key(kind: AlertKind, key: str) -> str:
    return f"{kind.value}:{key}"


def digest_of(digest_id: str, kind: AlertKind, alerts: list[Alert], repeats: int) -> AlertDigest:
    """The digest of ``alerts`` (all of ``kind``, at least one): the highest severity, keys in
    the order first raised, one detail line for the first few keys."""
    keys: list[str] = []
    details: dict[str, str] = {}
    sources: list[str] = []
    for alert in alerts:
        if alert.key not in keys:
            keys.append(alert.key)
            if len(details) < SHOWN_DETAILS:
                details[alert.key] = alert.text
        if alert.source and alert.source not in sources:
            sources.append(alert.source)
    return AlertDigest(
        digest_id=digest_id,
        kind=kind,
        severity=max((a.severity for a in alerts), key=SEVERITY_ORDER.__getitem__),
        count=len(alerts),
        keys=keys,
        details=details,
        repeats=repeats,
        first_at=min(a.at for a in alerts),
        last_at=max(a.at for a in alerts),
        sources=sources[:SHOWN_DETAILS],
    )


def headline(digest: AlertDigest | AlertRow) -> str:
    """``bot_degraded x50: forecaster-1, forecaster-2, ... and 40 more``."""
    shown = ", ".join(digest.keys[:SHOWN_KEYS])
    more = len(digest.keys) - SHOWN_KEYS
    tail = f" and {more} more" if more > 0 else ""
    return f"{digest.kind.value} x{digest.count}: {shown}{tail}"


def format_digest(digest: AlertDigest, max_length: int) -> tuple[str, str]:
    """Subject and text of the message, the text cut to ``max_length`` (the channel's)."""
    subject = f"[{digest.severity.value}] {TITLES[digest.kind]} ({digest.count})"
    lines = [f"[{digest.severity.value.upper()}] {headline(digest)}", ""]
    lines += [f"- {key}: {text}" for key, text in digest.details.items()]
    if digest.repeats:
        lines.append(f"(+{digest.repeats} repeats within the cooldown, not sent again)")
    lines += ["", ALERT_DISCLOSURE]
    text = "\n".join(lines)
    if len(text) > max_length:
        text = text[: max(0, max_length - 1)] + "…"
    return subject[:120], text


def recent_alerts(url: str, *, kind: AlertKind | None = None, limit: int = 50) -> list[AlertRow]:
    """Recorded digests, newest first (``fleet alerts list``)."""
    from sqlmodel import col, select

    from agentfleet import db
    from agentfleet.models import AlertRecord

    query = select(AlertRecord).order_by(col(AlertRecord.created_at).desc()).limit(limit)
    if kind is not None:
        query = query.where(AlertRecord.kind == kind.value)
    with db.session_scope(url) as session:
        return [AlertRow.model_validate(row.model_dump()) for row in session.exec(query).all()]


class AlertRow(BaseModel):
    """One ``alerts`` row as the CLI shows it."""

    digest_id: str
    kind: AlertKind
    severity: Severity
    count: int
    keys: list[str]
    text: str
    repeats: int
    channels: list[str]
    first_at: datetime
    last_at: datetime
    created_at: datetime
