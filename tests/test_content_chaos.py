"""SIGKILL the worker around each publish: no message is ever sent twice, a send that may have
happened ends ``unconfirmed`` for a human (who can then resolve it), and one whose ``sent``
marker was written is published from the marker.

The worker is a real process (``python -m workers.main``) killed at a chaos point; the channels
are the sandbox's Bot API, SMTP server and webhook receiver, which record every message they
accepted. Every kill is proved: the worker died by SIGKILL, the armed point was taken, and the
marker and the channel show the moment of that point. Assertions are on what the channel
received and what the database says, not on logs. Telegram goes through every point on both
backends; email and webhooks (SQLite) through the points where their outcome differs.
"""

from __future__ import annotations

import asyncio
import signal
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest
import pytest_asyncio
from temporalio.client import Client

from agentfleet import db
from agentfleet.bots.model import BotKind, BotStatus
from agentfleet.content import store as content_store
from agentfleet.content.model import (
    ChannelConfig,
    ChannelKind,
    ContentOrder,
    ContentState,
    ContentView,
    RateLimit,
    ResolveInput,
    ResolveOutcome,
)
from agentfleet.models import BotRecord, ContentItem, PublishAttempt
from clients import content as content_ops
from sandbox.app import Sandbox
from sandbox.store import Fault, InboxItem
from tests.fixtures.worker import WorkerProcess
from tests.replay import record_history

POLICY = """
name: chaos
version: 1
approval:
  auto_approve:
    max_toxicity: 1
"""
MAILBOX = "chaos-readers@example.com"
HOOKS = "chaos-hooks"
TELEGRAM, EMAIL, WEBHOOK = ChannelKind.TELEGRAM, ChannelKind.EMAIL, ChannelKind.WEBHOOK


@dataclass
class Death:
    """The send marker and what the channel held when the worker died (nothing ran after)."""

    marker: PublishAttempt | None
    received: list[InboxItem]


@dataclass
class Chaos:
    client: Client
    url: str
    sandbox: Sandbox
    worker: WorkerProcess
    chaos_dir: Path
    targets: dict[ChannelKind, str]

    async def submit(self, kind: ChannelKind = TELEGRAM) -> str:
        content_id = f"chaos-{uuid.uuid4().hex[:8]}"
        order = ContentOrder(
            content_id=content_id,
            bot="pub-chaos",
            channel=f"chaos-{kind.value}",
            brief=f"Status update {content_id}.",
            submitted_by="ops",
        )
        await content_ops.submit(self.client, self.url, order, datetime.now(UTC))
        return content_id

    async def killed_at(self, point: str, kind: ChannelKind, content_id: str) -> Death:
        """Start the worker with ``point`` armed for this item and wait until it dies there:
        by SIGKILL, with the armed file taken (only that chaos point takes it)."""
        armed = self.chaos_dir / f"{point}@{content_id}"
        armed.touch()
        self.worker.start()
        code = await self.worker.wait_killed()
        log = self.worker.log.read_text()[-3000:]
        assert code == -signal.SIGKILL, f"worker exited {code}, not SIGKILLed at {point}:\n{log}"
        assert not armed.exists(), f"the worker died, but not at {point}:\n{log}"
        marker = content_store.send_marker(self.url, content_id)
        return Death(marker, self.received(kind, content_id))

    def restart(self) -> None:
        self.worker.start()

    async def settled(self, content_id: str) -> ContentItem:
        """The item's row once published or unconfirmed (rows, not queries: a query needs a
        worker, and this one gets killed)."""
        row = None
        for _ in range(900):
            row = content_store.get_item(self.url, content_id)
            if row is not None and row.state in {"published", "unconfirmed"}:
                return row
            await asyncio.sleep(0.1)
        raise AssertionError(f"{content_id} is still {row.state if row else 'not started'}")

    def received(self, kind: ChannelKind, content_id: str) -> list[InboxItem]:
        inbox = self.sandbox.store.inbox(kind, self.targets[kind])
        return [item for item in inbox if content_id in item.text]

    def webhook_repeats(self) -> int:
        """Deliveries the receiver dropped as a repeated ``webhook-id``."""
        return self.sandbox.store.webhook_counters(HOOKS)["duplicates"]

    def steps(self, content_id: str) -> list[str]:
        return [row.kind for row in content_store.audit_trail(self.url, content_id)]

    def published_receipt(self, content_id: str) -> dict[str, object]:
        """The detail of the item's one ``content.published`` audit row."""
        rows = content_store.audit_trail(self.url, content_id)
        published = [row.detail for row in rows if row.kind == "content.published"]
        assert len(published) == 1, [row.kind for row in rows]
        return published[0]

    def still_running(self) -> None:
        """The restarted worker passed the point (it fires once) and is alive."""
        assert self.worker.proc is not None and self.worker.proc.poll() is None


