"""The content pipeline end to end on the dev server, with the real activities, each channel's
local server (the sandbox: Bot API, SMTP, Standard Webhooks receiver) and SQLite + PostgreSQL:
approve, reject, edit, expiry and scheduled-then-cancelled paths, each with its audit trail.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from temporalio.client import Client
from typer.testing import CliRunner

from agentfleet import db
from agentfleet.bots.model import BotKind, BotStatus, disclosure_for
from agentfleet.content import store as content_store
from agentfleet.content.model import (
    MAX_LENGTH,
    ApproveInput,
    CancelInput,
    ChannelConfig,
    ChannelKind,
    ContentOrder,
    ContentState,
    ContentView,
    EditInput,
    RejectInput,
    default_limit,
)
from agentfleet.errors import FleetError
from agentfleet.models import BotRecord
from agentfleet.settings import Settings
from clients import content as content_ops
from sandbox.app import Sandbox
from starters.cli.main import app
from tests.replay import record_history
from workers.main import running_workers

FLEET = os.path.join(os.path.dirname(sys.executable), "fleet")
DISCLOSURE = disclosure_for("fleet")
POLICY = """
name: test
version: 1
banned_terms: [guaranteed returns]
moderation: true
disclaimers:
  - when_any: [forecast]
    text: Not financial advice.
