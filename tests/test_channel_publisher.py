"""ChannelPublisherWorkflow keeps a channel's published limit: a burst of 500 items to one
Telegram channel gets no 429 from the limit-enforcing Bot API server, never arrives faster than
the limit and overlaps its sends (how close to the limit it gets is ``bench/content.py``'s figure:
it depends on the CPU the rest of the suite leaves); a 429 pauses the channel for its Retry-After
and loses nothing."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest_asyncio
from temporalio.client import Client

from agentfleet import taskqueues
from agentfleet.content import store as content_store
from agentfleet.content.model import (
    ChannelConfig,
    ChannelKind,
    OutboundMessage,
    PublishRequest,
    RateLimit,
)
from agentfleet.settings import Settings
from sandbox.app import Sandbox
from sandbox.buckets import TelegramLimits
from sandbox.store import Fault
from tests.replay import record_continued
from workers.main import running_workers
from workflows.channel_publisher import (
    MAX_IN_FLIGHT,
    ChannelPublisherWorkflow,
    PublisherState,
    PublisherView,
)

RATE = 30.0
"""Telegram's overall limit per bot; the test's chat is allowed as much (a real private chat
allows 1/s, which would make a 500-item burst take 8 minutes)."""
BURST = 500
ACTIVITY_ENDS = tuple(
    f"activity_task_{end}_event_attributes"
    for end in ("completed", "failed", "timed_out", "canceled")
)


@pytest_asyncio.fixture(loop_scope="session")
async def sandbox_and_settings(
    dev_client: Client, migrated_database_url: str, tmp_path: Path
) -> AsyncIterator[tuple[Sandbox, Settings]]:
    limits = TelegramLimits(
        overall=RateLimit(rate_per_s=RATE, burst=30),
        private_chat=RateLimit(rate_per_s=RATE, burst=30),
    )
    async with Sandbox(home=tmp_path, telegram_limits=limits) as sandbox:
        settings = Settings(
            home=tmp_path, database_url=migrated_database_url, **sandbox.settings_overrides()
        )
        async with running_workers(dev_client, settings):
            yield sandbox, settings


def channel(name: str, chat: str, burst: int = 5) -> ChannelConfig:
    return ChannelConfig(
        name=name,
        kind=ChannelKind.TELEGRAM,
        target=chat,
        limit=RateLimit(rate_per_s=RATE, burst=burst),
        max_length=4096,
    )


def request(config: ChannelConfig, n: int) -> PublishRequest:
    content_id = f"burst-{config.name}-{n}"
    return PublishRequest(
        content_id=content_id,
        reply_to=None,
        channel=config,
        message=OutboundMessage(
            content_id=content_id,
            bot="pub-1",
            text=f"item {n}. Automated agent operated by fleet.",
            idempotency_key=f"content-{content_id}",
        ),
    )


async def publish(client: Client, config: ChannelConfig, requests: list[PublishRequest]) -> str:
    workflow_id = f"publisher-{config.name}"
    for item in requests:
        await client.start_workflow(
            ChannelPublisherWorkflow.run,
            PublisherState(channel=config),
            id=workflow_id,
            task_queue=taskqueues.WORKFLOWS,
            start_signal="publish",
            start_signal_args=[item],
        )
    return workflow_id


async def wait_view(
    client: Client, workflow_id: str, done: Callable[[PublisherView], bool], seconds: float
) -> PublisherView:
    """The publisher's view once ``done`` holds, or as it is after ``seconds``."""
    handle = client.get_workflow_handle(workflow_id)
    deadline = time.monotonic() + seconds
    while True:
        view: PublisherView = await handle.query(
            ChannelPublisherWorkflow.status, result_type=PublisherView
        )
        if done(view) or time.monotonic() > deadline:
            return view
        await asyncio.sleep(0.2)


async def wait_sent(client: Client, workflow_id: str, count: int, seconds: float) -> PublisherView:
    return await wait_view(client, workflow_id, lambda view: view.sent >= count, seconds)


async def wait_idle(client: Client, workflow_id: str, count: int, seconds: float) -> PublisherView:
    """Wait until ``count`` are sent and nothing is queued or out."""
    return await wait_view(
        client,
        workflow_id,
        lambda view: view.sent >= count and view.queued == 0 and view.in_flight == 0,
        seconds,
    )


async def sends_in_flight(client: Client, workflow_id: str) -> list[int]:
    """Sends out at once after each of the publisher's events, over all its runs so far."""
    handle = client.get_workflow_handle(workflow_id)
    run_id = (await handle.describe()).raw_description.workflow_execution_info.first_run_id
    counts: list[int] = []
    while run_id:
        history = await client.get_workflow_handle(workflow_id, run_id=run_id).fetch_history()
        run_id, sends = "", set()
        for event in history.events:
            ended = next((a for a in ACTIVITY_ENDS if event.HasField(a)), None)
            if event.HasField("activity_task_scheduled_event_attributes"):
                scheduled = event.activity_task_scheduled_event_attributes
                if scheduled.activity_type.name == "publish_to_channel":
                    sends.add(event.event_id)
            elif ended is not None:
                sends.discard(getattr(event, ended).scheduled_event_id)
            elif event.HasField("workflow_execution_continued_as_new_event_attributes"):
                attributes = event.workflow_execution_continued_as_new_event_attributes
                run_id = attributes.new_execution_run_id
            counts.append(len(sends))
    return counts


