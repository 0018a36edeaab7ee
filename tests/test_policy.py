"""The content policy: loading with one-line errors, every check, approval rules, `fleet policy`."""

from __future__ import annotations

import json
import time
from datetime import timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner

from agentfleet.content.model import ChannelKind, CheckOutcome, CheckResult, Scores
from agentfleet.content.policy.checks import (
    CHECKS,
    run_checks,
    with_disclaimers,
    with_disclosure,
)
from agentfleet.content.policy.loading import (
    PolicyError,
    default_policy,
    effective_policy,
    load_policy,
    parse_policy,
)
from agentfleet.content.policy.rules import ApprovalPolicy, AutoApproveRule, Policy
from starters.cli.policy import app

DISCLOSURE = "I am an automated account run by Acme."
PRIVATE_KEY = "4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318"
DEFAULT_LABEL = "default@v2+cd8661df"
"""Changing default.yaml changes this: bump its version too (the label is in every audit row)."""


def checks(text: str, policy: Policy | None = None, **options: object) -> dict[str, CheckResult]:
    arguments: dict[str, object] = {
        "channel": ChannelKind.TELEGRAM,
        "max_length": 4096,
        "disclosure": DISCLOSURE,
    }
    arguments.update(options)
    results = run_checks(policy or default_policy(), text, **arguments)  # type: ignore[arg-type]
    return {result.check: result for result in results}


def clean_text(body: str = "Our weekly update: the team shipped the new dashboard.") -> str:
    return with_disclosure(body, DISCLOSURE)


def policy_with(**fields: object) -> Policy:
    return Policy.model_validate({"name": "test", "version": 1, **fields})


def scores(**fields: object) -> Scores:
    values: dict[str, object] = {
        "readability": 70.0,
        "grade": 6.0,
        "length": 100,
        "length_ok": True,
        "sentiment": 0.5,
        "toxicity": 0.0,
    }
    values.update(fields)
    return Scores.model_validate(values)


def passed(*names: str) -> list[CheckResult]:
    return [CheckResult(check=name, outcome=CheckOutcome.PASS) for name in names or CHECKS]


# Loading


def test_default_policy_loads_with_the_documented_rules() -> None:
    policy = default_policy()
    assert (policy.name, policy.version, policy.moderation) == ("default", 2, True)
    assert {"guaranteed returns", "risk-free", "get rich quick", "100x", "pump"} <= set(
        policy.banned_terms
    )
    assert policy.disclaimers[0].text == "Not financial advice."
    assert policy.channels[ChannelKind.TELEGRAM].max_length == 4096
    approval = policy.approval
    assert approval.approvers == ["*"] and not approval.allow_self_approval
    assert (approval.remind_after, approval.escalate_after, approval.expire_after) == (
        timedelta(hours=4),
        timedelta(hours=24),
        timedelta(hours=72),
    )
    assert approval.auto_approve is not None
    assert approval.auto_approve.channels == [ChannelKind.WEBHOOK]
    assert approval.auto_approve.max_toxicity == 0.2


def test_default_policy_label_is_pinned() -> None:
    assert default_policy().label == DEFAULT_LABEL, "default.yaml changed: bump its version"


def test_digest_is_stable_across_key_order_reloads_and_json() -> None:
    text = "name: p\nversion: 3\nbanned_terms: [spam]\npii: {emails: fail, phones: 'off'}\n"
    reordered = "pii: {phones: 'off', emails: fail}\nbanned_terms: [spam]\nversion: 3\nname: p\n"
    policy = parse_policy(text, "a.yaml")
    assert parse_policy(reordered, "b.yaml").digest == policy.digest
    assert Policy.model_validate_json(policy.model_dump_json()).digest == policy.digest
    assert len(policy.digest) == 64 and policy.label == f"p@v3+{policy.digest[:8]}"
    changed = parse_policy(text.replace("spam", "scam"), "a.yaml")
    assert changed.digest != policy.digest