@pytest_asyncio.fixture(loop_scope="session")
async def chaos(
    dev_client: Client,
    chaos_worker: tuple[WorkerProcess, Path],
    migrated_database_url: str,
    tmp_path: Path,
) -> AsyncIterator[Chaos]:
    worker, chaos_dir = chaos_worker
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY)
    chat = str(300_000 + uuid.uuid4().int % 100_000)
    async with Sandbox(home=tmp_path) as sandbox:
        worker.env.update(
            FLEET_CHANNEL_SANDBOX="true",
            FLEET_SANDBOX_PORT=str(sandbox.port),
            FLEET_SANDBOX_SMTP_PORT=str(sandbox.smtp_port),
            FLEET_CONTENT_POLICY=str(policy),
            FLEET_CHANNEL_TIMEOUT_S="2",
        )
        with db.session_scope(migrated_database_url) as session:
            session.add(
                BotRecord(
                    name="pub-chaos",
                    kind=BotKind.PUBLISHER.value,
                    owner="fleet",
                    status=BotStatus.ACTIVE.value,
                )
            )
            session.commit()
        targets = {TELEGRAM: chat, EMAIL: MAILBOX, WEBHOOK: sandbox.webhook_url(HOOKS)}
        for kind, target in targets.items():
            content_store.save_channel(
                migrated_database_url,
                ChannelConfig(
                    name=f"chaos-{kind.value}",
                    kind=kind,
                    target=target,
                    limit=RateLimit(rate_per_s=10, burst=5),
                    max_length=4096,
                ),
            )
        yield Chaos(dev_client, migrated_database_url, sandbox, worker, chaos_dir, targets)


async def test_killed_before_the_send_marker_retries_and_publishes_once(chaos: Chaos) -> None:
    content_id = await chaos.submit()
    death = await chaos.killed_at("before_mark", TELEGRAM, content_id)
    assert death.marker is None and death.received == []
    chaos.restart()
    view = await chaos.settled(content_id)
    assert view.state == "published", view.reason
    received = chaos.received(TELEGRAM, content_id)
    assert [item.message_id for item in received] == [view.message_id]
    assert chaos.published_receipt(content_id)["message_id"] == view.message_id
    assert chaos.steps(content_id)[-1] == "content.published"
    chaos.still_running()


