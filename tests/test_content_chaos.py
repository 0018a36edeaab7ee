"""SIGKILL the worker around each publish: no message is ever sent twice, and a send that may
have happened ends ``unconfirmed`` for a human (who can then resolve it).

The worker is a real process (``python -m workers.main``) killed at a chaos point; the Bot API
is the sandbox, which records every message it accepted. Assertions are on what the channel
received and what the database says, not on logs.
"""

from __future__ import annotations

import asyncio
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
from agentfleet.models import BotRecord, ContentItem
from clients import content as content_ops
from sandbox.app import Sandbox
from sandbox.store import Fault
from tests.fixtures.worker import WorkerProcess
from tests.replay import record_history

POLICY = """
name: chaos
version: 1
approval:
  auto_approve:
    channels: [telegram]
    max_toxicity: 1
"""


@dataclass
class Chaos:
    client: Client
    url: str
    sandbox: Sandbox
    worker: WorkerProcess
    chaos_dir: Path
    chat: str

    async def submit(self) -> str:
        content_id = f"chaos-{uuid.uuid4().hex[:8]}"
        order = ContentOrder(
            content_id=content_id,
            bot="pub-chaos",
            channel="chaos-chat",
            brief=f"Status update {content_id}.",
            submitted_by="ops",
        )
        await content_ops.submit(self.client, self.url, order, datetime.now(UTC))
        return content_id

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

    def received(self, content_id: str) -> int:
        return sum(content_id in m.text for m in self.sandbox.store.telegram_messages(self.chat))


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
        content_store.save_channel(
            migrated_database_url,
            ChannelConfig(
                name="chaos-chat",
                kind=ChannelKind.TELEGRAM,
                target=chat,
                limit=RateLimit(rate_per_s=10, burst=5),
                max_length=4096,
            ),
        )
        yield Chaos(dev_client, migrated_database_url, sandbox, worker, chaos_dir, chat)


async def test_killed_before_the_send_marker_retries_and_publishes_once(chaos: Chaos) -> None:
    content_id = await chaos.submit()
    (chaos.chaos_dir / f"before_mark@{content_id}").touch()
    chaos.worker.start()
    await chaos.worker.wait_killed()
    chaos.worker.start()
    view = await chaos.settled(content_id)
    assert view.state == "published", view.reason
    assert chaos.received(content_id) == 1


@pytest.mark.parametrize(("point", "sent"), [("before_send", 0), ("after_send", 1)])
async def test_killed_after_marking_never_sends_twice_and_ends_unconfirmed(
    chaos: Chaos, point: str, sent: int
) -> None:
    content_id = await chaos.submit()
    (chaos.chaos_dir / f"{point}@{content_id}").touch()
    chaos.worker.start()
    await chaos.worker.wait_killed()
    chaos.worker.start()
    view = await chaos.settled(content_id)
    assert view.state == "unconfirmed", view
    assert view.reason is not None and "may have been published" in view.reason
    assert chaos.received(content_id) == sent
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
    assert chaos.received(content_id) == 1
    steps = [row.kind for row in content_store.audit_trail(chaos.url, content_id)]
    tail = ["content.unconfirmed", "content.resolved"]
    assert steps[-3:] == [*tail, "content.published"] if sent == 0 else steps[-2:] == tail
    backend = "postgresql" if chaos.url.startswith("postgresql") else "sqlite"
    path = "retried" if sent == 0 else "confirmed"
    await record_history(handle, f"content_pipeline_unconfirmed_{path}_{backend}")


async def test_a_send_that_times_out_after_leaving_is_unconfirmed_not_retried(
    chaos: Chaos,
) -> None:
    chaos.sandbox.store.set_telegram_fault(Fault(mode="hang", count=1, hang_s=10))
    chaos.worker.start()
    content_id = await chaos.submit()
    view = await chaos.settled(content_id)
    assert view.state == "unconfirmed", view
    assert chaos.received(content_id) == 1, "the server got it once; nobody sent it again"