def test_policy_json_round_trip_equals() -> None:
    policy = policy_with(
        banned_terms=["x"],
        disclaimers=[{"when_any": ["price"], "text": "Not financial advice."}],
        links={"allow": ["*.Example.com"], "action": "fail"},
        channels={"telegram": {"max_length": 100, "format": "html"}},
        approval={
            "approvers": ["ann", "bob"],
            "escalation": ["carol"],
            "remind_after": 90,
            "escalate_after": "1.5h",
            "expire_after": "2d",
            "auto_approve": {"channels": ["webhook"], "min_judge": 70, "max_toxicity": 0.1},
        },
    )
    dumped = json.loads(policy.model_dump_json())
    assert dumped["approval"]["remind_after"] == "90s"
    assert dumped["approval"]["escalate_after"] == "90m"
    assert dumped["links"]["allow"] == ["example.com"]
    assert Policy.model_validate_json(policy.model_dump_json()) == policy


def test_durations_accept_strings_and_seconds() -> None:
    approval = ApprovalPolicy.model_validate(
        {"remind_after": 90, "escalate_after": "15m", "expire_after": 7200.5}
    )
    assert approval.remind_after == timedelta(seconds=90)
    assert approval.escalate_after == timedelta(minutes=15)
    assert ApprovalPolicy.model_validate_json(approval.model_dump_json()) == approval


def test_unquoted_off_in_yaml_means_the_action_off() -> None:
    policy = parse_policy("name: p\nversion: 1\npii: {emails: off}\n", "p.yaml")
    assert policy.pii.emails == "off"


BAD_POLICIES = [
    (
        "name: x\nversion: 1\napproval:\n  approvers: a: b\n",
        "policy.yaml: line 4: mapping values are not allowed here",
    ),
    (
        "name: x\nversion: 1\nbanned_term: [a]\n",
        "policy.yaml: unknown field 'banned_term' (did you mean 'banned_terms'?)",
    ),
    (
        "name: x\nversion: 1\napproval: {expire_afer: 2d}\n",
        "policy.yaml: approval: unknown field 'expire_afer' (did you mean 'expire_after'?)",
    ),
    (
        "name: x\nversion: 1\napproval: {expire_after: 3x}\n",
        "policy.yaml: approval.expire_after: '3x' is not a duration like 90s, 15m, 4h or 2d",
    ),
    (
        "name: x\nversion: 1\napproval: {approvers: alice}\n",
        "policy.yaml: approval.approvers: expected a list, got text 'alice'",
    ),
    ("name: x\nversion: 1\nversion: 2\n", "policy.yaml: line 3: duplicate key 'version'"),
    ("", "policy.yaml: the file is empty"),
    (
        "- name\n",
        "policy.yaml: expected a mapping of policy fields (name, version, ...), got a list",
    ),
    ("name: x\n", "policy.yaml: version: is required"),
    ("name: x\nversion: 0\n", "policy.yaml: version: 0 is less than 1"),
    (
        "name: x\nversion: 1\npii: {emails: maybe}\n",
        "policy.yaml: pii.emails: 'maybe' is not one of 'fail', 'needs_review' or 'off'",
    ),
    (
        "name: x\nversion: 1\nchannels: {sms: {}}\n",
        "policy.yaml: channels.sms: 'sms' is not one of 'telegram', 'email' or 'webhook'",
    ),
    (
        "name: x\nversion: 1\nchannels: {telegram: {max_length: 5000}}\n",
        "policy.yaml: channels.telegram.max_length: 5000 is over the telegram limit of 4096",
    ),
    (
        "name: x\nversion: 1\napproval: {escalate_after: 4d, expire_after: 3d}\n",
        "policy.yaml: approval: escalate_after (4d) must be shorter than expire_after (3d)",
    ),
    (
        "name: x\nversion: 1\nlinks: {allow: ['https://x.com/']}\n",
        "policy.yaml: links.allow: 'https://x.com/' is not a domain like example.com",
    ),
    (
        "name: x\nversion: 1\napproval: {auto_approve: {channels: [webhook]}}\n",
        "policy.yaml: approval.auto_approve.max_toxicity: is required",
    ),
    (
        "name: x\nversion: 1\nbanned_terms: [a, '']\n",
        "policy.yaml: banned_terms[1]: must not be empty",
    ),
]


