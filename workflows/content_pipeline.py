"""ContentPipelineWorkflow: one content item, from brief to a published, audited message.

The workflow id is ``content-{id}``: submitting the same id twice reaches this one workflow.
Steps, each an activity (drafting and scoring on ``fleet-llm``, database and channel hand-over on
``fleet-io``):

1. ``prepare_content``: the bot's disclosure, the channel, the policy (loaded once; its label is
   recorded with every check).
2. ``draft_content``: an OpenAI-compatible model, or the offline template generator. The bot's
   disclosure and the policy's required disclaimers are added before anyone sees the text, so
   approvers approve exactly what is published.
3. ``score_content`` and ``check_content`` (at once). A failed hard check rejects the item.
4. Approval: the ``approve`` / ``reject`` / ``edit`` updates (validators: known approver, item
   awaiting approval, no self-approval unless the policy allows it), a reminder (also an
   ``approval_overdue`` alert, patch ``alerts``), an escalation to the second group, expiry.
   Auto-approval only where the policy has an ``auto_approve`` block, and never for an item an
   agent bot submitted (``needs_human``).
   An edit goes back through scoring and checks, then approval again.
5. Schedule: a durable timer until ``publish_at``; ``edit`` and ``cancel`` still work while it
   waits, and cancelling leaves nothing behind.
6. Publish: handed to ``publisher-{channel}`` (which owns the channel's rate limits) with the
   ``hand_to_publisher`` activity; the receipt comes back by the ``publish_result`` signal. An
   ambiguous send ends ``unconfirmed`` and waits for a human's ``resolve``.

Every step writes its audit row (``record_content``): SQL and the Web UI tell the same story.

Why one module over 450 lines: it is one workflow class whose update handlers, validators and
timers share the item's state; splitting the class across files (mixins) would hide which
handler can change what, and the sequence reads top to bottom here.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable
from datetime import timedelta
from typing import Any, TypeVar

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError

from workflows import calls, patches

with workflow.unsafe.imports_passed_through():
    from activities.compliance import ComplianceActivities
    from activities.content import ContentActivities
    from activities.llm import LlmActivities
    from agentfleet import search_attributes
    from agentfleet.content.model import (
        FINAL_STATES,
        ApproveInput,
        AuditEntry,
        CancelInput,
        ContentContext,
        ContentOrder,
        ContentRecord,
        ContentState,
        ContentView,
        Draft,
        DraftRequest,
        EditInput,
        Notice,
        OutboundMessage,
        PublishRequest,
        PublishResult,
        PublishStatus,
        RejectInput,
        ResolveInput,
        ResolveOutcome,
        Review,
        ReviewRequest,
        SendReceipt,
    )
    from agentfleet.content.policy.checks import with_disclaimers, with_disclosure
    from agentfleet.content.policy.rules import Policy
    from agentfleet.operations.alerts import AlertKind, Severity

from workflows.alerting import new_alert, raise_alerts

RETRY = RetryPolicy(
    initial_interval=timedelta(milliseconds=500), maximum_interval=timedelta(seconds=30)
)
STEP_TIMEOUT = timedelta(seconds=30)
LLM_TIMEOUT = timedelta(seconds=120)
RESEND_AFTER = timedelta(minutes=10)
"""A hand-over with no answer for this long is handed over again (the publisher dedupes)."""
AUTO_APPROVER = "policy:auto"
EDITABLE = {ContentState.AWAITING_APPROVAL, ContentState.SCHEDULED}
CANCELLABLE = {
    ContentState.DRAFTING,
    ContentState.CHECKING,
    ContentState.AWAITING_APPROVAL,
    ContentState.APPROVED,
    ContentState.SCHEDULED,
}


T = TypeVar("T")


class _Ended(Exception):
    """Internal: the pipeline reached a final state."""


@workflow.defn(name="ContentPipelineWorkflow")
class ContentPipelineWorkflow:
    @workflow.init
    def __init__(self, order: ContentOrder) -> None:
        self.order = order
        self.view = ContentView(
            content_id=order.content_id,
            bot=order.bot,
            channel=order.channel,
            brief=order.brief,
            submitted_by=order.submitted_by,
            state=ContentState.DRAFTING,
            publish_at=order.publish_at,
        )
        self.context: ContentContext | None = None
        self.policy: Policy | None = None
        self.decision: ApproveInput | RejectInput | None = None
        self.pending_edit: EditInput | None = None
        self.cancel_request: CancelInput | None = None
        self.outcome: PublishResult | None = None
        self.resolution: ResolveInput | None = None
        self.entries: list[AuditEntry] = []
        self.audit_seq = 0
        self.reviewed_revision = -1
        self.publish_attempt = 0

    @workflow.query
    def status(self) -> ContentView:
        return self.view

    @workflow.run
    async def run(self, order: ContentOrder) -> ContentView:
        try:
            await self._pipeline(order)
        except _Ended:
            pass
        except asyncio.CancelledError:
            # Cancelled from the Web UI or `temporal workflow cancel`: end as cancelled, recorded.
            if self.view.state not in CANCELLABLE:
                raise
            with contextlib.suppress(_Ended):
                await self._end(ContentState.CANCELLED, "workflow cancelled", actor="temporal")
        await workflow.wait_condition(workflow.all_handlers_finished)
        return self.view

    async def _pipeline(self, order: ContentOrder) -> None:
        await self._set_state(ContentState.DRAFTING)
        self.context = await self._guarded(
            calls.run(
                ContentActivities.prepare_content,
                order,
                start_to_close_timeout=STEP_TIMEOUT,
                retry_policy=RETRY,
            )
        )
        await self._stop_if_cancelled()
        self.policy = Policy.model_validate(self.context.policy)
        self.view.policy = self.context.policy_label
        channel = self.context.channel
        draft: Draft = await self._guarded(
            calls.run(
                LlmActivities.draft_content,
                DraftRequest(
                    content_id=order.content_id,
                    bot=order.bot,
                    brief=order.brief,
                    channel=channel.kind,
                    max_length=channel.max_length,
                ),
                start_to_close_timeout=LLM_TIMEOUT,
                retry_policy=RETRY,
            )
        )
        self.view.draft = draft
        self.view.subject = draft.subject
        self.view.text = self._finished_text(draft.text)
        self._audit("draft", "drafter", draft.model_dump(mode="json") | {"text": self.view.text})
        await self._stop_if_cancelled()
        while True:
            await self._review()
            approved = await self._approval()
            if not approved:
                continue  # edited: back through scoring and checks
            if await self._wait_until_publish_time():
                break
        await self._publish()

    def _finished_text(self, text: str) -> str:
        assert self.context is not None and self.policy is not None  # noqa: S101
        return with_disclosure(with_disclaimers(self.policy, text), self.context.disclosure)

    async def _review(self) -> None:
        assert self.context is not None  # noqa: S101
        await self._set_state(ContentState.CHECKING)
        request = ReviewRequest(
            content_id=self.order.content_id,
            text=self.view.text or "",
            channel=self.context.channel.kind,
            max_length=self.context.channel.max_length,
            disclosure=self.context.disclosure,
            policy=self.context.policy,
        )
        scores, checks = await asyncio.gather(
            self._guarded(
                calls.run(
                    ComplianceActivities.score_content,
                    request,
                    start_to_close_timeout=LLM_TIMEOUT,
                    retry_policy=RETRY,
                )
            ),
            self._guarded(
                calls.run(
                    ComplianceActivities.check_content,
                    request,
                    start_to_close_timeout=LLM_TIMEOUT,
                    retry_policy=RETRY,
                )
            ),
        )
        review = Review(scores=scores, checks=checks)
        self.view.scores = review.scores
        self.view.checks = review.checks
        self._audit("scores", "scorer", review.scores.model_dump(mode="json"))
        for check in review.checks:
            self._audit(
                f"check.{check.check}",
                "policy",
                check.model_dump(mode="json") | {"policy": self.view.policy},
            )
        failed = review.failed
        if failed:
            reason = "; ".join(f"{c.check}: {c.reason}" for c in failed)
            await self._end(ContentState.REJECTED, f"failed policy check: {reason}", actor="policy")
        self.reviewed_revision = self.view.revision
        await self._stop_if_cancelled()

    async def _approval(self) -> bool:
        """True once approved; False after an edit (re-check); ends the item otherwise."""
        assert self.policy is not None and self.context is not None  # noqa: S101
        rules = self.policy.approval
        assert self.view.scores is not None  # noqa: S101 - reviewed before approval
        if not self.order.needs_human and rules.auto_approves(
            self.context.channel.kind, self.order.bot, self.view.scores, self.view.checks
        ):
            self.view.decided_by = AUTO_APPROVER
            self._audit("decision", AUTO_APPROVER, {"decision": "approve", "rule": "auto_approve"})
            await self._set_state(ContentState.APPROVED)
            return True
        self.decision = None
        await self._set_state(ContentState.AWAITING_APPROVAL)
        started = workflow.now()
        deadlines = [
            (started + rules.remind_after, "remind") if rules.remind_after else None,
            (started + rules.escalate_after, "escalate") if rules.escalate_after else None,
            (started + rules.expire_after, "expire"),
        ]
        pending = sorted(d for d in deadlines if d is not None)
        while True:
            timeout = (pending[0][0] - workflow.now()) if pending else None
            if timeout is not None and timeout < timedelta(0):
                timeout = timedelta(0)
            try:
                await workflow.wait_condition(
                    lambda: bool(self.decision or self.pending_edit or self.cancel_request),
                    timeout=timeout,
                    timeout_summary=f"approval: {pending[0][1]}" if pending else None,
                )
            except TimeoutError:
                _, step = pending.pop(0)
                await self._deadline(step)
                continue
            await self._stop_if_cancelled()
            if self.pending_edit is not None:
                await self._apply_edit()
                return False
            decision = self.decision
            if isinstance(decision, RejectInput):
                self.view.decided_by = decision.approver
                self._audit("decision", decision.approver, {"decision": "reject"})
                await self._end(ContentState.REJECTED, decision.reason, actor=decision.approver)
            assert isinstance(decision, ApproveInput)  # noqa: S101
            self.view.decided_by = decision.approver
            self.view.decision_note = decision.note
            self._audit(
                "decision", decision.approver, {"decision": "approve", "note": decision.note}
            )
            await self._set_state(ContentState.APPROVED)
            return True

    async def _deadline(self, step: str) -> None:
        assert self.policy is not None  # noqa: S101
        rules = self.policy.approval
        if step == "remind":
            self._audit("reminder", "policy", {"approvers": rules.approvers})
            await self._record()
            await self._notify("reminder", f"Content {self.order.content_id} awaits approval.")
            if workflow.patched(patches.ALERTS.id):
                await self._overdue()
        elif step == "escalate":
            self.view.escalated = True
            self._audit("escalated", "policy", {"escalation": rules.escalation})
            await self._record()
            await self._notify(
                "escalated",
                f"Content {self.order.content_id} is escalated: "
                f"{', '.join(rules.escalation) or 'the approvers'} may now decide.",
            )
        else:
            await self._end(
                ContentState.EXPIRED,
                f"no decision within {rules.expire_after}",
                actor="policy",
            )

    async def _overdue(self) -> None:
        """An alert for the operators: the item still waits past its reminder."""
        order = self.order
        await raise_alerts(
            [
                new_alert(
                    AlertKind.APPROVAL_OVERDUE,
                    order.content_id,
                    f"{order.bot} -> {order.channel}, submitted by {order.submitted_by}, awaits "
                    f"approval (`fleet content show {order.content_id}`)",
                    Severity.INFO,
                )
            ]
        )

    async def _notify(self, kind: str, text: str) -> None:
        """A notice to the policy's ``notify_channel``, if it names one."""
        assert self.policy is not None  # noqa: S101
        channel = self.policy.approval.notify_channel
        if channel is None:
            return
        brief = self.order.brief if len(self.order.brief) <= 200 else self.order.brief[:199] + "…"
        notice = Notice(
            content_id=self.order.content_id,
            channel=channel,
            kind=kind,
            text=f"{text} Brief: {brief} (`fleet content show {self.order.content_id}`)",
        )
        await self._guarded(
            calls.run(
                ContentActivities.notify_approvers,
                notice,
                start_to_close_timeout=STEP_TIMEOUT,
                retry_policy=RETRY,
            )
        )

    async def _apply_edit(self) -> None:
        edit = self.pending_edit
        assert edit is not None  # noqa: S101
        self.view.text = self._finished_text(edit.text)
        self.view.revision += 1
        self.view.decided_by = None
        self._audit("edit", edit.approver, {"revision": self.view.revision, "text": self.view.text})
        self.pending_edit = None

    async def _wait_until_publish_time(self) -> bool:
        """True when it is time to publish; False after an edit (re-check and re-approve)."""
        publish_at = self.order.publish_at
        if publish_at is None or publish_at <= workflow.now():
            return True
        await self._set_state(ContentState.SCHEDULED)
        try:
            await workflow.wait_condition(
                lambda: bool(self.pending_edit or self.cancel_request),
                timeout=publish_at - workflow.now(),
                timeout_summary=f"scheduled: publish at {publish_at.isoformat()}",
            )
        except TimeoutError:
            return True
        await self._stop_if_cancelled()
        await self._apply_edit()
        return False

    async def _publish(self) -> None:
        assert self.context is not None  # noqa: S101
        await self._set_state(ContentState.PUBLISHING)
        request = PublishRequest(
            content_id=self.order.content_id,
            reply_to=workflow.info().workflow_id,
            channel=self.context.channel,
            message=OutboundMessage(
                content_id=self.order.content_id,
                bot=self.order.bot,
                text=self.view.text or "",
                subject=self.view.subject,
                idempotency_key=f"content-{self.order.content_id}",
            ),
        )
        while True:
            self.outcome = None
            self.publish_attempt = request.attempt
            await self._guarded(
                calls.run(
                    ContentActivities.hand_to_publisher,
                    request,
                    start_to_close_timeout=STEP_TIMEOUT,
                    retry_policy=RETRY,
                )
            )
            while self.outcome is None:
                try:
                    await workflow.wait_condition(
                        lambda: self.outcome is not None,
                        timeout=RESEND_AFTER,
                        timeout_summary="publish: hand over again if no receipt",
                    )
                except TimeoutError:
                    await self._guarded(
                        calls.run(
                            ContentActivities.hand_to_publisher,
                            request,
                            start_to_close_timeout=STEP_TIMEOUT,
                            retry_policy=RETRY,
                        )
                    )
            result = self.outcome
            if result.status is PublishStatus.SENT and result.receipt is not None:
                self.view.receipt = result.receipt
                self._audit("published", "publisher", result.receipt.model_dump(mode="json"))
                await self._end(ContentState.PUBLISHED, "", actor="publisher")
            if result.status is PublishStatus.REFUSED:
                await self._end(
                    ContentState.REJECTED, f"channel refused: {result.reason}", actor="publisher"
                )
            if not await self._unconfirmed(result):
                return
            # A human said to send again: the marker was reset, the publisher sees a new attempt.
            request = request.model_copy(update={"attempt": request.attempt + 1})

    async def _unconfirmed(self, result: PublishResult) -> bool:
        """Wait for a human's answer to an ambiguous send; True: hand over again."""
        assert self.policy is not None  # noqa: S101
        self.view.reason = result.reason
        self._audit("unconfirmed", "publisher", {"reason": result.reason})
        await self._set_state(ContentState.UNCONFIRMED)
        self.resolution = None
        try:
            await workflow.wait_condition(
                lambda: self.resolution is not None,
                timeout=self.policy.approval.expire_after,
                timeout_summary="unconfirmed: wait for a human's resolve",
            )
        except TimeoutError:
            raise _Ended from None  # stays unconfirmed, for a human to look at in SQL / the UI
        resolution = self.resolution
        assert resolution is not None  # noqa: S101
        self._audit(
            "resolved",
            resolution.actor,
            {"outcome": resolution.outcome.value, "message_id": resolution.message_id},
        )
        if resolution.outcome is ResolveOutcome.RETRY:
            await self._guarded(
                calls.run(
                    ContentActivities.allow_resend,
                    self.order.content_id,
                    start_to_close_timeout=STEP_TIMEOUT,
                    retry_policy=RETRY,
                )
            )
            await self._set_state(ContentState.PUBLISHING)
            return True
        if resolution.outcome is ResolveOutcome.PUBLISHED:
            if resolution.message_id:
                self.view.receipt = SendReceipt(
                    channel=self.order.channel,
                    message_id=resolution.message_id,
                    sent_at=workflow.now(),
                    detail={"confirmed_by": resolution.actor},
                )
            self.view.reason = f"confirmed published by {resolution.actor}"
            await self._end(ContentState.PUBLISHED, self.view.reason, actor=resolution.actor)
        await self._end(
            ContentState.CANCELLED, f"not published (said {resolution.actor})", actor="human"
        )
        return False

    # Updates: validators reject bad input and change nothing.

    @workflow.update
    async def approve(self, decision: ApproveInput) -> ContentView:
        """Answers once the item moved on: scheduled, publishing (or already further)."""
        self._claim_decision(decision)
        await workflow.wait_condition(
            lambda: self.view.state not in {ContentState.AWAITING_APPROVAL, ContentState.APPROVED}
        )
        return self.view

    @approve.validator
    def _validate_approve(self, decision: ApproveInput) -> None:
        self._check_decider(decision.approver, {ContentState.AWAITING_APPROVAL}, "approve")

    @workflow.update
    async def reject(self, decision: RejectInput) -> ContentView:
        self._claim_decision(decision)
        await workflow.wait_condition(lambda: self.view.state != ContentState.AWAITING_APPROVAL)
        return self.view

    @reject.validator
    def _validate_reject(self, decision: RejectInput) -> None:
        self._check_decider(decision.approver, {ContentState.AWAITING_APPROVAL}, "reject")

    @workflow.update
    async def edit(self, edit: EditInput) -> ContentView:
        if self.pending_edit is not None or self._decided_while_awaiting():
            raise self._already_decided()
        revision = self.view.revision
        self.pending_edit = edit
        await workflow.wait_condition(
            lambda: self.reviewed_revision > revision or self.view.state in FINAL_STATES
        )
        return self.view

    @edit.validator
    def _validate_edit(self, edit: EditInput) -> None:
        self._check_decider(edit.approver, EDITABLE, "edit")

    @workflow.update
    async def cancel(self, request: CancelInput) -> ContentView:
        if self.cancel_request is None:
            self.cancel_request = request
        await workflow.wait_condition(lambda: self.view.state in FINAL_STATES)
        return self.view

    @cancel.validator
    def _validate_cancel(self, request: CancelInput) -> None:
        if self.view.state not in CANCELLABLE:
            raise ApplicationError(
                f"content {self.order.content_id} is {self.view.state.value}; it can be "
                "cancelled until it is handed to its channel",
                type="InvalidState",
            )

    @workflow.update
    async def resolve(self, resolution: ResolveInput) -> ContentView:
        if self.resolution is not None:
            raise self._already_decided()
        self.resolution = resolution
        await workflow.wait_condition(lambda: self.view.state != ContentState.UNCONFIRMED)
        return self.view

    @resolve.validator
    def _validate_resolve(self, resolution: ResolveInput) -> None:
        if self.view.state is not ContentState.UNCONFIRMED or self.resolution is not None:
            raise ApplicationError(
                f"content {self.order.content_id} is {self.view.state.value}; only an "
                "unconfirmed send is resolved",
                type="InvalidState",
            )

    @workflow.signal
    def publish_result(self, result: PublishResult) -> None:
        if result.content_id != self.order.content_id or self.outcome is not None:
            return
        if result.attempt >= self.publish_attempt:
            self.outcome = result

    def _claim_decision(self, decision: ApproveInput | RejectInput) -> None:
        """Two approvers at once: the first handler to run decides, the second is told so."""
        if self.decision is not None or self.pending_edit is not None:
            raise self._already_decided()
        if self.view.state is not ContentState.AWAITING_APPROVAL:
            raise self._already_decided()
        self.decision = decision

    def _decided_while_awaiting(self) -> bool:
        return self.view.state is ContentState.AWAITING_APPROVAL and self.decision is not None

    def _already_decided(self) -> ApplicationError:
        decided = self.decision
        if isinstance(decided, ApproveInput):
            what = f"approved by {decided.approver}"
        elif isinstance(decided, RejectInput):
            what = f"rejected by {decided.approver}"
        elif self.pending_edit is not None:
            what = f"being edited by {self.pending_edit.approver}"
        else:
            what = self.view.state.value
        return ApplicationError(
            f"content {self.order.content_id} is already decided: {what}", type="AlreadyDecided"
        )

    def _check_decider(self, approver: str, states: set[ContentState], action: str) -> None:
        if self.view.state not in states and self.decision is not None:
            raise self._already_decided()
        if self.view.state not in states:
            names = ", ".join(sorted(s.value for s in states))
            raise ApplicationError(
                f"content {self.order.content_id} is {self.view.state.value}; {action} needs it "
                f"{names}",
                type="InvalidState",
            )
        if self._decided_while_awaiting():
            raise self._already_decided()
        assert self.policy is not None  # noqa: S101 - set before any approvable state
        problem = self.policy.approval.may_decide(
            approver, submitted_by=self.order.submitted_by, escalated=self.view.escalated
        )
        if problem:
            raise ApplicationError(problem, type="NotAllowed")

    # Helpers.

    async def _stop_if_cancelled(self) -> None:
        request = self.cancel_request
        if request is not None:
            await self._end(ContentState.CANCELLED, request.reason, actor=request.actor)

    async def _end(self, state: ContentState, reason: str, *, actor: str) -> None:
        self.view.reason = reason
        if state is not ContentState.PUBLISHED:
            self._audit(state.value, actor, {"reason": reason})
        await self._set_state(state)
        raise _Ended

    async def _set_state(self, state: ContentState) -> None:
        self.view.state = state
        workflow.upsert_search_attributes(
            [
                search_attributes.CONTENT_STATE.value_set(state.value),
                search_attributes.CONTENT_CHANNEL.value_set(self.order.channel),
                search_attributes.BOT_NAME.value_set(self.order.bot),
            ]
        )
        await self._record()

    async def _record(self) -> None:
        entries, self.entries = self.entries, []
        await self._guarded(
            calls.run(
                ContentActivities.record_content,
                ContentRecord(
                    view=self.view, workflow_id=workflow.info().workflow_id, entries=entries
                ),
                start_to_close_timeout=STEP_TIMEOUT,
                retry_policy=RETRY,
            )
        )

    def _audit(self, step: str, actor: str, detail: dict[str, Any]) -> None:
        """Queue one audit row (written by the next ``record_content``); the key is unique per
        step of this item, so a retried write finds its row."""
        self.audit_seq += 1
        key = f"content:{self.order.content_id}:{self.audit_seq}:{step}"
        self.entries.append(AuditEntry(step=step, actor=actor, detail=dict(detail), key=key))

    async def _guarded(self, call: Awaitable[T]) -> T:
        """An activity; one that fails for good (bad bot, unknown channel) rejects the item."""
        try:
            return await call
        except ActivityError as err:
            cause = err.cause
            if isinstance(cause, ApplicationError) and cause.non_retryable:
                await self._end(ContentState.REJECTED, cause.message, actor="pipeline")
            raise
