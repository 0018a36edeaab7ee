"""The rules of a content policy as a frozen pydantic model, and the approval decisions they make.

The model round-trips through JSON, so the pipeline carries it in workflow payloads, and its
:attr:`Policy.label` (name, version and a digest of the rules) is recorded with every check: an
audit can tell which rules judged a post."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Sequence
from datetime import timedelta
from enum import StrEnum
from typing import Annotated

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    StringConstraints,
    field_validator,
    model_validator,
)

from agentfleet.content.model import (
    MAX_LENGTH,
    ChannelKind,
    CheckOutcome,
    CheckResult,
    Scores,
    parse_duration,
)

ANYONE = "*"


class PiiAction(StrEnum):
    FAIL = "fail"
    NEEDS_REVIEW = "needs_review"
    OFF = "off"


class LinkAction(StrEnum):
    FAIL = "fail"
    NEEDS_REVIEW = "needs_review"


class TextFormat(StrEnum):
    PLAIN = "plain"
    MARKDOWN = "markdown"
    HTML = "html"


def _off_from_yaml(value: object) -> object:
    """YAML 1.1 reads an unquoted ``off`` as false; in an action it can only mean "off"."""
    return PiiAction.OFF if value is False else value


def _to_timedelta(value: object) -> object:
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not a duration like 90s, 15m, 4h or 2d")
    if isinstance(value, int | float):
        return timedelta(seconds=value)
    if isinstance(value, str) and not value.startswith("P"):  # "P..." is ISO 8601: pydantic's
        return parse_duration(value)
    return value


def _positive(value: timedelta) -> timedelta:
    if value <= timedelta(0):
        raise ValueError("a duration must be longer than 0s")
    return value


def format_duration(value: timedelta) -> str:
    """The shortest ``90s``/``15m``/``4h``/``2d`` form; :func:`parse_duration` reads it back."""
    seconds = value.total_seconds()
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{int(seconds)}s" if seconds.is_integer() else f"{seconds:.6f}".rstrip("0") + "s"


Duration = Annotated[
    timedelta,
    BeforeValidator(_to_timedelta),
    PlainSerializer(format_duration, return_type=str, when_used="json"),
]
Action = Annotated[PiiAction, BeforeValidator(_off_from_yaml)]
Text = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1)]


class _Rules(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DisclaimerRule(_Rules):
    """When the text mentions any of ``when_any`` (whole words, any case), ``text`` must appear."""

    when_any: list[Text] = Field(min_length=1)
    text: Text


class PiiRule(_Rules):
    """What finding personal data does. ``private_keys`` covers 64-hex-digit strings (with or
    without ``0x``) and runs of 12 or more BIP-39 words that look like a wallet seed phrase."""

    emails: Action = PiiAction.NEEDS_REVIEW
    phones: Action = PiiAction.NEEDS_REVIEW
    private_keys: Action = PiiAction.FAIL


class LinkRule(_Rules):
    """Domains links may point to (subdomains included; ``["*"]``: any); ``action`` for others."""

    allow: list[Text] = Field(default_factory=list)
    action: LinkAction = LinkAction.NEEDS_REVIEW

    @field_validator("allow")
    @classmethod
    def _domains(cls, value: list[str]) -> list[str]:
        domains = []
        for entry in value:
            domain = entry.lower().removeprefix("*.").strip(".")
            if entry != ANYONE and not re.fullmatch(r"[a-z0-9-]+(\.[a-z0-9-]+)*", domain):
                raise ValueError(f"{entry!r} is not a domain like example.com")
            domains.append(entry if entry == ANYONE else domain)
        return domains


class DisclosureRule(_Rules):
    required: bool = True


class ChannelRule(_Rules):
    """Per channel kind: a length cap (else the channel's own) and the text format it takes."""

    max_length: int | None = Field(default=None, ge=1)
    format: TextFormat = TextFormat.PLAIN


class AutoApproveRule(_Rules):
    """Items that skip human approval: every check passed, and channel, bot and scores fit."""

    channels: list[ChannelKind] = Field(default_factory=list)
    """Channel kinds auto-approval applies to; empty: all."""
    bots: list[Text] = Field(default_factory=lambda: [ANYONE])
    min_judge: float | None = Field(default=None, ge=0, le=100)
    """Lowest LLM judge score (0-100); when set, an item without a judge score is not approved."""
    max_toxicity: float = Field(ge=0, le=1)


class ApprovalPolicy(_Rules):
    """Who decides on an item and how long they have. Names compare case-insensitively."""

    approvers: list[Text] = Field(default_factory=lambda: [ANYONE], min_length=1)
    escalation: list[Text] = Field(default_factory=list)
    """A second group that may also decide once the item has been escalated."""
    allow_self_approval: bool = False
    remind_after: Duration | None = None
    escalate_after: Duration | None = None
    expire_after: Duration = timedelta(hours=72)
    auto_approve: AutoApproveRule | None = None
    """Absent: every item waits for a person."""
    notify_channel: Text | None = None
    """A channel (``fleet channel add``) that gets the reminder and escalation notices; absent:
    they are audit rows and worker log lines only."""

    @field_validator("remind_after", "escalate_after", "expire_after")
    @classmethod
    def _positive_duration(cls, value: timedelta | None) -> timedelta | None:
        return None if value is None else _positive(value)

    @model_validator(mode="after")
    def _before_expiry(self) -> ApprovalPolicy:
        for name in ("remind_after", "escalate_after"):
            value = getattr(self, name)
            if value is not None and value >= self.expire_after:
                raise ValueError(
                    f"{name} ({format_duration(value)}) must be shorter than "
                    f"expire_after ({format_duration(self.expire_after)})"
                )
        return self

    def may_decide(self, approver: str, *, submitted_by: str | None, escalated: bool) -> str | None:
        """None when ``approver`` may approve or reject the item, else the one-line reason.

        The escalation group counts only once ``escalated``; the submitter never decides on
        their own brief unless ``allow_self_approval``.
        """
        name = approver.strip()
        if not name:
            return "an approver name is required"
        key = name.casefold()
        approvers = {entry.casefold() for entry in self.approvers}
        escalation = {entry.casefold() for entry in self.escalation}
        allowed = ANYONE in approvers or key in approvers
        if not allowed and escalated:
            allowed = ANYONE in escalation or key in escalation
        if not allowed:
            if key in escalation or ANYONE in escalation:
                return (
                    f"{name!r} is in the escalation group and may decide only once the item "
                    "has been escalated"
                )
            known = f"approvers: {', '.join(self.approvers)}"
            if escalated and self.escalation:
                known += f"; escalation: {', '.join(self.escalation)}"
            return f"unknown approver {name!r} ({known})"
        if (
            not self.allow_self_approval
            and submitted_by is not None
            and submitted_by.strip().casefold() == key
        ):
            return (
                f"{name} submitted this brief and may not approve it "
                "(policy: allow_self_approval is false)"
            )
        return None

    def auto_approves(
        self, channel: ChannelKind, bot: str, scores: Scores, checks: Sequence[CheckResult]
    ) -> bool:
        """True only with an ``auto_approve`` block, every check passed (a ``needs_review`` is a
        person's job), and channel, bot, length, toxicity and judge score within the block."""
        rule = self.auto_approve
        if rule is None or any(check.outcome is not CheckOutcome.PASS for check in checks):
            return False
        if rule.channels and channel not in rule.channels:
            return False
        bots = {entry.casefold() for entry in rule.bots}
        if ANYONE not in bots and bot.casefold() not in bots:
            return False
        if not scores.length_ok or scores.toxicity > rule.max_toxicity:
            return False
        return rule.min_judge is None or (
            scores.judge is not None and scores.judge >= rule.min_judge
        )


class Policy(_Rules):
    """One versioned set of content rules (see ``agentfleet/content/policies/default.yaml``)."""

    name: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")]
    version: int = Field(ge=1)
    banned_terms: list[Text] = Field(default_factory=list)
    """Case-insensitive whole words or phrases that fail a text."""
    disclaimers: list[DisclaimerRule] = Field(default_factory=list)
    pii: PiiRule = PiiRule()
    links: LinkRule = LinkRule()
    disclosure: DisclosureRule = DisclosureRule()
    channels: dict[ChannelKind, ChannelRule] = Field(default_factory=dict)
    moderation: bool = False
    """Ask an OpenAI-compatible moderation endpoint too, when one is configured (an activity's
    job; the policy only carries the flag)."""
    approval: ApprovalPolicy = ApprovalPolicy()

    @model_validator(mode="after")
    def _within_channel_limits(self) -> Policy:
        for kind, rule in self.channels.items():
            if rule.max_length is not None and rule.max_length > MAX_LENGTH[kind]:
                raise ValueError(
                    f"channels.{kind}.max_length: {rule.max_length} is over the {kind} limit "
                    f"of {MAX_LENGTH[kind]}"
                )
        return self

    @property
    def digest(self) -> str:
        """sha256 (hex) of the canonical JSON of the rules: equal rules, equal digest."""
        canonical = json.dumps(
            self.model_dump(mode="json"), sort_keys=True, separators=(",", ":"), ensure_ascii=False
        )
        return hashlib.sha256(canonical.encode()).hexdigest()

    @property
    def label(self) -> str:
        """``name@vN+digest8``: recorded with each check result."""
        return f"{self.name}@v{self.version}+{self.digest[:8]}"

    def summary(self) -> str:
        """One line that says what the rules do (``fleet policy check``)."""
        pii = self.pii
        allow = self.links.allow
        links = "any links" if ANYONE in allow else f"links to {', '.join(allow) or 'nowhere'}"
        channels = ", ".join(
            f"{kind} {rule.format}" + (f" <={rule.max_length}" if rule.max_length else "")
            for kind, rule in sorted(self.channels.items())
        )
        approval = self.approval
        approvers = "anyone" if ANYONE in approval.approvers else ", ".join(approval.approvers)
        auto = approval.auto_approve
        auto_text = "none"
        if auto is not None:
            kinds = ", ".join(auto.channels) if auto.channels else "all channels"
            auto_text = f"{kinds} (toxicity <= {auto.max_toxicity:g})"
        return (
            f"{_count(self.banned_terms, 'banned term')}; "
            f"{_count(self.disclaimers, 'disclaimer rule')}; "
            f"pii emails={pii.emails} phones={pii.phones} private_keys={pii.private_keys}; "
            f"{links} (else {self.links.action}); "
            f"disclosure {'required' if self.disclosure.required else 'optional'}; "
            f"channels: {channels or 'channel defaults'}; "
            f"moderation {'on' if self.moderation else 'off'}; approvers: {approvers}; "
            f"expire after {format_duration(approval.expire_after)}; auto-approve: {auto_text}"
        )


def _count(items: Sequence[object], noun: str) -> str:
    return f"{len(items)} {noun}{'' if len(items) == 1 else 's'}"