@pytest.mark.parametrize(("text", "message"), BAD_POLICIES)
def test_bad_policy_is_one_line_naming_file_and_field(text: str, message: str) -> None:
    with pytest.raises(PolicyError) as caught:
        parse_policy(text, "policy.yaml")
    assert str(caught.value) == message


def test_several_errors_are_still_one_line() -> None:
    with pytest.raises(PolicyError) as caught:
        parse_policy("name: x\nversion: 0\nmoderation: maybe\n", "p.yaml")
    assert str(caught.value) == "p.yaml: version: 0 is less than 1 (and 1 more)"


def test_missing_policy_file_is_one_line(tmp_path: Path) -> None:
    missing = tmp_path / "policy.yaml"
    with pytest.raises(PolicyError, match="^.*policy.yaml: no such file$"):
        load_policy(missing)
    with pytest.raises(PolicyError, match="is a directory"):
        load_policy(tmp_path)


def test_effective_policy_is_the_file_or_the_default(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text("name: mine\nversion: 2\n")
    assert effective_policy(path).name == "mine"
    assert effective_policy(None) is default_policy()


# Checks


def test_every_check_is_reported_in_the_same_order_and_is_hard() -> None:
    for text in (clean_text(), "Guaranteed returns! <b>x</b> " * 500):
        results = run_checks(
            default_policy(),
            text,
            channel=ChannelKind.TELEGRAM,
            max_length=4096,
            disclosure=DISCLOSURE,
        )
        assert [result.check for result in results] == list(CHECKS)
        assert all(result.hard for result in results)


def test_clean_text_passes_every_check() -> None:
    results = checks(clean_text())
    assert {name: result.outcome for name, result in results.items()} == dict.fromkeys(
        CHECKS, CheckOutcome.PASS
    )


def test_banned_term_fails_naming_the_term() -> None:
    result = checks(clean_text("These are Guaranteed\n returns, no joke."))["banned_terms"]
    assert result.outcome is CheckOutcome.FAIL
    assert result.reason == "banned term 'guaranteed returns'"
    several = checks(clean_text("PUMP it: 100x or more"))["banned_terms"]
    assert several.reason == "banned terms '100x', 'pump'"


def test_banned_terms_match_whole_words_only() -> None:
    result = checks(clean_text("A pumpkin pie at 1000x magnification."))["banned_terms"]
    assert result.outcome is CheckOutcome.PASS


def test_market_words_need_the_disclaimer() -> None:
    result = checks(clean_text("The BTC price looks strong this week."))["disclaimers"]
    assert result.outcome is CheckOutcome.FAIL
    assert result.reason == "mentions 'price' but lacks the disclaimer 'Not financial advice.'"
    fixed = clean_text("The BTC price looks strong this week. Not financial advice.")
    assert checks(fixed)["disclaimers"].outcome is CheckOutcome.PASS
    unrelated = checks(clean_text("A buyer's guide to gardening."))["disclaimers"]
    assert unrelated.outcome is CheckOutcome.PASS


def test_email_address_needs_review_and_is_masked() -> None:
    result = checks(clean_text("Write to john.doe@example.com for details."))["pii"]
    assert result.outcome is CheckOutcome.NEEDS_REVIEW
    assert result.reason == "email address j***@example.com"
    assert "john" not in result.reason


def test_phone_number_needs_review_and_is_masked() -> None:
    result = checks(clean_text("Call +1 415 555 2671 or (555) 123-4567 today."))["pii"]
    assert result.outcome is CheckOutcome.NEEDS_REVIEW
    assert result.reason == "phone number ending in 71; phone number ending in 67"
    assert "415" not in result.reason and "555" not in result.reason


def test_numbers_that_are_not_phone_numbers_pass() -> None:
    text = clean_text("On 2024-01-15 we hit 1,000,000 users; scores 10 20 30 40; v1.2.3.")
    assert checks(text)["pii"].outcome is CheckOutcome.PASS


@pytest.mark.parametrize("key", [PRIVATE_KEY, f"0x{PRIVATE_KEY}", PRIVATE_KEY.upper()])
def test_private_key_fails_and_is_never_echoed(key: str) -> None:
    result = checks(clean_text(f"backup: {key} keep safe"))["pii"]
    assert result.outcome is CheckOutcome.FAIL
    assert result.reason == "a 64-hex-digit string that looks like a private key"
    assert PRIVATE_KEY[:8] not in result.reason.lower()


def test_private_key_failure_is_listed_before_reviews() -> None:
    text = f"a@b.io c@d.io e@f.io g@h.io {PRIVATE_KEY}"
    result = checks(clean_text(text))["pii"]
    assert result.outcome is CheckOutcome.FAIL
    assert result.reason.startswith("a 64-hex-digit string that looks like a private key;")


def test_transaction_link_is_not_a_private_key() -> None:
    text = clean_text(f"Settled: https://etherscan.io/tx/0x{PRIVATE_KEY}")
    assert checks(text)["pii"].outcome is CheckOutcome.PASS


def test_seed_phrase_fails() -> None:
    seed = "abandon ability able about above absent absorb abstract absurd abuse access accident"
    result = checks(clean_text(f"my words: {seed}"))["pii"]
    assert result.outcome is CheckOutcome.FAIL
    assert result.reason == "a 12-word sequence that looks like a wallet seed phrase"
    assert "abandon" not in result.reason


def test_pii_action_off_skips_the_detector() -> None:
    policy = policy_with(pii={"emails": "off", "phones": "off", "private_keys": "off"})
    text = clean_text(f"john@example.com +1 415 555 2671 {PRIVATE_KEY}")
    assert checks(text, policy)["pii"].outcome is CheckOutcome.PASS


def test_link_outside_the_allow_list_needs_review() -> None:
    result = checks(clean_text("See https://evil.test/x and https://docs.github.com/y."))["links"]
    assert result.outcome is CheckOutcome.NEEDS_REVIEW
    assert result.reason == (
        "link to evil.test is not on the allow list (example.com, github.com, etherscan.io)"
    )


def test_links_on_the_allow_list_pass_subdomains_included() -> None:
    text = clean_text("See https://docs.github.com/y, www.example.com and etherscan.io/tx/1.")
    result = checks(text)["links"]
    assert (result.outcome, result.reason) == (CheckOutcome.PASS, "3 links, all allowed")


def test_link_action_fail_and_userinfo_trick() -> None:
    policy = policy_with(links={"allow": ["example.com"], "action": "fail"})
    result = checks(clean_text("Login at https://example.com@evil.test/"), policy)["links"]
    assert result.outcome is CheckOutcome.FAIL and "evil.test" in result.reason


def test_allow_star_allows_any_link() -> None:
    policy = policy_with(links={"allow": ["*"]})
    assert checks(clean_text("https://anything.test/"), policy)["links"].outcome == "pass"


def test_disclosure_missing_fails_and_present_passes() -> None:
    result = checks("Our weekly update.")["disclosure"]
    assert result.outcome is CheckOutcome.FAIL
    assert result.reason == f"lacks the disclosure {DISCLOSURE!r}"
    assert checks(clean_text())["disclosure"].outcome is CheckOutcome.PASS
    no_sentence = checks(clean_text(), disclosure=" ")["disclosure"]
    assert no_sentence.outcome is CheckOutcome.FAIL
    optional = policy_with(disclosure={"required": False})
    assert checks("Our weekly update.", optional)["disclosure"].outcome is CheckOutcome.PASS


def test_length_uses_the_channel_rule_else_the_given_limit() -> None:
    text = clean_text("x" * 4100)
    result = checks(text)["length"]
    assert result.outcome is CheckOutcome.FAIL
    assert result.reason == f"{len(text)} characters, over the telegram limit of 4096"
    no_rule = policy_with()
    assert checks(text, no_rule, max_length=10_000)["length"].outcome is CheckOutcome.PASS
    assert checks(text, no_rule, max_length=100)["length"].outcome is CheckOutcome.FAIL


def test_plain_format_rejects_html_tags() -> None:
    result = checks(clean_text("Hello <b>world</b>"))["format"]
    assert result.outcome is CheckOutcome.FAIL
    assert result.reason == "raw HTML tag '<b>' in plain text (the telegram format is plain)"
    assert checks(clean_text("2 < 3 and 5 > 4 <3"))["format"].outcome is CheckOutcome.PASS


def test_html_and_markdown_formats_need_closed_markup() -> None:
    html = policy_with(channels={"telegram": {"format": "html"}})
    assert checks(clean_text("<b>hi</b> <a href='x'>y</a>"), html)["format"].outcome == "pass"
    assert checks(clean_text("<b>hi"), html)["format"].reason == "unclosed HTML tag <b>"
    markdown = policy_with(channels={"telegram": {"format": "markdown"}})
    assert checks(clean_text("```code```"), markdown)["format"].outcome == "pass"
    assert checks(clean_text("```code"), markdown)["format"].outcome == "fail"


@pytest.mark.parametrize("unit", ["a.", "1-", "1 ", "x@", "www.", "<a ", "ab.", "+1", "abandon "])
def test_checks_take_linear_time_on_pathological_text(unit: str) -> None:
    text = unit * (100_000 // len(unit))
    started = time.perf_counter()
    run_checks(
        default_policy(), text, channel=ChannelKind.EMAIL, max_length=100_000, disclosure="bot"
    )
    assert time.perf_counter() - started < 3


# Disclosure and disclaimers added by the pipeline


def test_with_disclosure_appends_once() -> None:
    once = with_disclosure("Hello.  \n", DISCLOSURE)
    assert once == f"Hello.\n\n{DISCLOSURE}"
    assert with_disclosure(once, DISCLOSURE) == once
    assert with_disclosure("Hello.", "") == "Hello."


def test_with_disclaimers_appends_what_is_required_once() -> None:
    policy = default_policy()
    text = with_disclaimers(policy, "ETH forecast: up.")
    assert text == "ETH forecast: up.\n\nNot financial advice."
    assert with_disclaimers(policy, text) == text
    assert with_disclaimers(policy, "Team news.") == "Team news."
    final = with_disclosure(text, DISCLOSURE)
    outcomes = checks(final)
    assert outcomes["disclaimers"].outcome is CheckOutcome.PASS
    assert outcomes["disclosure"].outcome is CheckOutcome.PASS


# Approval


def test_unknown_approver_may_not_decide() -> None:
    approval = ApprovalPolicy(approvers=["ann", "bob"])
    assert approval.may_decide("mallory", submitted_by="ann", escalated=False) == (
        "unknown approver 'mallory' (approvers: ann, bob)"
    )
    assert approval.may_decide("Bob", submitted_by="ann", escalated=False) is None


def test_submitter_may_not_approve_own_brief_unless_allowed() -> None:
    approval = ApprovalPolicy(approvers=["*"])
    assert approval.may_decide("ann", submitted_by="Ann", escalated=False) == (
        "ann submitted this brief and may not approve it (policy: allow_self_approval is false)"
    )
    allowed = ApprovalPolicy(approvers=["*"], allow_self_approval=True)
    assert allowed.may_decide("ann", submitted_by="ann", escalated=False) is None
    assert approval.may_decide("bob", submitted_by=None, escalated=False) is None


def test_escalation_group_decides_only_after_escalation() -> None:
    approval = ApprovalPolicy(approvers=["ann"], escalation=["carol"])
    assert approval.may_decide("carol", submitted_by="bob", escalated=False) == (
        "'carol' is in the escalation group and may decide only once the item has been escalated"
    )
    assert approval.may_decide("carol", submitted_by="bob", escalated=True) is None
    assert approval.may_decide("dave", submitted_by="bob", escalated=True) == (
        "unknown approver 'dave' (approvers: ann; escalation: carol)"
    )
    assert approval.may_decide("ann", submitted_by="bob", escalated=True) is None


def test_auto_approval_only_with_the_block() -> None:
    assert not ApprovalPolicy().auto_approves(ChannelKind.WEBHOOK, "bot", scores(), passed())
    default = default_policy().approval
    assert default.auto_approves(ChannelKind.WEBHOOK, "bot", scores(), passed())
    assert not default.auto_approves(ChannelKind.TELEGRAM, "bot", scores(), passed())


@pytest.mark.parametrize("outcome", [CheckOutcome.NEEDS_REVIEW, CheckOutcome.FAIL])
def test_auto_approval_never_with_a_check_not_passed(outcome: CheckOutcome) -> None:
    results = [*passed(), CheckResult(check="pii", outcome=outcome, reason="x")]
    assert not default_policy().approval.auto_approves(
        ChannelKind.WEBHOOK, "bot", scores(), results
    )


def test_auto_approval_respects_scores_and_bots() -> None:
    rule = AutoApproveRule(bots=["newsbot"], min_judge=70, max_toxicity=0.2)
    approval = ApprovalPolicy(auto_approve=rule)
    webhook = ChannelKind.WEBHOOK
    assert approval.auto_approves(webhook, "NewsBot", scores(judge=80), passed())
    assert not approval.auto_approves(webhook, "other", scores(judge=80), passed())
    assert not approval.auto_approves(webhook, "newsbot", scores(), passed())
    assert not approval.auto_approves(webhook, "newsbot", scores(judge=60), passed())
    assert not approval.auto_approves(webhook, "newsbot", scores(judge=80, toxicity=0.3), passed())
    assert not approval.auto_approves(
        webhook, "newsbot", scores(judge=80, length_ok=False), passed()
    )


# CLI


def test_cli_check_accepts_a_valid_policy() -> None:
    result = CliRunner().invoke(app, ["check", "agentfleet/content/policies/default.yaml"])
    assert result.exit_code == 0, result.output
    assert DEFAULT_LABEL in result.stdout and "7 banned terms" in result.stdout


def test_cli_check_json_parses() -> None:
    result = CliRunner().invoke(
        app, ["check", "agentfleet/content/policies/default.yaml", "--json"]
    )
    assert result.exit_code == 0, result.output
    answer = json.loads(result.stdout)
    assert answer["ok"] and answer["label"] == DEFAULT_LABEL and answer["version"] == 2
    assert Policy.model_validate(answer["policy"]) == default_policy()


def test_cli_check_rejects_a_bad_policy_with_one_line(tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text("name: x\nversion: 1\napproval: {expire_after: 3x}\n")
    result = CliRunner().invoke(app, ["check", str(path)])
    assert result.exit_code == 2
    assert result.stdout == ""
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert "approval.expire_after: '3x' is not a duration" in result.stderr
    as_json = CliRunner().invoke(app, ["check", str(tmp_path / "missing.yaml"), "--json"])
    assert as_json.exit_code == 2
    assert json.loads(as_json.stdout)["error"].endswith("missing.yaml: no such file")


def test_cli_show_prints_the_configured_or_default_policy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("FLEET_CONTENT_POLICY", raising=False)
    default = CliRunner().invoke(app, ["show", "--json"])
    assert default.exit_code == 0, default.output
    assert json.loads(default.stdout)["source"] == "packaged default"
    path = tmp_path / "mine.yaml"
    path.write_text("name: mine\nversion: 4\n")
    mine = CliRunner().invoke(app, ["show"], env={"FLEET_CONTENT_POLICY": str(path)})
    assert mine.exit_code == 0, mine.output
    assert "mine version 4" in mine.stdout and "expire_after: 3d" in mine.stdout
    broken = CliRunner().invoke(app, ["show"], env={"FLEET_CONTENT_POLICY": str(tmp_path / "x")})
    assert broken.exit_code == 2 and broken.stderr.count("\n") == 1
