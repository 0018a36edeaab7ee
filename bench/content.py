"""Content benchmark: pipeline latency with auto-approval vs the same-shape skeleton, and the
channel publisher's throughput as a fraction of the rate its channel allows.

    python bench/content.py [--items 20] [--burst 50] [--warmup 3] [--messages 300] [--rate 30]
                            [--publisher-burst 5] [--quick] [--json]

Everything runs in this process: a private dev server (set up as ``fleet up`` sets one up), a
SQLite database in a temporary folder, the fleet's workers and the channel sandbox (Bot API,
Standard Webhooks receiver), all stopped and removed at the end. Drafting and scoring are the
offline ones (no LLM). Measured in the same run; benchmarks report, they never assert timings:

- **content pipeline**: ``content_ops.submit`` until ``ContentPipelineWorkflow``'s result reads
  ``published``, to a webhook channel of the sandbox (limit 1000/s, burst 100: not what is
  measured) under a policy that auto-approves webhooks. ``--items`` one at a time give p50 /
  p95, ``--burst`` at once give items/s. One item's shape is read from its history: 11
  activities in 10 steps (record, prepare, draft, record, score ∥ check, record, record,
  hand-over, publish, record; "publish" is the publisher's ``publish_to_channel``).
- **skeleton**: as many no-op regular activities in the item's own steps (score ∥ check
  started together, as the pipeline does), the workflow on a queue of its own and the activities
  on another (as ``fleet-workflows`` and ``fleet-io``). It has not the signal-with-start
  hand-over to ``publisher-{channel}``, the publisher's own workflow task or the
  ``publish_result`` signal.
- **publisher**: ``--messages`` ``PublishRequest``s (no ``reply_to``) sent at once straight to
  one Telegram channel's ``ChannelPublisherWorkflow`` by signal-with-start; the channel's bucket
  is ``--rate``/s, burst ``--publisher-burst``, and the sandbox's chat allows ``--rate``/s (burst
  ``--rate``). Achieved msgs/s: first to last message as the sandbox received them, as a
  fraction of ``--rate`` and of the ideal for this bucket (the first bucketful at once, then
  ``--rate``/s); "sends scheduled" is the same span in the publisher's history; 429s should be 0.

Defaults take about 35 s on a 2-core machine. Its figures are in docs/benchmarks.md, quoted
from the kept output ``docs/benchmarks/content.json`` (``python bench/keep.py content``). While
300 signals arrive at once the server may force-fail one of the publisher's workflow tasks
(cause ``FORCE_CLOSE_COMMAND``: over 100 signals buffered while a task ran; the SDK logs "Task
not found when completing"); Temporal retries it, and every message still arrives once.
"""

from __future__ import annotations

import sys
from pathlib import Path

# `python bench/content.py` puts bench/ on the path, not the repository root.
sys.path.insert(1, str(Path(__file__).resolve().parent.parent))

import argparse
import asyncio
import time
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from rich.console import Console
from temporalio.api.enums.v1 import EventType, WorkflowTaskFailedCause
from temporalio.client import Client

from agentfleet import taskqueues
from agentfleet.bots.model import BotKind
from agentfleet.content import store as content_store
from agentfleet.content.model import (
    MAX_LENGTH,
    ChannelConfig,
    ChannelKind,
    ContentOrder,
    ContentState,
    ContentView,
    OutboundMessage,
    PublishRequest,
    RateLimit,
    content_workflow_id,
)
from agentfleet.settings import Settings
from bench.harness import (
    Figures,
    Options,
    Run,
    Sizes,
    add_bots,
    measure,
    print_columns,
    print_table,
    report_console,
    scratch_fleet,
)
from bench.shapes import (
    SkeletonStep,
    activity_steps,
    event_time,
    history_counts,
    history_events,
    steps_skeleton,
    steps_text,
    type_counts,
)
from clients import content as content_ops
from sandbox.app import Sandbox
from sandbox.buckets import TelegramLimits
from workers.main import running_workers
from workflows.channel_publisher import PublisherState, PublisherView, publisher_workflow_id

BOT = "bench-pub"
HOOKS = "bench-hooks"
CHAT = "424242"
"""A private chat (positive id): the sandbox applies its ``private_chat`` bucket."""
TELEGRAM = "bench-chat"
BRIEF = "Release notes for version two: faster sends and clearer logs."
HOOKS_LIMIT = RateLimit(rate_per_s=1000, burst=100)
POLICY = """\
name: bench
version: 1
approval:
  approvers: [bench-approver]
  auto_approve:
    channels: [webhook]
    max_toxicity: 0.2
"""
SHORT = {
    "record_content": "record",
    "prepare_content": "prepare",
    "draft_content": "draft",
    "score_content": "score",
    "check_content": "check",
    "hand_to_publisher": "hand-over",
    "publish_to_channel": "publish",
}
PUBLISH = "publish_to_channel"
POLL_S = 0.05
QUICK = {"items": 3, "burst": 5, "warmup": 1, "messages": 40}


