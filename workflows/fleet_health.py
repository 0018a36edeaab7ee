"""FleetHealthWorkflow: the fleet's periodic health check, run by the Temporal Schedule
``fleet-health`` (each run's id is ``schedule-fleet-health-<time>``, given by the schedule).

The sequence: the bots to check (``health_targets`` on ``fleet-io``: active and degraded rows of
the ``bots`` table) -> where our contracts are (``chain_context``) -> every bot checked in batches
of ``batch_size``, one ``check_bots_health`` activity per batch (``fleet-chain``), up to
``parallel_batches`` at once -> each bot whose verdict changed is signalled (``health``:
``degraded`` with the reasons, or ``recovered``) -> ``report_health`` (``fleet-io``: a log line and
the ``fleet_bot_health_degraded_total`` / ``fleet_bots_degraded`` metrics). ``check_models``
(``fleet-llm``) compares every learning task's champion with its parent on fresh data and rolls a
worse one back (patch ``model-health``). Bots degraded and models rolled back by a run are raised
as alerts (``raise_alerts``, patch ``alerts``; a run with nothing to alert raises nothing).

A bot is checked for gas (native balance at least ``min_gas_wei``), its fUSD balance (shown, never
a reason), its ERC-8004 registration (``ownerOf`` and ``getAgentWallet`` of its agent are its
wallet), a ``status`` skill round trip (the ``run_skill`` code path) and its entity's error rate
(``errors / commands_handled`` of its ``status`` query once it has handled ``min_commands``).
A batch that fails as a whole (chain unreachable, worker lost) leaves its bots ``unchecked``:
nothing changes for them, so an outage of ours never degrades the fleet.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, FailureError

from workflows import calls, patches

with workflow.unsafe.imports_passed_through():
    from activities.health import HealthActivities
    from activities.identity import IdentityActivities
    from activities.learning import LearningActivities
    from agentfleet.bots.health import (
        BotHealth,
        FleetHealthSummary,
        HealthBatch,
        HealthBatchResult,
        HealthCheck,
        HealthTarget,
        HealthTargets,
        ModelHealth,
    )
    from agentfleet.bots.model import BotEvent, BotStatus, ChainContext, bot_workflow_id
    from agentfleet.operations.alerts import Alert, AlertKind

from workflows.alerting import new_alert, raise_alerts

SCHEDULE_ID = "fleet-health"
WORKFLOW_ID = "schedule-fleet-health"
"""The id the schedule's action gives each run (Temporal appends the scheduled time)."""
BATCH_MARGIN = timedelta(seconds=10)
"""How much longer than one bot's check a batch activity may take."""
STEP_RETRY = RetryPolicy(maximum_interval=timedelta(seconds=5), maximum_attempts=5)
BATCH_RETRY = RetryPolicy(initial_interval=timedelta(seconds=1), maximum_attempts=3)


