"""ChannelPublisherWorkflow: the one entity per channel (``publisher-{channel}``) that sends.

Every content item for a channel is handed here (signal-with-start ``publish``), so the channel's
rate limit is kept by one owner whatever the number of bots and workers, and survives restarts:
the limit is a token bucket (``rate_per_s``, ``burst``) kept in workflow state and refilled on
durable timers. Sends are ``publish_to_channel`` activities on ``fleet-io``; the answer goes back
to the pipeline by the ``publish_result`` signal.

- A channel's 429 (``RateLimited``) puts the item back at the head of the queue and pauses the
  channel for its Retry-After.
- A send that may have happened (``MaybeSent``) is never retried: the item is ``unconfirmed``.
- A send that surely did not start (``NotSent``) is retried by the activity's retry policy.
- Continue-as-new when Temporal suggests it, between sends, carrying queue, bucket and the
  recent results (so a repeated hand-over still gets its answer).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from datetime import datetime, timedelta

from pydantic import BaseModel, Field
from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError

from workflows import calls

with workflow.unsafe.imports_passed_through():
    from activities.channels import ChannelActivities
    from agentfleet.content.model import (
        ChannelConfig,
        PublishRequest,
        PublishResult,
        PublishStatus,
        SendReceipt,
    )

MAX_IN_FLIGHT = 64
SEND_TIMEOUT = timedelta(seconds=15)
"""Two marker writes and one send (``FLEET_CHANNEL_TIMEOUT_S``, 10 s by default). A worker that
dies mid-send is noticed this long after; the retry then finds the marker and does not resend."""
RECENT_RESULTS = 1000
MIN_WAIT = timedelta(milliseconds=20)
SEND_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    maximum_interval=timedelta(seconds=30),
    maximum_attempts=8,
    non_retryable_error_types=["RateLimited", "MaybeSent", "Refused"],
)


def publisher_workflow_id(channel: str) -> str:
    return f"publisher-{channel}"


class PublisherState(BaseModel):
    """Everything the entity carries across continue-as-new."""

    channel: ChannelConfig
    queue: list[PublishRequest] = Field(default_factory=list)
    tokens: float | None = None
    """None: a full bucket (``burst``)."""
    refilled_at: datetime | None = None
    paused_until: datetime | None = None
    recent: dict[str, PublishResult] = Field(default_factory=dict)
    sent: int = 0
    rate_limited: int = 0
    unconfirmed: int = 0
    refused: int = 0


class PublisherView(BaseModel):
    channel: str
    queued: int
    in_flight: int
    tokens: float
    paused_until: datetime | None
    sent: int
    rate_limited: int
    unconfirmed: int
    refused: int


@workflow.defn(name="ChannelPublisherWorkflow")
class ChannelPublisherWorkflow:
    @workflow.init
    def __init__(self, state: PublisherState) -> None:
        self.state = state
        self.queue: deque[PublishRequest] = deque(state.queue)
        self.in_flight: dict[str, PublishRequest] = {}
        self.tokens = float(state.channel.limit.burst if state.tokens is None else state.tokens)
        self.refilled_at = state.refilled_at
        self.wake = False
        self.tasks: set[asyncio.Task[None]] = set()

    @workflow.signal
    def publish(self, request: PublishRequest) -> None:
        """Queue ``request`` once: a repeated hand-over of a queued, in-flight or finished item
        changes nothing (a finished one is answered again)."""
        content_id = request.content_id
        if content_id in self.in_flight or any(q.content_id == content_id for q in self.queue):
            return
        done = self.state.recent.get(content_id)
        if done is not None and done.attempt >= request.attempt:
            self._reply_later(request, done)
            return
        self.queue.append(request)
        self.wake = True

    @workflow.signal
    def configure(self, channel: ChannelConfig) -> None:
        """New rate limit or target (``fleet channel add`` again); the bucket keeps its tokens."""
        self.state.channel = channel
        self.tokens = min(self.tokens, float(channel.limit.burst))
        self.wake = True

    @workflow.query
    def status(self) -> PublisherView:
        return PublisherView(
            channel=self.state.channel.name,
            queued=len(self.queue),
            in_flight=len(self.in_flight),
            tokens=self.tokens,
            paused_until=self.state.paused_until,
            sent=self.state.sent,
            rate_limited=self.state.rate_limited,
            unconfirmed=self.state.unconfirmed,
            refused=self.state.refused,
        )

    @workflow.run
    async def run(self, state: PublisherState) -> None:
        while True:
            draining = workflow.info().is_continue_as_new_suggested()
            if draining and not self.in_flight and not self.tasks:
                break
            self._refill()
            if not draining:
                self._dispatch()
            self.wake = False
            with contextlib.suppress(TimeoutError):
                await workflow.wait_condition(
                    lambda: self.wake,
                    timeout=self._next_wake(),
                    timeout_summary="paused: retry-after" if self._paused() else "rate limit",
                )
        await workflow.wait_condition(workflow.all_handlers_finished)
        self.state.queue = list(self.queue)
        self.state.tokens = self.tokens
        self.state.refilled_at = self.refilled_at
        workflow.continue_as_new(self.state)

    def _refill(self) -> None:
        now = workflow.now()
        limit = self.state.channel.limit
        if self.refilled_at is not None:
            elapsed = (now - self.refilled_at).total_seconds()
            self.tokens = min(float(limit.burst), self.tokens + elapsed * limit.rate_per_s)
        self.refilled_at = now

    def _paused(self) -> bool:
        until = self.state.paused_until
        return until is not None and workflow.now() < until

    def _dispatch(self) -> None:
        if self._paused():
            return
        while self.queue and self.tokens >= 1 and len(self.in_flight) < MAX_IN_FLIGHT:
            request = self.queue.popleft()
            self.tokens -= 1
            self.in_flight[request.content_id] = request
            task = asyncio.ensure_future(self._send(request))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)

    def _next_wake(self) -> timedelta | None:
        """When the bucket has a token for the next queued item, or the pause ends."""
        if self._paused():
            assert self.state.paused_until is not None  # noqa: S101
            return max(MIN_WAIT, self.state.paused_until - workflow.now())
        if not self.queue or len(self.in_flight) >= MAX_IN_FLIGHT:
            return None
        if workflow.info().is_continue_as_new_suggested():
            return None
        limit = self.state.channel.limit
        # Wait for a batch (up to ``burst``) rather than each token: fewer timers, the same rate.
        want = min(len(self.queue), limit.burst)
        missing = max(0.0, want - self.tokens)
        return max(MIN_WAIT, timedelta(seconds=missing / limit.rate_per_s))

    async def _send(self, request: PublishRequest) -> None:
        channel = self.state.channel
        try:
            receipt: SendReceipt = await calls.run(
                ChannelActivities.publish_to_channel,
                request.model_copy(update={"channel": channel}),
                start_to_close_timeout=SEND_TIMEOUT,
                retry_policy=SEND_RETRY,
            )
            result = PublishResult(
                content_id=request.content_id,
                status=PublishStatus.SENT,
                receipt=receipt,
                attempt=request.attempt,
            )
            self.state.sent += 1
        except ActivityError as err:
            cause = err.cause
            kind = cause.type if isinstance(cause, ApplicationError) else None
            message = cause.message if isinstance(cause, ApplicationError) else str(err)
            if kind == "RateLimited":
                self._pause(cause)
                self.in_flight.pop(request.content_id, None)
                self.queue.appendleft(request)
                self.wake = True
                return
            if kind == "MaybeSent":
                status = PublishStatus.UNCONFIRMED
                self.state.unconfirmed += 1
            else:
                status = PublishStatus.REFUSED
                self.state.refused += 1
            result = PublishResult(
                content_id=request.content_id,
                status=status,
                reason=message,
                attempt=request.attempt,
            )
        self.in_flight.pop(request.content_id, None)
        self.state.recent[request.content_id] = result
        while len(self.state.recent) > RECENT_RESULTS:
            self.state.recent.pop(next(iter(self.state.recent)))
        self.wake = True
        await self._reply(request, result)

    def _pause(self, cause: BaseException | None) -> None:
        retry_after = 1.0
        if isinstance(cause, ApplicationError) and cause.details:
            with contextlib.suppress(TypeError, ValueError):
                retry_after = float(cause.details[0])
        until = workflow.now() + timedelta(seconds=max(retry_after, 0.05))
        if self.state.paused_until is None or until > self.state.paused_until:
            self.state.paused_until = until
        self.tokens = 0.0
        self.state.rate_limited += 1

    def _reply_later(self, request: PublishRequest, result: PublishResult) -> None:
        task = asyncio.ensure_future(self._reply(request, result))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _reply(self, request: PublishRequest, result: PublishResult) -> None:
        if not request.reply_to:
            return
        handle = workflow.get_external_workflow_handle(request.reply_to)
        try:
            await handle.signal("publish_result", result)
        except ApplicationError:
            workflow.logger.info(
                "pipeline %s is gone; result of %s kept", request.reply_to, request.content_id
            )
