"""The checks a content policy runs on a text, and the amendments that make a text comply.

:func:`run_checks` returns one :class:`~agentfleet.content.model.CheckResult` per name in
:data:`CHECKS`; :func:`with_disclaimers` and :func:`with_disclosure` add what the policy and the
bot call for. Pure functions of the policy and the text."""

from __future__ import annotations

import functools
import importlib.util
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from urllib.parse import urlsplit

from agentfleet.content.model import ChannelKind, CheckOutcome, CheckResult
from agentfleet.content.policy.rules import (
    ANYONE,
    ChannelRule,
    LinkAction,
    LinkRule,
    PiiAction,
    PiiRule,
    Policy,
    TextFormat,
)

CHECKS = ("banned_terms", "disclaimers", "pii", "links", "disclosure", "length", "format")
"""The names of the checks :func:`run_checks` returns, in the order it returns them."""

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