def _rate(text: str) -> float:
    value = float(text)
    if not 0 < value <= 1000:
        raise argparse.ArgumentTypeError(f"{text} is not a rate between 0 and 1000 a second")
    return value


OPTIONS = Options(__file__, __doc__, quick=QUICK)
OPTIONS.count("--items", 20, "items one at a time")
OPTIONS.count("--burst", 50, "items at once (items/s)")
OPTIONS.count("--warmup", 3, "discarded items per row")
OPTIONS.count("--messages", 300, "messages sent at once to the publisher", low=2)
OPTIONS.add_argument(
    "--rate", type=_rate, default=30.0, help="msgs/s the chat and the channel allow"
)
OPTIONS.count("--publisher-burst", 5, "the channel's token bucket size")


# -- set-up ---------------------------------------------------------------------------------------


def webhook_channel(sandbox: Sandbox) -> ChannelConfig:
    return ChannelConfig(
        name=HOOKS,
        kind=ChannelKind.WEBHOOK,
        target=sandbox.webhook_url(HOOKS),
        limit=HOOKS_LIMIT,
        max_length=MAX_LENGTH[ChannelKind.WEBHOOK],
    )


def telegram_channel(rate: float, burst: int) -> ChannelConfig:
    return ChannelConfig(
        name=TELEGRAM,
        kind=ChannelKind.TELEGRAM,
        target=CHAT,
        limit=RateLimit(rate_per_s=rate, burst=burst),
        max_length=MAX_LENGTH[ChannelKind.TELEGRAM],
    )


# -- one item's shape, from its history -----------------------------------------------------------


async def item_shape(client: Client, content_id: str) -> dict[str, Any]:
    """Activities, steps and signals of one published item, with the publisher's send (one
    ``publish_to_channel``) put where it runs: after the hand-over. Activities scheduled by the
    same workflow task ran at once (one step). ``publish_round_trip_ms``: hand-over scheduled
    to ``publish_result`` received, what the skeleton has two plain activities for."""
    workflow_id = content_workflow_id(content_id)
    events = await history_events(client, workflow_id)
    handed_over = answered = None
    for event in events:
        if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
            name = event.activity_task_scheduled_event_attributes.activity_type.name
            if name == "hand_to_publisher" and handed_over is None:
                handed_over = event_time(event)
        elif event.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED:
            answered = event_time(event)
    steps: list[list[str]] = []
    for group in activity_steps(events):
        steps.append(group)
        if group == ["hand_to_publisher"]:
            steps.append([PUBLISH])
    types = type_counts(steps)
    counts = await history_counts(client, workflow_id)
    round_trip = None
    if handed_over is not None and answered is not None:
        round_trip = (answered - handed_over).total_seconds() * 1000
    return {
        "activities": sum(types.values()),
        "steps": len(steps),
        "parallel": [group for group in steps if len(group) > 1],
        "shape": steps_text(steps, SHORT),
        "activity_types": types,
        "step_sizes": [len(group) for group in steps],
        "workflow_tasks": counts["workflow_tasks"],
        "signals": counts["signals"],
        "history_events": counts["events"],
        "publish_round_trip_ms": round_trip,
    }


# -- the parts ------------------------------------------------------------------------------------


class Pipeline:
    """Submits auto-approved webhook items and waits for each to be published."""

    def __init__(self, client: Client, url: str) -> None:
        self.client = client
        self.url = url
        self.tag = uuid.uuid4().hex[:6]
        self.published = 0

    def content_id(self, key: str) -> str:
        return f"bench-{self.tag}-{key}"

    async def publish(self, key: str) -> None:
        order = ContentOrder(
            content_id=self.content_id(key),
            bot=BOT,
            channel=HOOKS,
            brief=BRIEF,
            submitted_by="bench",
        )
        workflow_id = await content_ops.submit(self.client, self.url, order, datetime.now(UTC))
        handle = self.client.get_workflow_handle(workflow_id, result_type=ContentView)
        view: ContentView = await handle.result()
        if view.state is not ContentState.PUBLISHED:
            raise RuntimeError(f"{order.content_id} ended {view.state}: {view.reason}")
        self.published += 1


