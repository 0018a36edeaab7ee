"""What the content pipeline works with: content states, channels, drafts, scores, checks, receipts.

These models are the contract between ``workflows/content_pipeline.py``, the activities that draft,
score, check and publish, the channel adapters (:mod:`agentfleet.channels`) and the ``fleet
content`` / ``fleet channel`` commands. Secrets (bot tokens, SMTP passwords, webhook secrets) are
never in them: adapters read those from settings.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

CONTENT_ID_PATTERN = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?$")
CHANNEL_NAME_PATTERN = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,46}[a-z0-9])?$")


def content_workflow_id(content_id: str) -> str:
    """The pipeline's workflow id: the business key ``content-{id}``."""
    return f"content-{content_id}"


class ContentState(StrEnum):
    DRAFTING = "drafting"
    CHECKING = "checking"
    AWAITING_APPROVAL = "awaiting_approval"
    APPROVED = "approved"
    SCHEDULED = "scheduled"
    PUBLISHING = "publishing"
    PUBLISHED = "published"
    REJECTED = "rejected"
    EXPIRED = "expired"
    CANCELLED = "cancelled"
    UNCONFIRMED = "unconfirmed"


FINAL_STATES = frozenset(
    {
        ContentState.PUBLISHED,
        ContentState.REJECTED,
        ContentState.EXPIRED,
        ContentState.CANCELLED,
        ContentState.UNCONFIRMED,
    }
)
"""States a pipeline ends in (``unconfirmed`` waits for a human, outside the workflow)."""


class ChannelKind(StrEnum):
    TELEGRAM = "telegram"
    EMAIL = "email"
    WEBHOOK = "webhook"


class RateLimit(BaseModel):
    """A token bucket: ``rate_per_s`` tokens a second, at most ``burst`` saved up."""

    model_config = ConfigDict(extra="forbid")

    rate_per_s: float = Field(gt=0, le=1000)
    burst: int = Field(default=1, ge=1, le=1000)


MAX_LENGTH: dict[ChannelKind, int] = {
    ChannelKind.TELEGRAM: 4096,
    ChannelKind.EMAIL: 100_000,
    ChannelKind.WEBHOOK: 65_536,
}
"""Longest message text per kind (Telegram's sendMessage limit is 4096 characters)."""


def default_limit(kind: ChannelKind, target: str) -> RateLimit:
    """The published limit for one destination of ``kind``.

    Telegram Bot API: about 1 message a second in one chat, 20 a minute in a group (negative
    chat ids and ``@channel`` usernames), 30 a second overall. SMTP and webhooks have no published
    limit: a conservative default that ``fleet channel add --rate`` overrides.
    """
    if kind is ChannelKind.TELEGRAM:
        if target.startswith(("-", "@")):
            return RateLimit(rate_per_s=20 / 60, burst=1)
        return RateLimit(rate_per_s=1.0, burst=1)
    if kind is ChannelKind.EMAIL:
        return RateLimit(rate_per_s=1.0, burst=5)
    return RateLimit(rate_per_s=10.0, burst=10)


class ChannelConfig(BaseModel):
    """One publishing destination: a Telegram chat, an email address, a webhook URL."""

    model_config = ConfigDict(extra="forbid")

    name: str
    kind: ChannelKind
    target: str = Field(min_length=1, max_length=2048)
    """Telegram chat id (or ``@channelusername``), email recipient, or webhook URL."""
    limit: RateLimit
    max_length: int = Field(ge=1, le=1_000_000)

    @field_validator("name")
    @classmethod
    def _slug(cls, value: str) -> str:
        if not CHANNEL_NAME_PATTERN.match(value):
            raise ValueError(
                f"channel name {value!r} must be a slug: lowercase letters, digits and '-'"
            )
        return value


class InlineButton(BaseModel):
    """A Telegram inline keyboard button; pressing it sends ``data`` (at most 64 bytes) to the
    bot as a callback query, which the command center answers."""

    text: str
    data: str