@workflow.defn(name="FleetHealthWorkflow")
class FleetHealthWorkflow:
    @workflow.init
    def __init__(self, check: HealthCheck) -> None:
        self.check = check
        self.results: list[BotHealth] = []
        self.summary = FleetHealthSummary()
        self.in_flight = 0
        self.alerts: list[Alert] = []

    @workflow.run
    async def run(self, check: HealthCheck) -> FleetHealthSummary:
        self.summary.started_at = workflow.now()
        targets: HealthTargets = await calls.run(
            HealthActivities.health_targets,
            check,
            start_to_close_timeout=timedelta(seconds=30),
            retry_policy=STEP_RETRY,
        )
        if targets.bots:
            context: ChainContext = await calls.run(
                IdentityActivities.chain_context,
                start_to_close_timeout=timedelta(seconds=30),
                retry_policy=STEP_RETRY,
            )
            size = check.batch_size
            batches = [targets.bots[i : i + size] for i in range(0, len(targets.bots), size)]
            await asyncio.gather(*(self._check(batch, context) for batch in batches))
            await asyncio.gather(*(self._judge(result) for result in self.results))
        if workflow.patched(patches.MODEL_HEALTH.id):
            await self._check_models(check)
        self.summary.checked = len(self.results)
        self.summary.healthy = sum(1 for r in self.results if r.healthy)
        self.summary.finished_at = workflow.now()
        await calls.run(
            HealthActivities.report_health,
            self.summary,
            start_to_close_timeout=timedelta(seconds=30),
            retry_policy=STEP_RETRY,
        )
        alerts = [
            new_alert(AlertKind.BOT_DEGRADED, name, self.summary.reasons.get(name, "degraded"))
            for name in sorted(self.summary.degraded)
        ] + self.alerts
        if alerts and workflow.patched(patches.ALERTS.id):
            await raise_alerts(alerts)
        return self.summary

    async def _check_models(self, check: HealthCheck) -> None:
        """Champions that do worse than their parent on fresh data are rolled back (by the
        activity); the bots serving them are told their model."""
        try:
            health: ModelHealth = await calls.run(
                LearningActivities.check_models,
                check,
                start_to_close_timeout=timedelta(minutes=2),
                retry_policy=STEP_RETRY,
            )
        except ActivityError as err:
            workflow.logger.warning("model health not checked: %s", _cause(err))
            return
        for rollback in health.rolled_back:
            line = (
                f"{rollback.task}: {rollback.from_version} -> {rollback.to_version} "
                f"({rollback.reason})"
            )
            self.summary.models_rolled_back.append(line)
            self.alerts.append(new_alert(AlertKind.MODEL_ROLLBACK, rollback.task, line))
            workflow.logger.warning("model rolled back: %s", line)
            for name in rollback.bots:
                handle = workflow.get_external_workflow_handle(bot_workflow_id(name))
                try:
                    await handle.signal(
                        "note",
                        BotEvent(at=workflow.now(), event="model", detail=rollback.to_version),
                    )
                except FailureError:
                    continue

    async def _check(self, batch: list[HealthTarget], context: ChainContext) -> None:
        """One ``check_bots_health`` activity for ``batch``; if it fails as a whole its bots
        are unchecked (their state stays as it is)."""
        limit = self.check.parallel_batches
        await workflow.wait_condition(lambda: self.in_flight < limit)
        self.in_flight += 1
        per_bot = timedelta(seconds=self.check.per_bot_timeout_s)
        try:
            outcome: HealthBatchResult = await calls.run(
                HealthActivities.check_bots_health,
                HealthBatch(targets=batch, context=context, check=self.check),
                start_to_close_timeout=per_bot + BATCH_MARGIN,
                retry_policy=BATCH_RETRY,
            )
        except ActivityError as err:
            reason = f"not checked: {_cause(err)}"
            for target in batch:
                self.summary.unchecked.append(target.bot.name)
                self.summary.reasons[target.bot.name] = reason
            workflow.logger.warning("health batch failed: %s", reason)
            return
        finally:
            self.in_flight -= 1
        self.results.extend(outcome.results)

    async def _judge(self, health: BotHealth) -> None:
        """Signal the bot when its verdict changes its state; tally the rest."""
        name, summary = health.name, self.summary
        reason = "; ".join(health.reasons)
        if not health.healthy:
            summary.reasons[name] = reason
        if not health.healthy and health.status is BotStatus.ACTIVE:
            if await self._signal(name, "degraded", reason):
                summary.degraded.append(name)
                workflow.logger.warning("bot %s degraded: %s", name, reason)
        elif not health.healthy and health.status is BotStatus.DEGRADED:
            summary.still_degraded.append(name)
        elif not health.healthy:
            summary.unhealthy_other.append(name)
        elif health.status is BotStatus.DEGRADED and await self._signal(
            name, "recovered", "health checks pass"
        ):
            summary.recovered.append(name)
            workflow.logger.info("bot %s recovered", name)

    async def _signal(self, name: str, event: str, detail: str) -> bool:
        handle = workflow.get_external_workflow_handle(bot_workflow_id(name))
        try:
            await handle.signal("health", BotEvent(at=workflow.now(), event=event, detail=detail))
        except FailureError as err:
            self.summary.signal_failures[name] = _cause(err)
            workflow.logger.warning("bot %s could not be told it %s: %s", name, event, err)
            return False
        return True


def _cause(err: BaseException) -> str:
    """The innermost message of a failure chain, one line."""
    cause: BaseException | None = err
    while isinstance(cause, FailureError) and cause.cause is not None:
        cause = cause.cause
    text = str(cause or err) or type(err).__name__
    return text.splitlines()[0]