approval:
  approvers: [alice, bob]
  expire_after: {expire}
{extra}"""
CHAT = "100200"
MAILBOX = "readers@example.com"


@dataclass
class Content:
    client: Client
    settings: Settings
    sandbox: Sandbox

    @property
    def url(self) -> str:
        return self.settings.effective_database_url

    async def submit(self, channel: str, brief: str, **fields: Any) -> str:
        content_id = f"c-{uuid.uuid4().hex[:8]}"
        order = ContentOrder(
            content_id=content_id,
            bot="pub-1",
            channel=channel,
            brief=brief,
            submitted_by="dave",
            **fields,
        )
        await content_ops.submit(self.client, self.url, order, datetime.now(UTC))
        return content_id

    async def wait(self, content_id: str, *states: ContentState) -> ContentView:
        view = await content_ops.show(self.client, self.url, content_id)
        for _ in range(300):
            if view.state in states:
                return view
            await asyncio.sleep(0.05)
            view = await content_ops.show(self.client, self.url, content_id)
        raise AssertionError(f"{content_id} is {view.state}, not {states}: {view.reason}")

    async def result(self, content_id: str) -> ContentView:
        handle = self.client.get_workflow_handle(f"content-{content_id}", result_type=ContentView)
        view: ContentView = await asyncio.wait_for(handle.result(), 60)
        return view

    def audit_steps(self, content_id: str) -> list[str]:
        return [
            row.kind.removeprefix("content.")
            for row in content_store.audit_trail(self.url, content_id)
        ]


def add_publisher(url: str) -> None:
    with db.session_scope(url) as session:
        session.add(
            BotRecord(
                name="pub-1",
                kind=BotKind.PUBLISHER.value,
                owner="fleet",
                status=BotStatus.ACTIVE.value,
            )
        )
        session.commit()


def add_channels(url: str, sandbox: Sandbox) -> None:
    for name, kind, target in (
        ("chat", ChannelKind.TELEGRAM, CHAT),
        ("mail", ChannelKind.EMAIL, MAILBOX),
        ("hooks", ChannelKind.WEBHOOK, sandbox.webhook_url("hooks")),
    ):
        content_store.save_channel(
            url,
            ChannelConfig(
                name=name,
                kind=kind,
                target=target,
                limit=default_limit(kind, target),
                max_length=MAX_LENGTH[kind],
            ),
        )


@pytest_asyncio.fixture(loop_scope="session")
async def content(
    request: pytest.FixtureRequest, dev_client: Client, migrated_database_url: str, tmp_path: Path
) -> AsyncIterator[Content]:
    """Workers, the sandbox and a policy whose approvals expire after ``request.param``
    (``"llm"``: drafts, judge and moderation from the sandbox's OpenAI API; ``"notify"``: a
    reminder after 1 s to the email channel)."""
    param = getattr(request, "param", "60s")
    policy = tmp_path / "policy.yaml"
    extra = "  remind_after: 1s\n  notify_channel: mail\n" if param == "notify" else ""
    expire = "60s" if param in {"llm", "notify"} else param
    policy.write_text(POLICY.format(expire=expire, extra=extra))
    async with Sandbox(home=tmp_path) as sandbox:
        llm = {"openai_base_url": sandbox.openai_base_url} if param == "llm" else {}
        settings = Settings(
            home=tmp_path,
            database_url=migrated_database_url,
            content_policy=policy,
            **sandbox.settings_overrides(),
            **llm,
        )
        add_publisher(migrated_database_url)
        add_channels(migrated_database_url, sandbox)
        async with running_workers(dev_client, settings):
            yield Content(dev_client, settings, sandbox)


def backend(url: str) -> str:
    return "postgresql" if url.startswith("postgresql") else "sqlite"


async def test_approved_item_is_published_once_with_its_disclosure_and_full_audit_trail(
    content: Content,
) -> None:
    content_id = await content.submit("chat", "Our BTC forecast for the week is out.")
    view = await content.wait(content_id, ContentState.AWAITING_APPROVAL)
    assert view.text is not None and view.text.endswith(DISCLOSURE)
    assert "Not financial advice." in view.text, "the policy's disclaimer was added"
    assert view.policy is not None and view.policy.startswith("test@v1+")
    approved = await content_ops.steer(
        content.client, content.url, content_id, "approve", ApproveInput(approver="alice")
    )
    assert approved.decided_by == "alice"
    final = await content.result(content_id)
    assert final.state is ContentState.PUBLISHED and final.receipt is not None
    messages = content.sandbox.store.telegram_messages(CHAT)
    mine = [m for m in messages if m.text == final.text]
    assert len(mine) == 1 and str(mine[0].message_id) == final.receipt.message_id
    assert DISCLOSURE in mine[0].text
    steps = content.audit_steps(content_id)
    assert steps[0] == "draft" and steps[1] == "scores"
    assert [s for s in steps if s.startswith("check.")] == [
        "check.banned_terms",
        "check.disclaimers",
        "check.pii",
        "check.links",
        "check.disclosure",
        "check.length",
        "check.format",
    ]
    assert steps[-2:] == ["decision", "published"]
    row = content_store.get_item(content.url, content_id)
    assert row is not None and row.state == "published" and row.decided_by == "alice"
    assert row.message_id == final.receipt.message_id
    trail = content_store.audit_trail(content.url, content_id)
    assert {r.workflow_id for r in trail} == {f"content-{content_id}"}
    handle = content.client.get_workflow_handle(f"content-{content_id}")
    await record_history(handle, f"content_pipeline_published_{backend(content.url)}")
    publisher = content.client.get_workflow_handle("publisher-chat")
    await record_history(publisher, f"channel_publisher_{backend(content.url)}")


async def test_rejected_email_sends_nothing_and_says_who_and_why(content: Content) -> None:
    content_id = await content.submit("mail", "Monthly newsletter draft.")
    await content.wait(content_id, ContentState.AWAITING_APPROVAL)
    await content_ops.steer(
        content.client,
        content.url,
        content_id,
        "reject",
        RejectInput(approver="bob", reason="wrong month"),
    )
    final = await content.result(content_id)
    assert final.state is ContentState.REJECTED and final.reason == "wrong month"
    assert final.decided_by == "bob"
    assert not content.sandbox.store.inbox(ChannelKind.EMAIL, MAILBOX)
    assert content.audit_steps(content_id)[-2:] == ["decision", "rejected"]
    handle = content.client.get_workflow_handle(f"content-{content_id}")
    await record_history(handle, f"content_pipeline_rejected_{backend(content.url)}")


async def test_edit_goes_back_through_checks_and_the_edited_text_is_what_is_published(
    content: Content,
) -> None:
    content_id = await content.submit("hooks", "Release notes for version two.")
    await content.wait(content_id, ContentState.AWAITING_APPROVAL)
    edited = await content_ops.steer(
        content.client,
        content.url,
        content_id,
        "edit",
        EditInput(approver="bob", text="Version 2 is out: faster sends."),
    )
    assert edited.state is ContentState.AWAITING_APPROVAL and edited.revision == 1
    await content_ops.steer(
        content.client, content.url, content_id, "approve", ApproveInput(approver="alice")
    )
    final = await content.result(content_id)
    assert final.state is ContentState.PUBLISHED
    received = content.sandbox.store.inbox(ChannelKind.WEBHOOK, "hooks")
    mine = [r for r in received if r.message_id == f"content-{content_id}"]
    assert len(mine) == 1
    assert mine[0].text.startswith("Version 2 is out: faster sends.")
    assert mine[0].text.endswith(DISCLOSURE)
    steps = content.audit_steps(content_id)
    assert steps.count("scores") == 2 and steps.index("edit") < len(steps) - 3
    handle = content.client.get_workflow_handle(f"content-{content_id}")
    await record_history(handle, f"content_pipeline_edited_{backend(content.url)}")


@pytest.mark.parametrize("content", ["3s"], indirect=True)
async def test_expired_item_refuses_a_late_approval_and_nothing_changes(
    content: Content,
) -> None:
    content_id = await content.submit("chat", "A post nobody looks at.")
    final = await content.result(content_id)
    assert final.state is ContentState.EXPIRED
    with pytest.raises(FleetError) as late:
        await content_ops.steer(
            content.client, content.url, content_id, "approve", ApproveInput(approver="alice")
        )
    assert str(late.value) == f"content {content_id} is already expired; nothing changed"
    assert not [m for m in content.sandbox.store.telegram_messages(CHAT) if m.text == final.text]
    assert content.audit_steps(content_id)[-1] == "expired"
    handle = content.client.get_workflow_handle(f"content-{content_id}")
    await record_history(handle, f"content_pipeline_expired_{backend(content.url)}")


async def test_scheduled_item_is_published_at_its_time_not_before(content: Content) -> None:
    # Far enough ahead that drafting, scoring and the approval end before it on a loaded machine;
    # the time-skipping tests (test_content_workflows.py) check the timer itself.
    at = datetime.now(UTC) + timedelta(seconds=10)
    content_id = await content.submit("hooks", "Launch day note.", publish_at=at)
    await content.wait(content_id, ContentState.AWAITING_APPROVAL)
    scheduled = await content_ops.steer(
        content.client, content.url, content_id, "approve", ApproveInput(approver="alice")
    )
    assert scheduled.state is ContentState.SCHEDULED, "approved after its time (a slow machine)"
    final = await content.result(content_id)
    assert final.state is ContentState.PUBLISHED and final.receipt is not None
    assert final.receipt.sent_at >= at, "published before its time"
    received = content.sandbox.store.inbox(ChannelKind.WEBHOOK, "hooks")
    assert len([r for r in received if r.message_id == f"content-{content_id}"]) == 1
    handle = content.client.get_workflow_handle(f"content-{content_id}")
    await record_history(handle, f"content_pipeline_scheduled_{backend(content.url)}")


async def test_scheduled_then_cancelled_item_publishes_nothing_and_leaves_no_timer(
    content: Content,
) -> None:
    at = datetime.now(UTC) + timedelta(hours=1)
    content_id = await content.submit("mail", "Next week's agenda.", publish_at=at)
    await content.wait(content_id, ContentState.AWAITING_APPROVAL)
    scheduled = await content_ops.steer(
        content.client, content.url, content_id, "approve", ApproveInput(approver="alice")
    )
    assert scheduled.state is ContentState.SCHEDULED
    cancelled = await content_ops.steer(
        content.client,
        content.url,
        content_id,
        "cancel",
        CancelInput(actor="bob", reason="agenda moved"),
    )
    assert cancelled.state is ContentState.CANCELLED
    final = await content.result(content_id)
    assert final.state is ContentState.CANCELLED and final.reason == "agenda moved"
    described = await content.client.get_workflow_handle(f"content-{content_id}").describe()
    assert described.status is not None and described.status.name == "COMPLETED"
    assert not content.sandbox.store.inbox(ChannelKind.EMAIL, MAILBOX)
    assert content.audit_steps(content_id)[-1] == "cancelled"
    handle = content.client.get_workflow_handle(f"content-{content_id}")
    await record_history(handle, f"content_pipeline_cancelled_{backend(content.url)}")


@pytest.mark.parametrize("content", ["30m"], indirect=True)  # a loaded machine runs the CLI slowly
async def test_cli_refusals_are_one_line_and_change_nothing(
    content: Content, tmp_path: Path
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FLEET_", "TEMPORAL_"))}
    env.update(
        FLEET_HOME=str(content.settings.home),
        FLEET_TEMPORAL_ADDRESS=content.client.service_client.config.target_host,
        FLEET_DATABASE_URL=content.url,
        FLEET_CONTENT_POLICY=str(content.settings.content_policy),
        COLUMNS="200",
    )

    async def fleet(*args: str, process: bool = False) -> tuple[int, str, str]:
        """``fleet args`` in this process (Typer's runner), or with ``process`` as a real one: the
        CLI starts in a second or more, so only the first submit and refusal pay for that."""
        if not process:
            ran = await asyncio.to_thread(CliRunner().invoke, app, list(args), env=env)
            return ran.exit_code, ran.stdout, ran.stderr
        started = await asyncio.create_subprocess_exec(
            FLEET, *args, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
        )
        out, err = await asyncio.wait_for(started.communicate(), 60)
        return started.returncode or 0, out.decode(), err.decode()

    code, out, err = await fleet(
        "content",
        "submit",
        "--bot",
        "pub-1",
        "--channel",
        "chat",
        "--brief",
        "CLI post.",
        "--by",
        "alice",
        "--json",
        process=True,
    )
    assert code == 0, err
    content_id = json.loads(out)["content_id"]
    assert json.loads(out)["state"] == "awaiting_approval"

    async def refused(*args: str, process: bool = False) -> str:
        code, _, err = await fleet(*args, process=process)
        lines = err.strip().splitlines()
        assert code != 0 and len(lines) == 1 and "Traceback" not in err, err
        return lines[0]

    assert "unknown approver 'mallory'" in await refused(
        "content", "approve", content_id, "--approver", "mallory", process=True
    )
    assert "may not approve" in await refused(
        "content", "approve", content_id, "--approver", "alice"
    )
    assert "no channel named nowhere" in await refused(
        "content", "submit", "--bot", "pub-1", "--channel", "nowhere", "--brief", "x"
    )
    assert "no bot named ghost" in await refused(
        "content", "submit", "--bot", "ghost", "--channel", "chat", "--brief", "x"
    )
    assert "in the past" in await refused(
        "content",
        "submit",
        "--bot",
        "pub-1",
        "--channel",
        "chat",
        "--brief",
        "x",
        "--at",
        "2020-01-01T00:00Z",
    )
    assert "not a Telegram chat id" in await refused(
        "channel", "add", "bad", "--kind", "telegram", "--target", "not a chat"
    )
    bad_policy = tmp_path / "bad.yaml"
    bad_policy.write_text("name: x\nversion: 1\napproval:\n  expire_after: 3x\n")
    assert "expire_after" in await refused("policy", "check", str(bad_policy))
    view = await content_ops.show(content.client, content.url, content_id)
    assert view.state is ContentState.AWAITING_APPROVAL, "a refusal changed the item"

    code, out, err = await fleet("content", "approve", content_id, "--approver", "bob")
    assert code == 0, err
    late = await refused("content", "approve", content_id, "--approver", "alice")
    assert "already decided: approved by bob" in late or "is already published" in late
    await content.result(content_id)
    code, out, err = await fleet("content", "audit", content_id, "--json")
    assert code == 0, err
    assert [row["kind"] for row in json.loads(out)][-1] == "content.published"
    code, out, err = await fleet("content", "list", "--state", "published", "--json")
    assert code == 0 and content_id in {row["content_id"] for row in json.loads(out)}


@pytest.mark.parametrize("content", ["llm"], indirect=True)
async def test_with_an_openai_compatible_endpoint_the_model_drafts_judges_and_moderates(
    content: Content,
) -> None:
    content_id = await content.submit("mail", "Invite readers to the community call on Friday.")
    view = await content.wait(content_id, ContentState.AWAITING_APPROVAL)
    assert view.draft is not None and view.draft.generator == "llm:gpt-4o-mini"
    assert view.draft.prompt_version == "draft@1"
    assert view.scores is not None and view.scores.judge is not None
    assert [c.check for c in view.checks][-1] == "moderation"
    paths = [r.path for r in content.sandbox.store.openai_requests()]
    assert paths.count("/chat/completions") == 2, "a draft and a judge's score"
    assert "/moderations" in paths
    await content_ops.steer(
        content.client, content.url, content_id, "reject", RejectInput(approver="bob", reason="x")
    )


@pytest.mark.parametrize("content", ["notify"], indirect=True)
async def test_reminder_notice_reaches_the_approvers_channel_once(content: Content) -> None:
    content_id = await content.submit("chat", "A post that waits for a decision.")
    await content.wait(content_id, ContentState.AWAITING_APPROVAL)
    for _ in range(100):
        if "reminder" in content.audit_steps(content_id):
            break
        await asyncio.sleep(0.1)
    notices: list[Any] = []
    for _ in range(100):
        notices = [
            m
            for m in content.sandbox.store.inbox(ChannelKind.EMAIL, MAILBOX)
            if content_id in m.text
        ]
        if notices:
            break
        await asyncio.sleep(0.1)
    assert len(notices) == 1, notices
    assert "awaits approval" in notices[0].text
    assert "Automated notice from agentfleet." in notices[0].text
    await content_ops.steer(
        content.client, content.url, content_id, "reject", RejectInput(approver="bob", reason="x")
    )