async def test_burst_of_500_items_gets_no_429_and_uses_the_allowed_rate(
    dev_client: Client, sandbox_and_settings: tuple[Sandbox, Settings]
) -> None:
    sandbox, settings = sandbox_and_settings
    chat = str(100_000 + uuid.uuid4().int % 100_000)
    config = channel(f"burst-{uuid.uuid4().hex[:6]}", chat)
    content_store.save_channel(settings.effective_database_url, config)
    workflow_id = await publish(dev_client, config, [request(config, n) for n in range(BURST)])
    view = await wait_sent(dev_client, workflow_id, BURST, seconds=120)
    assert view.sent == BURST, view
    received = sandbox.store.telegram_messages(chat)
    assert len(received) == BURST, "every item once, none twice"
    assert len({m.text for m in received}) == BURST
    assert sandbox.store.telegram_counters()["rate_limited"] == 0
    assert view.rate_limited == 0
    first, last = received[0].received_monotonic, received[-1].received_monotonic
    rate = (BURST - 1) / (last - first)
    assert rate <= RATE * 1.1 + 30 / (last - first), "faster than the channel allows"
    # How close to the allowed rate it gets depends on the CPU the rest of the suite leaves
    # (14.7/s once with two xdist workers busy), so bench/content.py reports the rate; here the
    # history shows the behaviour behind it: sends overlap, a publisher awaiting each in turn
    # (14/s unloaded) would never have two out.
    in_flight = await sends_in_flight(dev_client, workflow_id)
    assert 2 <= max(in_flight) <= MAX_IN_FLIGHT, "sends overlap, within the in-flight cap"


async def test_a_429_pauses_the_channel_for_retry_after_and_loses_nothing(
    dev_client: Client, sandbox_and_settings: tuple[Sandbox, Settings]
) -> None:
    """The webhook receiver answers the first sends 429 with Retry-After: 1; the publisher
    waits that long, sends them again and loses none."""
    sandbox, settings = sandbox_and_settings
    name = f"hooks-{uuid.uuid4().hex[:6]}"
    config = ChannelConfig(
        name=name,
        kind=ChannelKind.WEBHOOK,
        target=sandbox.webhook_url(name),
        limit=RateLimit(rate_per_s=50, burst=10),
        max_length=65_536,
    )
    content_store.save_channel(settings.effective_database_url, config)
    sandbox.store.set_webhook_fault(name, Fault(mode="throttle", count=3, retry_after=1))
    count = 20
    started = time.monotonic()
    workflow_id = await publish(dev_client, config, [request(config, n) for n in range(count)])
    view = await wait_sent(dev_client, workflow_id, count, seconds=60)
    assert view.sent == count, view
    assert view.rate_limited >= 1, "the publisher never saw the 429"
    assert time.monotonic() - started >= 1.0, "it did not wait for Retry-After"
    received = sandbox.store.inbox(ChannelKind.WEBHOOK, name)
    assert sorted(int(m.text.split()[1].rstrip(".")) for m in received) == list(range(count))


async def test_publisher_continues_as_new_and_carries_its_queue_and_results(
    migrated_database_url: str, tmp_path: Path
) -> None:
    """With Temporal suggesting continue-as-new every ~100 events, a 60-item burst crosses
    several runs: every item is sent once and a repeated hand-over is still answered."""
    from temporalio.contrib.pydantic import pydantic_data_converter
    from temporalio.testing import WorkflowEnvironment

    from agentfleet import binaries, search_attributes

    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=str(binaries.temporal_cli()),
        data_converter=pydantic_data_converter,
        search_attributes=list(search_attributes.ALL),
        dev_server_extra_args=[
            "--dynamic-config-value",
            "limit.historyCount.suggestContinueAsNew=100",
        ],
    )
    try:
        client = env.client
        chat = str(400_000 + uuid.uuid4().int % 100_000)
        config = channel(f"can-{uuid.uuid4().hex[:6]}", chat, burst=5)
        limits = TelegramLimits(private_chat=RateLimit(rate_per_s=RATE, burst=30))
        async with Sandbox(home=tmp_path, telegram_limits=limits) as sandbox:
            settings = Settings(
                home=tmp_path, database_url=migrated_database_url, **sandbox.settings_overrides()
            )
            async with running_workers(client, settings):
                items = [request(config, n) for n in range(60)]
                workflow_id = await publish(client, config, items)
                view = await wait_sent(client, workflow_id, 60, seconds=60)
                assert view.sent == 60, view
                runs = [w async for w in client.list_workflows(f'WorkflowId = "{workflow_id}"')]
                assert len(runs) > 1, "it never continued as new"
                first_run = min(runs, key=lambda r: r.start_time).run_id
                backend = (
                    "postgresql" if migrated_database_url.startswith("postgresql") else "sqlite"
                )
                await record_continued(
                    client, workflow_id, first_run, "channel_publisher_continued", backend
                )
                await publish(client, config, items[:1])  # a repeat: answered, not re-sent
                # One new item after it, and the publisher idle with it sent: a repeat that was
                # queued again would have been sent before it (the queue is first in, first out).
                await publish(client, config, [request(config, 60)])
                view = await wait_idle(client, workflow_id, 61, seconds=60)
                assert view.sent == 61, view
                received = sandbox.store.telegram_messages(chat)
                assert len(received) == 61 and len({m.text for m in received}) == 61
    finally:
        await env.shutdown()