def approval_buttons(content_id: str) -> list[list[InlineButton]]:
    """Approve / Reject / Edit for an item awaiting approval (the command center's
    ``a:``/``r:``/``e:`` callbacks)."""
    return [
        [
            InlineButton(text="Approve", data=f"a:{content_id}"),
            InlineButton(text="Reject", data=f"r:{content_id}"),
            InlineButton(text="Edit", data=f"e:{content_id}"),
        ]
    ]


class OutboundMessage(BaseModel):
    """What a channel adapter sends. ``idempotency_key`` is stable per content item: the
    webhook's ``webhook-id``, the email's Message-ID. ``buttons``: Telegram only (an inline
    keyboard); other channels send the text alone."""

    content_id: str
    bot: str
    text: str
    subject: str = ""
    idempotency_key: str
    buttons: list[list[InlineButton]] = Field(default_factory=list)


class SendReceipt(BaseModel):
    """Proof of a send: the channel's own id for the message."""

    channel: str
    message_id: str
    sent_at: datetime
    detail: dict[str, Any] = Field(default_factory=dict)


class CheckOutcome(StrEnum):
    PASS = "pass"  # noqa: S105 - a check outcome, not a password
    FAIL = "fail"
    NEEDS_REVIEW = "needs_review"


class CheckResult(BaseModel):
    """One policy check's verdict. A ``fail`` of a ``hard`` check rejects the item."""

    check: str
    outcome: CheckOutcome
    reason: str = ""
    hard: bool = True


class Scores(BaseModel):
    """Scores of one text, all computed offline except ``judge`` (an LLM, when configured)."""

    readability: float
    """Flesch reading ease (higher is easier; 60-70 is plain English)."""
    grade: float
    """Flesch-Kincaid grade level."""
    length: int
    length_ok: bool
    sentiment: float
    """VADER compound score, -1 (negative) to 1 (positive)."""
    toxicity: float
    """0 (clean) to 1; share of words on the offline profanity list, capped."""
    judge: float | None = None
    """0-100 from an LLM judge, when ``FLEET_OPENAI_BASE_URL`` is set."""
    scorer: str = "offline"


class Draft(BaseModel):
    """A text and where it came from (recorded with the draft in the audit trail)."""

    text: str
    subject: str = ""
    generator: str
    """``template:<name>@<version>`` or ``llm:<model>``."""
    template_version: str | None = None
    prompt_version: str | None = None


class Decision(StrEnum):
    APPROVE = "approve"
    REJECT = "reject"
    EDIT = "edit"


DURATION_PATTERN = re.compile(r"^(\d+(?:\.\d+)?)\s*(s|m|h|d)$")


def parse_duration(text: str) -> timedelta:
    """``"90s"``, ``"15m"``, ``"4h"``, ``"2d"`` -> timedelta; ValueError with one readable line."""
    match = DURATION_PATTERN.match(text.strip())
    if not match:
        raise ValueError(f"{text!r} is not a duration like 90s, 15m, 4h or 2d")
    amount, unit = float(match.group(1)), match.group(2)
    seconds = {"s": 1, "m": 60, "h": 3600, "d": 86400}[unit]
    return timedelta(seconds=amount * seconds)


class ContentOrder(BaseModel):
    """What ``fleet content submit`` asks for: the input of ``ContentPipelineWorkflow``."""

    content_id: str
    bot: str
    channel: str
    brief: str = Field(min_length=1, max_length=4000)
    submitted_by: str
    publish_at: datetime | None = None
    """None: publish as soon as approved; else a timezone-aware time (a durable timer)."""
    needs_human: bool = False
    """A human must approve it whatever the policy's ``auto_approve`` says (an agent bot's
    submission: agents never publish on their own)."""


class ContentContext(BaseModel):
    """What the pipeline reads once at its start: the bot's disclosure, the channel and the
    policy (its label is recorded with every check)."""

    bot: str
    owner: str
    disclosure: str
    channel: ChannelConfig
    policy: dict[str, Any]
    """The policy model as JSON (``agentfleet.content.policy.rules.Policy``)."""
    policy_label: str