async def pipeline_part(
    client: Client, settings: Settings, args: argparse.Namespace, err: Console
) -> dict[str, Any]:
    pipeline = Pipeline(client, settings.effective_database_url)
    err.print("one item first: the publisher entity starts, the shape is read from its history")
    await pipeline.publish("probe")
    per_item = await item_shape(client, pipeline.content_id("probe"))
    activities = per_item["activities"]
    err.print(f"one item: {activities} activities: {per_item['shape']}")
    err.print(f"skeleton: {activities} no-op regular activities in the item's steps")
    sizes = Sizes(args.items, args.burst, args.warmup)
    async with steps_skeleton(client, "bench-content-skeleton", ("io",)) as steps:
        io = steps.queue_named("io")
        skeleton = await measure(
            "skeleton",
            steps.runner(
                [SkeletonStep(activities=n, task_queue=io) for n in per_item["step_sizes"]]
            ),
            shape="regular",
            activities=activities,
            sizes=sizes,
        )
    err.print(f"pipeline: {args.items} items one at a time, {args.burst} at once")
    row = await measure(
        "content pipeline",
        pipeline.publish,
        shape=skeleton.shape,
        activities=activities,
        sizes=sizes,
    )
    last = await item_shape(client, pipeline.content_id(f"r{args.items - 1}"))
    if last["shape"] != per_item["shape"]:
        raise RuntimeError(f"items differ in shape: {per_item['shape']} then {last['shape']}")
    return {
        "per_item": last,
        "items_published": pipeline.published,
        "rows": [skeleton, row],
        "baseline": skeleton,
    }


async def hand_over(client: Client, request: PublishRequest) -> None:
    """What ``hand_to_publisher`` does: signal-with-start ``publisher-{channel}``."""
    await client.start_workflow(
        "ChannelPublisherWorkflow",
        PublisherState(channel=request.channel),
        id=publisher_workflow_id(request.channel.name),
        task_queue=taskqueues.WORKFLOWS,
        start_signal="publish",
        start_signal_args=[request],
    )


async def publisher_part(
    client: Client, settings: Settings, sandbox: Sandbox, args: argparse.Namespace, err: Console
) -> dict[str, Any]:
    channel = telegram_channel(args.rate, args.publisher_burst)
    await asyncio.to_thread(content_store.save_channel, settings.effective_database_url, channel)
    tag = uuid.uuid4().hex[:6]
    requests = []
    for index in range(args.messages):
        content_id = f"bench-{tag}-m{index:05d}"
        message = OutboundMessage(
            content_id=content_id,
            bot=BOT,
            text=f"Bench message {index}.",
            idempotency_key=f"content-{content_id}",
        )
        requests.append(
            PublishRequest(content_id=content_id, reply_to=None, channel=channel, message=message)
        )
    err.print(
        f"publisher: {args.messages} messages at once to a chat allowing {args.rate:g}/s, "
        f"channel limit {args.rate:g}/s burst {args.publisher_burst}"
    )
    started = time.perf_counter()
    await asyncio.gather(*(hand_over(client, request) for request in requests))
    signalled_s = time.perf_counter() - started
    deadline = time.monotonic() + 60 + 3 * args.messages / args.rate
    while len(messages := sandbox.store.telegram_messages(CHAT)) < args.messages:
        if time.monotonic() > deadline:
            raise RuntimeError(f"only {len(messages)} of {args.messages} messages arrived")
        await asyncio.sleep(POLL_S)
    done_s = time.perf_counter() - started
    publisher = client.get_workflow_handle(publisher_workflow_id(TELEGRAM))
    while (view := await publisher.query("status", result_type=PublisherView)).in_flight:
        if time.monotonic() > deadline:
            raise RuntimeError(f"the publisher still has {view.in_flight} sends in flight")
        await asyncio.sleep(POLL_S)
    messages = sandbox.store.telegram_messages(CHAT)
    counters = sandbox.store.telegram_counters()
    events = await history_events(client, publisher.id)
    scheduled = [
        event_time(event)
        for event in events
        if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
    ]
    failed = [
        WorkflowTaskFailedCause.Name(event.workflow_task_failed_event_attributes.cause)
        for event in events
        if event.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED
    ]
    dispatch_s = None
    if len(scheduled) == args.messages:  # else it continued as new: sends in two runs
        dispatch_s = (scheduled[-1] - scheduled[0]).total_seconds()
    received = sorted(message.received_monotonic for message in messages)
    burst = min(args.publisher_burst, len(received))
    wall_s = received[-1] - received[0]
    ideal_s = (len(received) - burst) / args.rate
    achieved = (len(received) - 1) / wall_s if wall_s > 0 else 0.0
    ideal = (len(received) - 1) / ideal_s if ideal_s > 0 else 0.0
    return {
        "messages": args.messages,
        "allowed_per_s": args.rate,
        "channel_limit": channel.limit.model_dump(),
        "chat_limit": sandbox.store.limiter.limits.private_chat.model_dump(),
        "received": len(received),
        "duplicates": len(messages) - len({message.text for message in messages}),
        "sent": view.sent,
        "signals_per_s": args.messages / signalled_s,
        "done_s": done_s,
        "first_to_last_s": wall_s,
        "ideal_first_to_last_s": ideal_s,
        "dispatch_first_to_last_s": dispatch_s,
        "achieved_per_s": achieved,
        "fraction_of_allowed": achieved / args.rate,
        "ideal_per_s": ideal,
        "fraction_of_ideal": achieved / ideal if ideal > 0 else 0.0,
        "rate_limited_429": counters["rate_limited"],
        "publisher_rate_limited": view.rate_limited,
        "publisher_history_events": len(events),
        "publisher_workflow_task_failures": failed,
    }


