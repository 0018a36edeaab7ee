"""The content policy: what a post must and must not contain, who may approve it, when it expires.

A policy is a YAML file (the packaged ``agentfleet/content/policies/default.yaml``, or the file
named by ``FLEET_CONTENT_POLICY``) validated once at start into a frozen :class:`Policy`. The model
round-trips through JSON, so the pipeline carries it in workflow payloads, and its
:attr:`Policy.label` (name, version and a digest of the rules) is recorded with every check: an
audit can tell which rules judged a post. Everything here is pure and deterministic (no clock, no
network), so it is safe in activities and cheap to test."""

from __future__ import annotations

import difflib
import functools
import hashlib
import importlib.resources
import importlib.util
import json
import re
from collections.abc import Iterable, Sequence
from datetime import timedelta
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, get_args
from urllib.parse import urlsplit

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    StringConstraints,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import ErrorDetails

from agentfleet.content.model import (
    MAX_LENGTH,
    ChannelKind,
    CheckOutcome,
    CheckResult,
    Scores,
    parse_duration,
)

CHECKS = ("banned_terms", "disclaimers", "pii", "links", "disclosure", "length", "format")
"""The names of the checks :func:`run_checks` returns, in the order it returns them."""

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


class PolicyError(ValueError):
    """A policy that cannot be used: one line, ``<file>: <field path>: <what is wrong>``."""


class _PolicyLoader(yaml.SafeLoader):
    """``yaml.safe_load`` that also rejects a key given twice (the later one would win silently)."""


def _unique_mapping(loader: yaml.SafeLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node)
        if isinstance(key, str) and key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r}", key_node.start_mark
            )
        if isinstance(key, str):
            seen.add(key)
    return loader.construct_mapping(node)


_PolicyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _unique_mapping)


