"""ContentPipelineWorkflow's timers and decisions: reminder, escalation, expiry and scheduled
publishing, on the time-skipping test server: the policy's durations are hours, and a test moves
the server's clock past them (``env.sleep``, or waiting for a result), so no timer fires while a
test is still deciding, however loaded the machine.

Activities are doubles registered under the real names (Temporal's mocking seam); the policy
checks are the real, pure ``run_checks``, and the publisher is the real ChannelPublisherWorkflow.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import pytest
import pytest_asyncio
from temporalio import activity
from temporalio.client import Client, WorkflowHandle, WorkflowUpdateFailedError
from temporalio.service import RPCError, RPCStatusCode
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from agentfleet import taskqueues
from agentfleet.content.model import (
    ApproveInput,
    CancelInput,
    ChannelConfig,
    ChannelKind,
    CheckResult,
    ContentContext,
    ContentOrder,
    ContentRecord,
    ContentState,
    ContentView,
    Draft,
    DraftRequest,
    EditInput,
    PublishRequest,
    RateLimit,
    RejectInput,
    ReviewRequest,
    Scores,
    SendReceipt,
)
from agentfleet.content.policy.checks import run_checks
from agentfleet.content.policy.rules import Policy
from agentfleet.operations.alerts import Alert, AlertBatch, AlertKind
from workers.main import WORKFLOW_RUNNER
from workflows.channel_publisher import ChannelPublisherWorkflow, PublisherState
from workflows.content_pipeline import ContentPipelineWorkflow

DISCLOSURE = "Automated agent operated by fleet."
REMIND, ESCALATE, EXPIRE = timedelta(hours=1), timedelta(hours=2), timedelta(hours=6)
POLICY = Policy.model_validate(
    {
        "name": "test",
        "version": 1,
        "banned_terms": ["guaranteed returns"],
        "approval": {
            "approvers": ["alice", "bob"],
            "escalation": ["carol"],
            "remind_after": REMIND,
            "escalate_after": ESCALATE,
            "expire_after": EXPIRE,
        },
    }
)
CHANNEL = ChannelConfig(
    name="hooks",
    kind=ChannelKind.WEBHOOK,
    target="http://127.0.0.1:9/hook",
    limit=RateLimit(rate_per_s=100, burst=10),
    max_length=1000,
)


@dataclass
class Doubles:
    records: list[ContentRecord] = field(default_factory=list)
    sent: list[PublishRequest] = field(default_factory=list)
    alerts: list[Alert] = field(default_factory=list)
    written_at: dict[str, datetime] = field(default_factory=dict)
    """Audit key -> when the server scheduled the ``record_content`` that wrote it (its clock)."""

    @activity.defn(name="prepare_content")
    async def prepare_content(self, order: ContentOrder) -> ContentContext:
        return ContentContext(
            bot=order.bot,
            owner="fleet",
            disclosure=DISCLOSURE,
            channel=CHANNEL,
            policy=POLICY.model_dump(mode="json"),
            policy_label=POLICY.label,
        )

    @activity.defn(name="draft_content")
    async def draft_content(self, request: DraftRequest) -> Draft:
        return Draft(text=request.brief, generator="template:test@1")

    @activity.defn(name="score_content")
    async def score_content(self, request: ReviewRequest) -> Scores:
        return Scores(
            readability=70,
            grade=6,
            length=len(request.text),
            length_ok=True,
            sentiment=0.1,
            toxicity=0.0,
        )

    @activity.defn(name="check_content")
    async def check_content(self, request: ReviewRequest) -> list[CheckResult]:
        return run_checks(
            Policy.model_validate(request.policy),
            request.text,
            channel=request.channel,
            max_length=request.max_length,
            disclosure=request.disclosure,
        )

    @activity.defn(name="record_content")
    async def record_content(self, record: ContentRecord) -> None:
        self.records.append(record)
        for entry in record.entries:
            self.written_at.setdefault(entry.key, activity.info().current_attempt_scheduled_time)

    @activity.defn(name="hand_to_publisher")
    async def hand_to_publisher(self, request: PublishRequest) -> None:
        await activity.client().start_workflow(
            ChannelPublisherWorkflow.run,
            PublisherState(channel=request.channel),
            id=f"publisher-{request.channel.name}-{uuid.uuid4().hex[:6]}",
            task_queue=taskqueues.WORKFLOWS,
            start_signal="publish",
            start_signal_args=[request],
        )

    @activity.defn(name="publish_to_channel")
    async def publish_to_channel(self, request: PublishRequest) -> SendReceipt:
        self.sent.append(request)
        return SendReceipt(
            channel=request.channel.name,
            message_id=f"msg-{len(self.sent)}",
            sent_at=activity.info().current_attempt_scheduled_time,  # the server's clock
        )

    @activity.defn(name="allow_resend")
    async def allow_resend(self, content_id: str) -> None:
        return None

    @activity.defn(name="raise_alerts")
    async def raise_alerts(self, batch: AlertBatch) -> None:
        self.alerts.extend(batch.alerts)

    def all(self) -> list[Any]:
        return [
            self.prepare_content,
            self.draft_content,
            self.score_content,
            self.check_content,
            self.record_content,
            self.hand_to_publisher,
            self.publish_to_channel,
            self.allow_resend,
            self.raise_alerts,
        ]

    def steps(self) -> list[str]:
        return [e.step for r in self.records for e in r.entries]

    def when(self, content_id: str, step: str) -> datetime:
        """When the item's first ``step`` entry was written, on the server's clock."""
        return next(
            self.written_at[e.key]
            for r in self.records
            if r.view.content_id == content_id
            for e in r.entries
            if e.step == step
        )


@pytest_asyncio.fixture(loop_scope="session")
async def env_and_doubles(
    time_skipping_env: WorkflowEnvironment,
) -> AsyncIterator[tuple[WorkflowEnvironment, Doubles]]:
    doubles = Doubles()
    client = time_skipping_env.client
    workers = [
        Worker(
            client,
            task_queue=queue,
            workflows=[ContentPipelineWorkflow, ChannelPublisherWorkflow]
            if queue == taskqueues.WORKFLOWS
            else [],
            workflow_runner=WORKFLOW_RUNNER,
            activities=doubles.all(),
        )
        for queue in (taskqueues.WORKFLOWS, taskqueues.IO, taskqueues.LLM)
    ]
    for worker in workers:
        await worker.__aenter__()
    try:
        yield time_skipping_env, doubles
    finally:
        for worker in workers:
            await worker.__aexit__(None, None, None)


async def start(
    client: Client, brief: str = "Our weekly notes are out.", **fields: Any
) -> WorkflowHandle[Any, ContentView]:
    content_id = f"t-{uuid.uuid4().hex[:8]}"
    order = ContentOrder(
        content_id=content_id,
        bot="pub-1",
        channel="hooks",
        brief=brief,
        submitted_by="dave",
        **fields,
    )
    return await client.start_workflow(
        ContentPipelineWorkflow.run,
        order,
        id=f"content-{content_id}",
        task_queue=taskqueues.WORKFLOWS,
    )


async def state_of(handle: WorkflowHandle[Any, ContentView]) -> ContentState:
    view: ContentView = await handle.query(ContentPipelineWorkflow.status)
    return view.state


async def wait_state(
    env: WorkflowEnvironment, handle: WorkflowHandle[Any, ContentView], state: ContentState
) -> None:
    for _ in range(200):
        if await state_of(handle) is state:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"never reached {state}: {await state_of(handle)}")


async def test_reminder_then_escalation_lets_the_second_group_decide(
    env_and_doubles: tuple[WorkflowEnvironment, Doubles],
) -> None:
    env, doubles = env_and_doubles
    started = await env.get_current_time()
    handle = await start(env.client)
    await wait_state(env, handle, ContentState.AWAITING_APPROVAL)
    with pytest.raises(WorkflowUpdateFailedError) as refused:
        await handle.execute_update(ContentPipelineWorkflow.approve, ApproveInput(approver="carol"))
    assert "carol" in str(refused.value.cause)
    assert not (await handle.query(ContentPipelineWorkflow.status)).escalated
    await env.sleep(ESCALATE + timedelta(minutes=1))
    for _ in range(200):
        view = await handle.query(ContentPipelineWorkflow.status)
        if view.escalated:
            break
        await asyncio.sleep(0.05)
    assert view.escalated, "escalate_after passed on the server's clock and nobody escalated"
    approved = await handle.execute_update(
        ContentPipelineWorkflow.approve, ApproveInput(approver="carol", note="ok")
    )
    assert approved.decided_by == "carol"
    final = await handle.result()
    assert final.state is ContentState.PUBLISHED and final.receipt is not None
    mine = [r for r in doubles.records if r.view.content_id == final.content_id]
    steps = [e.step for r in mine for e in r.entries]
    assert steps.index("reminder") < steps.index("escalated") < steps.index("decision")
    assert doubles.when(final.content_id, "reminder") >= started + REMIND
    assert doubles.when(final.content_id, "escalated") >= started + ESCALATE
    overdue = [a for a in doubles.alerts if a.key == final.content_id]
    assert [a.kind for a in overdue] == [AlertKind.APPROVAL_OVERDUE]
    assert steps[-1] == "published"
    published = [s for s in doubles.sent if s.content_id == final.content_id]
    assert len(published) == 1 and DISCLOSURE in published[0].message.text


async def test_no_decision_expires_and_a_late_approval_changes_nothing(
    env_and_doubles: tuple[WorkflowEnvironment, Doubles],
) -> None:
    env, doubles = env_and_doubles
    started = await env.get_current_time()
    handle = await start(env.client, brief="This one will expire.")
    await wait_state(env, handle, ContentState.AWAITING_APPROVAL)
    final = await handle.result()  # the server skips ahead to the next timer, and the next
    assert final.state is ContentState.EXPIRED
    assert final.reason == "no decision within 6:00:00"
    expired_after = doubles.when(final.content_id, "expired") - started
    assert EXPIRE <= expired_after < EXPIRE + timedelta(minutes=1), expired_after
    with pytest.raises(RPCError) as late:  # the closed execution takes no update
        await handle.execute_update(ContentPipelineWorkflow.approve, ApproveInput(approver="bob"))
    assert late.value.status is RPCStatusCode.NOT_FOUND
    assert not [s for s in doubles.sent if s.content_id == final.content_id]


async def test_scheduled_item_publishes_at_its_time_and_an_edit_needs_approval_again(
    env_and_doubles: tuple[WorkflowEnvironment, Doubles],
) -> None:
    env, doubles = env_and_doubles
    at = await env.get_current_time() + timedelta(hours=3)
    handle = await start(env.client, publish_at=at)
    await wait_state(env, handle, ContentState.AWAITING_APPROVAL)
    await handle.execute_update(ContentPipelineWorkflow.approve, ApproveInput(approver="alice"))
    assert await state_of(handle) is ContentState.SCHEDULED
    edited = await handle.execute_update(
        ContentPipelineWorkflow.edit, EditInput(approver="bob", text="Notes, take two.")
    )
    assert edited.state is ContentState.AWAITING_APPROVAL and edited.revision == 1
    assert edited.text is not None and edited.text.startswith("Notes, take two.")
    await handle.execute_update(ContentPipelineWorkflow.approve, ApproveInput(approver="alice"))
    await wait_state(env, handle, ContentState.SCHEDULED)
    assert not [s for s in doubles.sent if s.content_id == handle.id.removeprefix("content-")]
    final = await handle.result()
    assert final.state is ContentState.PUBLISHED
    sent = [s for s in doubles.sent if s.content_id == final.content_id]
    assert len(sent) == 1 and sent[0].message.text.startswith("Notes, take two.")
    assert final.receipt is not None and final.receipt.sent_at >= at, "published before its time"


async def test_cancelling_a_scheduled_item_publishes_nothing(
    env_and_doubles: tuple[WorkflowEnvironment, Doubles],
) -> None:
    env, doubles = env_and_doubles
    at = await env.get_current_time() + timedelta(days=1)
    handle = await start(env.client, publish_at=at)
    await wait_state(env, handle, ContentState.AWAITING_APPROVAL)
    await handle.execute_update(ContentPipelineWorkflow.approve, ApproveInput(approver="alice"))
    cancelled = await handle.execute_update(
        ContentPipelineWorkflow.cancel, CancelInput(actor="bob", reason="wrong week")
    )
    assert cancelled.state is ContentState.CANCELLED and cancelled.reason == "wrong week"
    final = await handle.result()
    assert final.state is ContentState.CANCELLED
    assert not [s for s in doubles.sent if s.content_id == final.content_id]


async def test_self_approval_unknown_approver_and_banned_terms_are_refused(
    env_and_doubles: tuple[WorkflowEnvironment, Doubles],
) -> None:
    env, _ = env_and_doubles
    handle = await start(env.client)
    await wait_state(env, handle, ContentState.AWAITING_APPROVAL)
    for approver, words in (("mallory", "unknown approver"), ("dave", "dave")):
        with pytest.raises(WorkflowUpdateFailedError) as refused:
            await handle.execute_update(
                ContentPipelineWorkflow.approve, ApproveInput(approver=approver)
            )
        assert words in str(refused.value.cause)
    assert await state_of(handle) is ContentState.AWAITING_APPROVAL
    rejected = await handle.execute_update(
        ContentPipelineWorkflow.reject, RejectInput(approver="bob", reason="off topic")
    )
    assert rejected.state is ContentState.REJECTED
    # A late approval is refused: by the validator while the pipeline still runs, or by the
    # server once the rejected pipeline has closed (the two race after the reject returns).
    with pytest.raises((WorkflowUpdateFailedError, RPCError)) as twice:
        await handle.execute_update(ContentPipelineWorkflow.approve, ApproveInput(approver="alice"))
    if isinstance(twice.value, WorkflowUpdateFailedError):
        assert "rejected" in str(twice.value.cause)
    else:
        assert isinstance(twice.value, RPCError) and twice.value.status is RPCStatusCode.NOT_FOUND
    assert (await handle.result()).state is ContentState.REJECTED

    spam = await start(env.client, brief="Guaranteed returns for everyone!")
    final = await spam.result()
    assert final.state is ContentState.REJECTED and "guaranteed returns" in final.reason


async def test_two_approvers_at_once_one_wins_the_other_is_told_already_decided(
    env_and_doubles: tuple[WorkflowEnvironment, Doubles],
) -> None:
    env, doubles = env_and_doubles
    handle = await start(env.client)
    await wait_state(env, handle, ContentState.AWAITING_APPROVAL)
    answers = await asyncio.gather(
        handle.execute_update(ContentPipelineWorkflow.approve, ApproveInput(approver="alice")),
        handle.execute_update(
            ContentPipelineWorkflow.reject, RejectInput(approver="bob", reason="no")
        ),
        return_exceptions=True,
    )
    failures = [a for a in answers if isinstance(a, WorkflowUpdateFailedError)]
    assert len(failures) == 1, answers
    assert "already decided" in str(failures[0].cause)
    final = await handle.result()
    winner = next(a for a in answers if isinstance(a, ContentView))
    assert final.decided_by == winner.decided_by
    decisions = [
        e
        for r in doubles.records
        if r.view.content_id == final.content_id
        for e in r.entries
        if e.step == "decision"
    ]
    assert len(decisions) == 1