class DraftRequest(BaseModel):
    content_id: str
    bot: str
    brief: str
    channel: ChannelKind
    max_length: int


class ReviewRequest(BaseModel):
    """Score and check one text against the pipeline's policy."""

    content_id: str
    text: str
    channel: ChannelKind
    max_length: int
    disclosure: str
    policy: dict[str, Any]


class Review(BaseModel):
    scores: Scores
    checks: list[CheckResult]

    @property
    def failed(self) -> list[CheckResult]:
        return [c for c in self.checks if c.outcome is CheckOutcome.FAIL and c.hard]

    @property
    def needs_review(self) -> bool:
        return any(c.outcome is CheckOutcome.NEEDS_REVIEW for c in self.checks)


class ApproveInput(BaseModel):
    approver: str = Field(min_length=1, max_length=200)
    note: str = Field(default="", max_length=2000)


class RejectInput(BaseModel):
    approver: str = Field(min_length=1, max_length=200)
    reason: str = Field(min_length=1, max_length=2000)


class EditInput(BaseModel):
    approver: str = Field(min_length=1, max_length=200)
    text: str = Field(min_length=1, max_length=100_000)


class CancelInput(BaseModel):
    actor: str = Field(min_length=1, max_length=200)
    reason: str = Field(default="cancelled", max_length=2000)


class ResolveOutcome(StrEnum):
    PUBLISHED = "published"
    NOT_PUBLISHED = "not_published"
    RETRY = "retry"


class ResolveInput(BaseModel):
    """A human's answer to an ``unconfirmed`` send, after looking at the channel."""

    actor: str = Field(min_length=1, max_length=200)
    outcome: ResolveOutcome
    message_id: str | None = None


class PublishStatus(StrEnum):
    SENT = "sent"
    UNCONFIRMED = "unconfirmed"
    REFUSED = "refused"


class PublishRequest(BaseModel):
    """A content item handed to ``publisher-{channel}``; the answer goes back by the
    ``publish_result`` signal to ``reply_to`` (the pipeline's workflow id)."""

    content_id: str
    reply_to: str | None
    channel: ChannelConfig
    message: OutboundMessage
    attempt: int = 0
    """Raised when a human says to send an unconfirmed item again: the publisher then treats
    the request as new instead of answering its earlier result."""


class PublishResult(BaseModel):
    content_id: str
    status: PublishStatus
    attempt: int = 0
    receipt: SendReceipt | None = None
    reason: str = ""


class ContentView(BaseModel):
    """The pipeline so far (the ``status`` query; ``fleet content show``)."""

    content_id: str
    bot: str
    channel: str
    brief: str
    submitted_by: str
    state: ContentState
    text: str | None = None
    subject: str = ""
    draft: Draft | None = None
    scores: Scores | None = None
    checks: list[CheckResult] = Field(default_factory=list)
    policy: str | None = None
    publish_at: datetime | None = None
    escalated: bool = False
    decided_by: str | None = None
    decision_note: str = ""
    receipt: SendReceipt | None = None
    reason: str = ""
    revision: int = 0
    """Counts edits: each edit goes back through scoring and checks."""


class Notice(BaseModel):
    """A reminder or escalation notice for the approvers' channel (the policy's
    ``approval.notify_channel``)."""

    content_id: str
    channel: str
    kind: str
    """``reminder`` or ``escalated``."""
    text: str


NOTICE_DISCLOSURE = "Automated notice from agentfleet."


class AuditEntry(BaseModel):
    """One step of an item's audit trail (one ``audit_events`` row, ``content.<step>``)."""

    step: str
    actor: str
    detail: dict[str, Any] = Field(default_factory=dict)
    key: str
    """Unique per step of the item (a retried write finds its row)."""


class ContentRecord(BaseModel):
    """Audit rows to write and the item's row to bring in step, in one activity."""

    view: ContentView
    workflow_id: str
    entries: list[AuditEntry] = Field(default_factory=list)