# -- report ---------------------------------------------------------------------------------------


PUBLISHER_COLUMNS = (
    ("received", "received", "{}"),
    ("signals/s", "signals_per_s", "{:.0f}"),
    ("first→last s", "first_to_last_s", "{:.2f}"),
    ("ideal s", "ideal_first_to_last_s", "{:.2f}"),
    ("sends scheduled s", "dispatch_first_to_last_s", "{:.2f}"),
    ("msgs/s", "achieved_per_s", "{:.1f}"),
    ("of allowed", "fraction_of_allowed", "{:.2f}"),
    ("ideal msgs/s", "ideal_per_s", "{:.1f}"),
    ("of ideal", "fraction_of_ideal", "{:.2f}"),
    ("429s", "rate_limited_429", "{}"),
)


def print_report(report: dict[str, Any], rows: Sequence[Figures]) -> None:
    console = report_console()
    item = report["per_item"]
    print_table(
        rows,
        baseline=rows[0],
        console=console,
        title=f"Content item submitted to published, auto-approved webhook ({item['activities']} "
        f"activities in {item['steps']} steps: {item['shape']}; {item['signals']} signal, "
        f"{item['workflow_tasks']} workflow tasks) vs a skeleton of {item['activities']} "
        "sequential no-op activities (no hand-over, no signal)",
    )
    if item["publish_round_trip_ms"] is not None:
        console.print(
            f"publish round trip of the last item one at a time (hand-over scheduled to "
            f"publish_result received: hand-over, the publisher's task, its send, the signal "
            f"back): {item['publish_round_trip_ms']:.0f} ms",
            highlight=False,
        )
    publisher = report["publisher"]
    print_columns(
        f"Channel publisher: {publisher['messages']} messages at once to one Telegram "
        f"chat allowing {publisher['allowed_per_s']:g}/s (channel bucket: "
        f"{publisher['channel_limit']['rate_per_s']:g}/s, burst "
        f"{publisher['channel_limit']['burst']})",
        PUBLISHER_COLUMNS,
        [publisher],
        console,
    )
    failures = publisher["publisher_workflow_task_failures"]
    if failures:
        console.print(
            f"the publisher's workflow tasks failed {len(failures)} time(s) while the signals "
            f"arrived: {', '.join(failures)} (Temporal retried them)",
            highlight=False,
        )


async def amain(argv: Sequence[str] | None = None) -> int:
    """The benchmark in a running event loop; progress on stderr, the report on stdout."""
    args = OPTIONS.read(argv)
    run = Run("content", args, items=args.items, burst=args.burst, warmup=args.warmup)
    report, err = run.report, run.err
    chat = RateLimit(rate_per_s=args.rate, burst=max(1, round(args.rate)))
    limits = TelegramLimits(overall=chat, private_chat=chat)
    async with scratch_fleet("content", sandbox_limits=limits) as fleet:
        if fleet.sandbox is None:
            raise RuntimeError("the content benchmark needs the sandbox's channels")
        report["server"] = fleet.server
        policy = fleet.home / "policy.yaml"
        policy.write_text(POLICY, encoding="utf-8")
        settings = fleet.settings(content_policy=policy, openai_base_url=None)
        await asyncio.to_thread(add_bots, fleet.url, [BOT], BotKind.PUBLISHER)
        hooks = webhook_channel(fleet.sandbox)
        await asyncio.to_thread(content_store.save_channel, fleet.url, hooks)
        async with running_workers(fleet.client, settings):
            report.update(await pipeline_part(fleet.client, settings, args, err))
            report["publisher"] = await publisher_part(
                fleet.client, settings, fleet.sandbox, args, err
            )
        report["webhook_deliveries"] = fleet.sandbox.store.webhook_counters(HOOKS)
    return run.finish(tables=lambda: print_report(report, report["rows"]))


def main(argv: Sequence[str] | None = None) -> int:
    """``python bench/content.py``: measure and print; returns the exit status."""
    return asyncio.run(amain(argv))


if __name__ == "__main__":
    sys.exit(main())
