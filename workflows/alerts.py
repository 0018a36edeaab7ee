"""AlertsWorkflow: the one entity (``alerts``) that turns alert storms into a few messages.

Any workflow raises alerts with one ``raise_alerts`` activity (:func:`raise_alerts` below), which
signals this entity (signal-with-start ``alert``). The entity:

1. drops an alert id it has already seen (a retried or replayed raise);
2. opens a window (``window_s``) at the first pending alert and, when it closes, groups what
   arrived by kind: one :class:`~agentfleet.operations.alerts.AlertDigest` per kind;
3. counts, without sending again, a key (kind + key) already sent within ``cooldown_s``; such
   repeats are told in the next message of that kind;
4. hands each digest to ``deliver_alert_digest`` (``fleet-io``: the ``alerts`` row, then each
   alert channel's publisher, which keeps the channel's rate limit).

Digest ids are ``{epoch}-{sequence}``, fixed in workflow state, so a retried delivery records and
sends the same digest once. Continue-as-new when Temporal suggests it (or past the state's
``continue_as_new_after`` events), between windows, carrying the state (pending alerts,
cooldowns, seen ids).
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError

from workflows import calls
from workflows.entities import continue_as_new_due

with workflow.unsafe.imports_passed_through():
    from activities.alerts import AlertActivities
    from agentfleet.operations.alerts import (
        ALERTS_WORKFLOW,
        AlertBatch,
        AlertDigest,
        AlertKind,
        AlertsState,
        AlertsView,
        digest_of,
        group,
        report_key,
    )

MAX_SEEN = 5000
"""Alert ids remembered for de-duplication (the oldest are forgotten first)."""
DELIVER_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    maximum_interval=timedelta(seconds=30),
    maximum_attempts=10,
)


@workflow.defn(name=ALERTS_WORKFLOW)
class AlertsWorkflow:
    @workflow.init
    def __init__(self, state: AlertsState) -> None:
        self.state = state

    @workflow.signal
    def alert(self, batch: AlertBatch) -> None:
        """Queue the alerts of ``batch`` not seen before; the batch's settings apply from now."""
        state = self.state
        if batch.window_s is not None:
            state.window_s = batch.window_s
        if batch.cooldown_s is not None:
            state.cooldown_s = batch.cooldown_s
        now = workflow.now()
        for alert in batch.alerts:
            if alert.alert_id in state.seen:
                continue
            state.seen[alert.alert_id] = now
            state.pending.append(alert)
            if state.window_opened_at is None:
                state.window_opened_at = now
        while len(state.seen) > MAX_SEEN:
            state.seen.pop(next(iter(state.seen)))

    @workflow.query
    def pending(self) -> AlertsView:
        state = self.state
        counts: dict[AlertKind, int] = {}
        for alert in state.pending:
            counts[alert.kind] = counts.get(alert.kind, 0) + 1
        closes = (
            state.window_opened_at + timedelta(seconds=state.window_s)
            if state.window_opened_at is not None
            else None
        )
        return AlertsView(
            pending=counts,
            window_closes_at=closes,
            digests=state.digests,
            suppressed=state.suppressed,
        )

    @workflow.run
    async def run(self, state: AlertsState) -> None:
        if self.state.epoch is None:
            self.state.epoch = workflow.uuid4().hex[:8]
        while True:
            await workflow.wait_condition(
                lambda: (
                    bool(self.state.pending)
                    or continue_as_new_due(self.state.continue_as_new_after)
                )
            )
            if self.state.pending:
                opened = self.state.window_opened_at or workflow.now()
                remaining = opened + timedelta(seconds=self.state.window_s) - workflow.now()
                if remaining > timedelta(0):
                    await workflow.sleep(remaining, summary="alert window")
                await self._flush()
            if continue_as_new_due(self.state.continue_as_new_after):
                break
        await workflow.wait_condition(workflow.all_handlers_finished)
        workflow.continue_as_new(self.state)

    async def _flush(self) -> None:
        """One digest per kind of what the window gathered; repeats within the cooldown are
        counted and held for the next digest of their kind."""
        state = self.state
        alerts, state.pending, state.window_opened_at = state.pending, [], None
        now = workflow.now()
        state.reported = {
            key: at
            for key, at in state.reported.items()
            if (now - at).total_seconds() < state.cooldown_s
        }
        fresh, repeats = group(alerts, state.reported, now, state.cooldown_s)
        for kind, count in repeats.items():
            state.held_repeats[kind] = state.held_repeats.get(kind, 0) + count
            state.suppressed += count
        digests: list[AlertDigest] = []
        for kind, grouped in fresh.items():
            state.sequence += 1
            digest_id = f"{state.epoch}-{state.sequence}"
            digests.append(digest_of(digest_id, kind, grouped, state.held_repeats.pop(kind, 0)))
            for alert in grouped:
                state.reported[report_key(kind, alert.key)] = now
        state.digests += len(digests)
        await asyncio.gather(*(self._deliver(digest) for digest in digests))

    async def _deliver(self, digest: AlertDigest) -> None:
        try:
            await calls.run(
                AlertActivities.deliver_alert_digest,
                digest,
                start_to_close_timeout=timedelta(seconds=30),
                retry_policy=DELIVER_RETRY,
            )
        except ActivityError as err:
            workflow.logger.error("alert digest %s not delivered: %s", digest.digest_id, err.cause)