def parse_policy(text: str, source: str) -> Policy:
    """Validate a policy's YAML; :class:`PolicyError` names ``source`` and the field."""
    try:
        data = yaml.load(text, Loader=_PolicyLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"line {mark.line + 1}: " if mark is not None else ""
        raise PolicyError(f"{source}: {where}{exc.problem or exc.context}") from exc
    except yaml.YAMLError as exc:
        raise PolicyError(f"{source}: {str(exc).strip().splitlines()[0]}") from exc
    if data is None:
        raise PolicyError(f"{source}: the file is empty")
    if not isinstance(data, dict):
        raise PolicyError(
            f"{source}: expected a mapping of policy fields (name, version, ...), got {_kind(data)}"
        )
    try:
        return Policy.model_validate(data)
    except ValidationError as exc:
        errors = exc.errors()
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        raise PolicyError(f"{source}: {_describe(errors[0])}{more}") from exc


def load_policy(path: Path) -> Policy:
    """Read and validate the policy file at ``path``; :class:`PolicyError` if it cannot be used."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise PolicyError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise PolicyError(f"{path}: is a directory, not a policy file") from None
    except UnicodeDecodeError:
        raise PolicyError(f"{path}: is not UTF-8 text") from None
    except OSError as exc:
        raise PolicyError(f"{path}: cannot read it ({exc.strerror})") from None
    return parse_policy(text, str(path))


DEFAULT_POLICY_PATH = "agentfleet/content/policies/default.yaml"


@functools.cache
def default_policy() -> Policy:
    """The packaged ``agentfleet/content/policies/default.yaml`` (read once)."""
    text = importlib.resources.files("agentfleet.content").joinpath("policies/default.yaml")
    return parse_policy(
        text.read_text(encoding="utf-8"), "agentfleet/content/policies/default.yaml"
    )


def effective_policy(path: Path | None) -> Policy:
    """The policy at ``path`` (``settings.content_policy``), or the packaged default when None."""
    return default_policy() if path is None else load_policy(path)


def _kind(value: object) -> str:
    names = {dict: "a mapping", list: "a list", str: "text", bool: "a boolean", type(None): "null"}
    return names.get(type(value), "a number" if isinstance(value, int | float) else "a value")


def _path(loc: Iterable[int | str]) -> str:
    path = ""
    for part in loc:
        if part == "[key]":
            continue
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    return path


def _model_at(loc: Sequence[int | str]) -> type[BaseModel] | None:
    """The model whose fields live at ``loc`` (for "did you mean" on unknown fields)."""
    model: type[BaseModel] | None = Policy
    for part in loc:
        if model is None:
            return None
        field = model.model_fields.get(part) if isinstance(part, str) else None
        if field is not None:
            model = _inner_model(field.annotation)
    return model


def _inner_model(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in get_args(annotation):
        found = _inner_model(arg)
        if found is not None:
            return found
    return None


def _describe(error: ErrorDetails) -> str:
    loc, kind, value = error["loc"], error["type"], error.get("input")
    context = error.get("ctx") or {}
    if kind == "extra_forbidden":
        field = str(loc[-1])
        model = _model_at(loc[:-1])
        fields = list(model.model_fields) if model else []
        close = difflib.get_close_matches(field, fields, n=1, cutoff=0.7)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        where = f"{_path(loc[:-1])}: " if len(loc) > 1 else ""
        return f"{where}unknown field {field!r}{hint}"
    if kind == "missing":
        return f"{_path(loc)}: is required"
    messages = {
        "list_type": f"expected a list, got {_kind(value)} {value!r}",
        "dict_type": f"expected a mapping, got {_kind(value)} {value!r}",
        "model_type": f"expected a mapping of fields, got {_kind(value)} {value!r}",
        "model_attributes_type": f"expected a mapping of fields, got {_kind(value)} {value!r}",
        "string_type": f"expected text, got {_kind(value)} {value!r}",
        "string_too_short": "must not be empty",
        "too_short": "must not be empty",
        "enum": f"{value!r} is not one of {context.get('expected', '')}",
        "int_type": f"expected a whole number, got {value!r}",
        "int_parsing": f"expected a whole number, got {value!r}",
        "int_from_float": f"expected a whole number, got {value!r}",
        "float_type": f"expected a number, got {value!r}",
        "float_parsing": f"expected a number, got {value!r}",
        "bool_type": f"expected true or false, got {value!r}",
        "bool_parsing": f"expected true or false, got {value!r}",
        "greater_than_equal": f"{value!r} is less than {context.get('ge')}",
        "less_than_equal": f"{value!r} is more than {context.get('le')}",
        "string_pattern_mismatch": f"{value!r} may hold only letters, digits, '.', '_' and '-'",
        "time_delta_type": f"{value!r} is not a duration like 90s, 15m, 4h or 2d",
        "time_delta_parsing": f"{value!r} is not a duration like 90s, 15m, 4h or 2d",
    }
    message = messages.get(kind, str(error["msg"]).removeprefix("Value error, "))
    return f"{_path(loc)}: {message}" if _path(loc) else message


_EMAIL = re.compile(r"(?<![\w.%+-])[\w.%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}\b")
_PHONE = re.compile(
    r"(?<![\w+.-])(?:"
    r"\+\d{1,3}[ .-]?(?:\(\d{1,4}\)[ .-]?)?\d{1,4}(?:[ .-]?\d{1,4}){1,5}"  # +44 20 7946 0958
    r"|(?:\(\d{2,4}\) ?|\d{2,4}[ -])\d{3,4}[ -]\d{3,4}"  # (555) 123-4567, 020 7946 0958
    r")(?![\w-])"
)
_HEX_KEY = re.compile(r"(?<![0-9A-Za-z])(?:0x)?[0-9a-fA-F]{64}(?![0-9A-Za-z])")
_URL = re.compile(  # a bare domain starts only where a host can: linear time on "a.a.a.a..."
    r"(?i)\b(?:https?://|www\.)[^\s<>\"'`]+"
    r"|(?<![a-z0-9.@-])(?:[a-z0-9-]+\.)+[a-z]{2,}/[^\s<>\"'`]*"
)
_TAG = re.compile(r"</?([A-Za-z][A-Za-z0-9-]*)(?:\s[^<>]*)?/?>")
SEED_WORDS = 12


@functools.lru_cache(maxsize=1024)
def _phrase(term: str) -> re.Pattern[str]:
    body = r"\s+".join(re.escape(part) for part in term.split())
    return re.compile(rf"(?<!\w){body}(?!\w)", re.IGNORECASE)


def _found(terms: Iterable[str], text: str) -> list[str]:
    """The terms that occur in ``text`` as whole words or phrases, in the order given."""
    return list(dict.fromkeys(term for term in terms if _phrase(term).search(text)))


def _contains(text: str, part: str) -> bool:
    """``part`` occurs in ``text``, ignoring case and how whitespace is spread."""
    return " ".join(part.split()).casefold() in " ".join(text.split()).casefold()


def _quote_all(items: Sequence[str], limit: int = 3) -> str:
    shown = ", ".join(repr(item) for item in items[:limit])
    return shown + (f" and {len(items) - limit} more" if len(items) > limit else "")


def _result(check: str, findings: Sequence[tuple[CheckOutcome, str]], ok: str) -> CheckResult:
    """The worst outcome among ``findings``, the reason listing them (fails first); ``ok`` when
    there are none."""
    if not findings:
        return CheckResult(check=check, outcome=CheckOutcome.PASS, reason=ok, hard=True)
    fail = any(outcome is CheckOutcome.FAIL for outcome, _ in findings)
    ordered = sorted(findings, key=lambda finding: finding[0] is not CheckOutcome.FAIL)
    reasons = list(dict.fromkeys(reason for _, reason in ordered))
    shown = "; ".join(reasons[:3]) + (f"; and {len(reasons) - 3} more" if len(reasons) > 3 else "")
    outcome = CheckOutcome.FAIL if fail else CheckOutcome.NEEDS_REVIEW
    return CheckResult(check=check, outcome=outcome, reason=shown, hard=True)


def _outcome(action: PiiAction | LinkAction) -> CheckOutcome:
    return CheckOutcome.FAIL if action == "fail" else CheckOutcome.NEEDS_REVIEW


@functools.cache
def _seed_words() -> frozenset[str]:
    """BIP-39 English words from eth-account (located, not imported); empty if absent."""
    spec = importlib.util.find_spec("eth_account")
    if spec is None or spec.origin is None:
        return frozenset()
    wordlist = Path(spec.origin).parent / "hdaccount" / "wordlist" / "english.txt"
    try:
        return frozenset(wordlist.read_text(encoding="utf-8").split())
    except OSError:
        return frozenset()


def _seed_phrase_runs(text: str) -> list[int]:
    words, runs, run = _seed_words(), [], 0
    for match in re.finditer(r"[a-z]+", text.lower()):
        if match.group() in words:
            run += 1
            continue
        if run >= SEED_WORDS:
            runs.append(run)
        run = 0
    return runs + ([run] if run >= SEED_WORDS else [])


def _pii(rule: PiiRule, text: str) -> CheckResult:
    findings: list[tuple[CheckOutcome, str]] = []
    if rule.emails is not PiiAction.OFF:
        for match in _EMAIL.finditer(text):
            local, domain = match.group().split("@", 1)
            findings.append((_outcome(rule.emails), f"email address {local[0]}***@{domain}"))
    if rule.phones is not PiiAction.OFF:
        for match in _PHONE.finditer(text):
            digits = re.sub(r"\D", "", match.group())
            if 8 <= len(digits) <= 15:
                findings.append((_outcome(rule.phones), f"phone number ending in {digits[-2:]}"))
    if rule.private_keys is not PiiAction.OFF:
        for match in _HEX_KEY.finditer(text):
            if not text[: match.start()].endswith("/tx/"):  # a transaction link, not a key
                reason = "a 64-hex-digit string that looks like a private key"
                findings.append((_outcome(rule.private_keys), reason))
        for length in _seed_phrase_runs(text):
            reason = f"a {length}-word sequence that looks like a wallet seed phrase"
            findings.append((_outcome(rule.private_keys), reason))
    return _result("pii", findings, "no email addresses, phone numbers or private keys")


def _host(url: str) -> str:
    try:
        host = urlsplit(url if "://" in url else f"http://{url}").hostname
    except ValueError:
        host = None
    return (host or url).rstrip(".").lower()


def _links(rule: LinkRule, text: str) -> CheckResult:
    hosts = [_host(match.group().rstrip(".,;:!?)]}*_")) for match in _URL.finditer(text)]
    if ANYONE in rule.allow:
        outside: list[str] = []
    else:
        outside = [
            host
            for host in dict.fromkeys(hosts)
            if not any(host == domain or host.endswith(f".{domain}") for domain in rule.allow)
        ]
    allowed = ", ".join(rule.allow) or "nothing"
    findings = [
        (_outcome(rule.action), f"link to {host} is not on the allow list ({allowed})")
        for host in outside
    ]
    return _result("links", findings, f"{len(hosts)} links, all allowed" if hosts else "no links")


def _format(rule: ChannelRule, channel: ChannelKind, text: str) -> CheckResult:
    findings: list[tuple[CheckOutcome, str]] = []
    if rule.format is TextFormat.PLAIN:
        tag = _TAG.search(text)
        if tag is not None:
            shown = tag.group()[:40]
            reason = f"raw HTML tag {shown!r} in plain text (the {channel} format is plain)"
            findings.append((CheckOutcome.FAIL, reason))
    elif rule.format is TextFormat.HTML:
        open_tags: list[str] = []
        for tag in _TAG.finditer(text):
            name = tag.group(1).lower()
            if tag.group().startswith("</"):
                if not open_tags or open_tags.pop() != name:
                    findings.append((CheckOutcome.FAIL, f"unbalanced HTML tag {tag.group()!r}"))
                    break
            elif not tag.group().endswith("/>"):
                open_tags.append(name)
        if open_tags and not findings:
            findings.append((CheckOutcome.FAIL, f"unclosed HTML tag <{open_tags[-1]}>"))
    elif text.count("```") % 2:
        findings.append((CheckOutcome.FAIL, "unclosed ``` code block in markdown"))
    return _result("format", findings, f"valid {rule.format} text")


def run_checks(
    policy: Policy, text: str, *, channel: ChannelKind, max_length: int, disclosure: str
) -> list[CheckResult]:
    """One result per name in :data:`CHECKS`, in that order; every ``fail`` is hard.

    Reasons say what was found; personal data in them is masked and a private-key-looking string
    is never repeated. The length limit is the stricter of ``max_length`` (the channel's) and
    the policy's rule for ``channel``; ``disclosure`` is the bot's disclosure sentence.
    """
    banned = _found(policy.banned_terms, text)
    banned_reason = f"banned term{'s' if len(banned) > 1 else ''} {_quote_all(banned)}"
    missing = []
    for disclaimer in policy.disclaimers:
        triggers = _found(disclaimer.when_any, text)
        if triggers and not _contains(text, disclaimer.text):
            missing.append(f"mentions {triggers[0]!r} but lacks the disclaimer {disclaimer.text!r}")
    rule = policy.channels.get(channel, ChannelRule())
    limit = min(max_length, rule.max_length) if rule.max_length is not None else max_length
    disclosed: list[str] = []
    if policy.disclosure.required and not disclosure.strip():
        disclosed.append("the policy requires a disclosure but the bot has none")
    elif policy.disclosure.required and not _contains(text, disclosure):
        disclosed.append(f"lacks the disclosure {disclosure!r}")
    too_long = f"{len(text)} characters, over the {channel} limit of {limit}"
    fail = CheckOutcome.FAIL
    return [
        _result("banned_terms", [(fail, banned_reason)] if banned else [], "no banned terms"),
        _result("disclaimers", [(fail, reason) for reason in missing], "no disclaimer missing"),
        _pii(policy.pii, text),
        _links(policy.links, text),
        _result(
            "disclosure",
            [(fail, reason) for reason in disclosed],
            "has the disclosure" if policy.disclosure.required else "disclosure not required",
        ),
        _result(
            "length",
            [(fail, too_long)] if len(text) > limit else [],
            f"{len(text)} of {limit} characters",
        ),
        _format(rule, channel, text),
    ]


def _append(text: str, addition: str) -> str:
    base = text.rstrip()
    return f"{base}\n\n{addition}" if base else addition


def with_disclosure(text: str, disclosure: str) -> str:
    """``text`` ending with the bot's disclosure (after a blank line) unless it already has it;
    idempotent. Apply after :func:`with_disclaimers` so the disclosure comes last."""
    if not disclosure.strip() or _contains(text, disclosure):
        return text
    return _append(text, disclosure.strip())


def with_disclaimers(policy: Policy, text: str) -> str:
    """``text`` with every disclaimer its content calls for and lacks appended; idempotent."""
    result = text
    for _ in range(len(policy.disclaimers)):  # an added disclaimer may trigger another rule
        before = result
        for rule in policy.disclaimers:
            if _found(rule.when_any, result) and not _contains(result, rule.text):
                result = _append(result, rule.text)
        if result == before:
            break
    return result