@pytest.mark.parametrize(("point", "sent"), [("before_send", 0), ("after_send", 1)])
async def test_killed_after_marking_never_sends_twice_and_ends_unconfirmed(
    chaos: Chaos, point: str, sent: int
) -> None:
    content_id = await chaos.submit()
    death = await chaos.killed_at(point, TELEGRAM, content_id)
    assert death.marker is not None and death.marker.state == "sending", death.marker
    assert len(death.received) == sent
    chaos.restart()
    view = await chaos.settled(content_id)
    assert view.state == "unconfirmed", view
    assert view.reason is not None and "may have been published" in view.reason
    assert len(chaos.received(TELEGRAM, content_id)) == sent
    marker = content_store.send_marker(chaos.url, content_id)
    assert marker is not None and marker.state == "unconfirmed"
    # A human looks at the chat and answers: sent again only when it truly was not.
    outcome = ResolveOutcome.RETRY if sent == 0 else ResolveOutcome.PUBLISHED
    resolved = await content_ops.steer(
        chaos.client, chaos.url, content_id, "resolve", ResolveInput(actor="ops", outcome=outcome)
    )
    handle = chaos.client.get_workflow_handle(f"content-{content_id}", result_type=ContentView)
    final: ContentView = await asyncio.wait_for(handle.result(), 60)
    assert final.state is ContentState.PUBLISHED, (resolved, final)
    assert len(chaos.received(TELEGRAM, content_id)) == 1
    steps = chaos.steps(content_id)
    tail = ["content.unconfirmed", "content.resolved"]
    assert steps[-3:] == [*tail, "content.published"] if sent == 0 else steps[-2:] == tail
    assert steps.count("content.unconfirmed") == 1
    assert steps.count("content.published") == 1 - sent, "a confirmed send's record is the resolve"
    chaos.still_running()
    backend = "postgresql" if chaos.url.startswith("postgresql") else "sqlite"
    path = "retried" if sent == 0 else "confirmed"
    await record_history(handle, f"content_pipeline_unconfirmed_{path}_{backend}")


@pytest.mark.extended
@pytest.mark.parametrize(
    ("kind", "database_url"),
    [
        (TELEGRAM, "sqlite"),
        (TELEGRAM, "postgresql"),
        (EMAIL, "sqlite"),
        (WEBHOOK, "sqlite"),
    ],
    indirect=["database_url"],
)
async def test_killed_after_the_sent_marker_publishes_from_it_without_sending_again(
    chaos: Chaos, kind: ChannelKind
) -> None:
    content_id = await chaos.submit(kind)
    death = await chaos.killed_at("after_sent_marker", kind, content_id)
    assert death.marker is not None and death.marker.state == "sent", death.marker
    assert [item.message_id for item in death.received] == [death.marker.message_id]
    chaos.restart()
    view = await chaos.settled(content_id)
    assert view.state == "published", view.reason
    assert len(chaos.received(kind, content_id)) == 1
    assert view.message_id == death.marker.message_id
    if kind is WEBHOOK:
        assert chaos.webhook_repeats() == 0, "the marker's receipt, not a second delivery"
    receipt = chaos.published_receipt(content_id)
    assert receipt["message_id"] == death.marker.message_id
    assert receipt["detail"] == {"repeat": True}, receipt
    assert "content.unconfirmed" not in chaos.steps(content_id)
    chaos.still_running()


@pytest.mark.extended
@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_a_webhook_killed_after_sending_is_sent_again_with_its_id_and_received_once(
    chaos: Chaos,
) -> None:
    content_id = await chaos.submit(WEBHOOK)
    death = await chaos.killed_at("after_send", WEBHOOK, content_id)
    assert death.marker is not None and death.marker.state == "sending", death.marker
    assert len(death.received) == 1
    chaos.restart()
    view = await chaos.settled(content_id)
    assert view.state == "published", view.reason
    received = chaos.received(WEBHOOK, content_id)
    assert [item.message_id for item in received] == [view.message_id]
    assert chaos.webhook_repeats() == 1, "sent again with the same webhook-id, dropped"
    assert chaos.published_receipt(content_id)["message_id"] == view.message_id
    assert "content.unconfirmed" not in chaos.steps(content_id)
    chaos.still_running()


async def test_a_send_that_times_out_after_leaving_is_unconfirmed_not_retried(
    chaos: Chaos,
) -> None:
    chaos.sandbox.store.set_telegram_fault(Fault(mode="hang", count=1, hang_s=10))
    chaos.worker.start()
    content_id = await chaos.submit()
    view = await chaos.settled(content_id)
    assert view.state == "unconfirmed", view
    assert len(chaos.received(TELEGRAM, content_id)) == 1, "the server got it; no second send"
