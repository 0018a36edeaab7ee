"""Alerts on the dev server with the sandbox's Telegram Bot API as the alert channel, on SQLite
and PostgreSQL: a storm is one grouped message within the channel's limits, repeats within the
cooldown are counted and not sent again, each source reaches the channel, and with no alert
channel alerts are recorded only."""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from temporalio.client import Client
from temporalio.worker import Worker
from typer.testing import CliRunner

from activities.alerts import AlertActivities
from activities.channels import ChannelActivities
from agentfleet import taskqueues
from agentfleet.bots.health import FleetHealthSummary, HealthCheck
from agentfleet.bots.model import bot_workflow_id
from agentfleet.content import store as content_store
from agentfleet.content.model import (
    MAX_LENGTH,
    ChannelConfig,
    ChannelKind,
    ContentOrder,
    ContentState,
    default_limit,
)
from agentfleet.operations.alerts import (
    ALERTS_WORKFLOW_ID,
    Alert,
    AlertBatch,
    AlertKind,
    AlertRow,
    AlertsState,
    AlertsView,
    digest_of,
    format_digest,
    recent_alerts,
)
from agentfleet.payments.model import PaymentStatus, PaymentView
from agentfleet.payments.reconcile import ReconcileReport, ReconcileRequest
from agentfleet.settings import Settings
from clients import content as content_ops
from clients.alerts import send_alerts
from sandbox.app import Sandbox
from sandbox.store import TelegramMessage
from starters.cli.main import app
from tests.alert_doubles import (
    LOST_PAYMENT,
    StandInBot,
    failing_payment,
    health_doubles,
    payment_doubles,
    reconcile_doubles,
)
from tests.replay import record_continued, record_history
from tests.test_content_pipeline import POLICY, add_publisher
from workers.main import WORKFLOW_RUNNER, running_workers
from workflows.alerts import AlertsWorkflow
from workflows.channel_publisher import ChannelPublisherWorkflow, PublisherView
from workflows.fleet_health import FleetHealthWorkflow
from workflows.payment_saga import PaymentSagaWorkflow
from workflows.reconcile import ReconcilePaymentsWorkflow

ALERT_CHAT = "100900"


@dataclass
class Alerting:
    client: Client
    settings: Settings
    sandbox: Sandbox

    @property
    def url(self) -> str:
        return self.settings.effective_database_url

    @property
    def backend(self) -> str:
        return "postgresql" if self.url.startswith("postgresql") else "sqlite"

    async def messages(self) -> list[TelegramMessage]:
        return await asyncio.to_thread(self.sandbox.store.telegram_messages, ALERT_CHAT)

    async def view(self) -> AlertsView:
        handle = self.client.get_workflow_handle(ALERTS_WORKFLOW_ID)
        view: AlertsView = await handle.query(AlertsWorkflow.pending)
        return view

    async def rows(self) -> list[AlertRow]:
        return await asyncio.to_thread(recent_alerts, self.url)


def alert_channel() -> ChannelConfig:
    kind = ChannelKind.TELEGRAM
    return ChannelConfig(
        name="alerts",
        kind=kind,
        target=ALERT_CHAT,
        limit=default_limit(kind, ALERT_CHAT),
        max_length=MAX_LENGTH[kind],
    )


@contextlib.asynccontextmanager
async def sandboxed(
    tmp_path: Path, url: str, channels: list[str], **overrides: Any
) -> AsyncIterator[tuple[Sandbox, Settings]]:
    async with Sandbox(home=tmp_path) as sandbox:
        settings = Settings(
            home=tmp_path,
            database_url=url,
            alert_channels=channels,
            alert_window_s=overrides.pop("alert_window_s", 1.0),
            **sandbox.settings_overrides(),
            **overrides,
        )
        content_store.save_channel(url, alert_channel())
        yield sandbox, settings


@pytest_asyncio.fixture(loop_scope="session")
async def alerting(
    dev_client: Client, migrated_database_url: str, tmp_path: Path
) -> AsyncIterator[Alerting]:
    """Every real worker; alerts go to the sandbox chat ``alerts`` in 3 s windows; content
    approvals are reminded after 1 s."""
    policy = tmp_path / "remind.yaml"
    policy.write_text(POLICY.format(expire="60s", extra="  remind_after: 1s\n"))
    overrides = {"alert_window_s": 3.0, "content_policy": policy}
    async with (
        sandboxed(tmp_path, migrated_database_url, ["alerts"], **overrides) as (
            sandbox,
            settings,
        ),
        running_workers(dev_client, settings),
    ):
        yield Alerting(dev_client, settings, sandbox)


@contextlib.asynccontextmanager
async def doubled_workers(
    client: Client, settings: Settings, doubles: dict[str, list[Any]]
) -> AsyncIterator[None]:
    """The sources' workflows with their own activities replaced by ``doubles`` (by queue); the
    alert activities and the channel send are the real ones."""
    alerts, channels = AlertActivities(settings, client), ChannelActivities(settings)
    real = [alerts.raise_alerts, alerts.deliver_alert_digest, channels.publish_to_channel]
    by_queue = {**doubles, taskqueues.IO: real + doubles.get(taskqueues.IO, [])}
    local = by_queue.pop(taskqueues.WORKFLOWS, [])
    workflows = [
        AlertsWorkflow,
        ChannelPublisherWorkflow,
        FleetHealthWorkflow,
        PaymentSagaWorkflow,
        ReconcilePaymentsWorkflow,
        StandInBot,
    ]
    async with contextlib.AsyncExitStack() as stack:
        await stack.enter_async_context(
            Worker(
                client,
                task_queue=taskqueues.WORKFLOWS,
                workflows=workflows,
                activities=local,
                workflow_runner=WORKFLOW_RUNNER,
            )
        )
        for queue, activities in by_queue.items():
            await stack.enter_async_context(Worker(client, task_queue=queue, activities=activities))
        yield


async def until(
    read: Callable[[], Awaitable[Any]], ok: Callable[[Any], bool], seconds: float = 30
) -> Any:
    value = await read()
    for _ in range(int(seconds * 10)):
        if ok(value):
            return value
        await asyncio.sleep(0.1)
        value = await read()
    raise AssertionError(f"still {value!r}")


def degradation(run: int, bot: str = "forecaster-1") -> Alert:
    source = f"schedule-fleet-health-run-{run}"
    return Alert(
        alert_id=f"{source}:bot_degraded:{bot}",
        kind=AlertKind.BOT_DEGRADED,
        key=bot,
        text="gas: 0 native left, below the 0.001 native minimum",
        at=datetime.now(UTC),
        source=source,
    )


def test_digest_names_ten_keys_and_counts_the_rest() -> None:
    alerts = [degradation(i, f"forecaster-{i}") for i in range(50)]
    digest = digest_of("e-1", AlertKind.BOT_DEGRADED, alerts, repeats=3)
    subject, text = format_digest(digest, 4096)
    assert subject == "[warning] bots degraded (50)"
    first = text.splitlines()[0]
    assert first.startswith("[WARNING] bot_degraded x50: forecaster-0, forecaster-1,")
    assert first.endswith("forecaster-9 and 40 more")
    assert "(+3 repeats within the cooldown, not sent again)" in text
    assert len(format_digest(digest, 100)[1]) == 100


async def test_50_identical_degradations_are_one_grouped_alert_within_the_channels_limits(
    alerting: Alerting,
) -> None:
    await asyncio.gather(
        *(
            send_alerts(alerting.client, AlertBatch(alerts=[degradation(i)]), alerting.settings)
            for i in range(50)
        )
    )
    await send_alerts(alerting.client, AlertBatch(alerts=[degradation(7)]), alerting.settings)
    messages = await until(alerting.messages, lambda m: len(m) >= 1)
    view = await until(alerting.view, lambda v: not v.pending)
    assert view.digests == 1 and view.suppressed == 0
    assert len(messages) == 1
    assert messages[0].text.startswith("[WARNING] bot_degraded x50: forecaster-1\n")
    assert "gas: 0 native left" in messages[0].text
    [row] = await alerting.rows()
    assert (row.kind, row.count, row.keys, row.channels) == (
        AlertKind.BOT_DEGRADED,
        50,
        ["forecaster-1"],
        ["alerts"],
    )

    later = [degradation(100 + i) for i in range(10)]
    await send_alerts(alerting.client, AlertBatch(alerts=later), alerting.settings)
    view = await until(alerting.view, lambda v: v.suppressed == 10 and not v.pending)
    assert view.digests == 1
    assert len(await alerting.messages()) == 1, "a repeat within the cooldown is not sent again"
    publisher = alerting.client.get_workflow_handle("publisher-alerts")
    status: PublisherView = await publisher.query(ChannelPublisherWorkflow.status)
    assert (status.sent, status.rate_limited) == (1, 0)
    assert alerting.sandbox.store.telegram_counters().get("rate_limited", 0) == 0
    await record_history(
        alerting.client.get_workflow_handle(ALERTS_WORKFLOW_ID), f"alerts_{alerting.backend}"
    )


async def test_alerts_entity_continued_as_new_still_holds_back_a_repeat_within_the_cooldown(
    dev_client: Client, migrated_database_url: str, tmp_path: Path
) -> None:
    """Past its ``continue_as_new_after`` events the entity starts a new run between windows;
    the new run knows what was sent: a repeat within the cooldown is counted, not sent again."""
    async with (
        sandboxed(tmp_path, migrated_database_url, ["alerts"], alert_window_s=0.2) as (
            sandbox,
            settings,
        ),
        doubled_workers(dev_client, settings, {}),
    ):
        handle = await dev_client.start_workflow(
            AlertsWorkflow.run,
            AlertsState(window_s=0.2, continue_as_new_after=10),
            id=ALERTS_WORKFLOW_ID,
            task_queue=taskqueues.WORKFLOWS,
        )

        async def sent() -> list[TelegramMessage]:
            return await asyncio.to_thread(sandbox.store.telegram_messages, ALERT_CHAT)

        await send_alerts(dev_client, AlertBatch(alerts=[degradation(1)]), settings)
        await until(sent, lambda m: len(m) == 1)
        first_run = handle.first_execution_run_id
        assert first_run is not None
        await until(handle.describe, lambda d: d.run_id != first_run)
        await send_alerts(dev_client, AlertBatch(alerts=[degradation(2)]), settings)
        latest = dev_client.get_workflow_handle(ALERTS_WORKFLOW_ID)
        view = await until(
            lambda: latest.query(AlertsWorkflow.pending), lambda v: v.suppressed and not v.pending
        )
        assert (view.digests, view.suppressed) == (1, 1)
        await asyncio.sleep(0.5)
        assert len(await sent()) == 1, "a repeat within the cooldown is not sent again"
        backend = "postgresql" if migrated_database_url.startswith("postgresql") else "sqlite"
        await record_continued(dev_client, handle.id, first_run, "alerts_continued", backend)


async def test_an_approval_past_its_reminder_reaches_the_alert_channel(
    alerting: Alerting,
) -> None:
    add_publisher(alerting.url)
    hooks = ChannelConfig(
        name="hooks",
        kind=ChannelKind.WEBHOOK,
        target=alerting.sandbox.webhook_url("hooks"),
        limit=default_limit(ChannelKind.WEBHOOK, "hooks"),
        max_length=MAX_LENGTH[ChannelKind.WEBHOOK],
    )
    content_store.save_channel(alerting.url, hooks)
    content_id = f"c-{uuid.uuid4().hex[:8]}"
    order = ContentOrder(
        content_id=content_id,
        bot="pub-1",
        channel="hooks",
        brief="Weekly note.",
        submitted_by="dave",
    )
    await content_ops.submit(alerting.client, alerting.url, order, datetime.now(UTC))
    messages = await until(alerting.messages, lambda m: len(m) >= 1)
    assert messages[0].text.startswith(f"[INFO] approval_overdue x1: {content_id}\n")
    assert "pub-1 -> hooks, submitted by dave" in messages[0].text
    view = await content_ops.show(alerting.client, alerting.url, content_id)
    assert view.state is ContentState.AWAITING_APPROVAL
    handle = alerting.client.get_workflow_handle(f"content-{content_id}")
    await record_history(handle, f"content_pipeline_reminded_{alerting.backend}")


async def test_degraded_bots_and_a_rolled_back_model_reach_the_alert_channel(
    dev_client: Client, migrated_database_url: str, tmp_path: Path
) -> None:
    bots = [f"alert-bot-{i:02d}" for i in range(12)]
    async with (
        sandboxed(tmp_path, migrated_database_url, ["alerts"]) as (sandbox, settings),
        doubled_workers(dev_client, settings, health_doubles(bots)),
    ):
        for name in bots:
            await dev_client.start_workflow(
                StandInBot.run, id=bot_workflow_id(name), task_queue=taskqueues.WORKFLOWS
            )
        handle = await dev_client.start_workflow(
            FleetHealthWorkflow.run,
            HealthCheck(),
            id=f"health-alerts-{uuid.uuid4().hex[:8]}",
            task_queue=taskqueues.WORKFLOWS,
        )
        summary: FleetHealthSummary = await handle.result()
        assert sorted(summary.degraded) == bots and summary.models_rolled_back
        messages = await until(
            lambda: asyncio.to_thread(sandbox.store.telegram_messages, ALERT_CHAT),
            lambda m: len(m) >= 2,
        )
        heads = sorted(m.text.splitlines()[0] for m in messages)
        assert heads == [
            "[WARNING] bot_degraded x12: " + ", ".join(bots[:10]) + " and 2 more",
            "[WARNING] model_rollback x1: digits",
        ]
        assert "digits: digits-v3 -> digits-v2 (accuracy 0.81 < 0.93)" in "".join(
            m.text for m in messages
        )
        backend = "postgresql" if migrated_database_url.startswith("postgresql") else "sqlite"
        await record_history(handle, f"fleet_health_alerts_{backend}")


@pytest.mark.parametrize("channels", [["alerts"], []], ids=["alert-channel", "recorded-only"])
async def test_a_reconciliation_difference_is_sent_or_with_no_alert_channel_recorded_only(
    dev_client: Client, migrated_database_url: str, tmp_path: Path, channels: list[str]
) -> None:
    async with (
        sandboxed(tmp_path, migrated_database_url, channels) as (sandbox, settings),
        doubled_workers(dev_client, settings, reconcile_doubles()),
    ):
        handle = await dev_client.start_workflow(
            ReconcilePaymentsWorkflow.run,
            ReconcileRequest(recheck_after_s=0),
            id=f"reconcile-alerts-{uuid.uuid4().hex[:8]}",
            task_queue=taskqueues.WORKFLOWS,
        )
        report: ReconcileReport = await handle.result()
        assert report.total_findings == 1
        rows = await until(
            lambda: asyncio.to_thread(recent_alerts, migrated_database_url), lambda r: r
        )
        [row] = rows
        assert (row.kind, row.keys, row.channels) == (
            AlertKind.RECONCILE_DIFFERENCE,
            [LOST_PAYMENT],
            channels,
        )
        assert row.severity.value == "critical" and "unknown_settlement" in row.text
        if channels:
            [message] = await until(
                lambda: asyncio.to_thread(sandbox.store.telegram_messages, ALERT_CHAT),
                lambda m: m,
            )
            assert message.text.startswith("[CRITICAL] reconcile_difference x1: ")
            backend = "postgresql" if migrated_database_url.startswith("postgresql") else "sqlite"
            await record_history(handle, f"reconcile_payments_alerts_{backend}")
        else:
            assert not sandbox.store.telegram_messages()
            marker = f"alert-{row.digest_id}-alerts"
            assert content_store.send_marker(migrated_database_url, marker) is None
            env = {"FLEET_DATABASE_URL": migrated_database_url, "FLEET_HOME": str(tmp_path)}
            shown = await asyncio.to_thread(
                CliRunner().invoke, app, ["alerts", "list", "--json"], env=env
            )
            assert shown.exit_code == 0, shown.output
            assert [(r["kind"], r["channels"]) for r in json.loads(shown.stdout)] == [
                ("reconcile_difference", [])
            ]


async def test_a_failed_settlement_reaches_the_alert_channel(
    dev_client: Client, migrated_database_url: str, tmp_path: Path
) -> None:
    order = failing_payment()
    async with (
        sandboxed(tmp_path, migrated_database_url, ["alerts"]) as (sandbox, settings),
        doubled_workers(dev_client, settings, payment_doubles()),
    ):
        handle = await dev_client.start_workflow(
            PaymentSagaWorkflow.run, order, id=order.payment_id, task_queue=taskqueues.WORKFLOWS
        )
        view: PaymentView = await handle.result()
        assert view.status is PaymentStatus.FAILED
        [message] = await until(
            lambda: asyncio.to_thread(sandbox.store.telegram_messages, ALERT_CHAT), lambda m: m
        )
        assert message.text.startswith(f"[WARNING] payment_failed x1: {order.payment_id}\n")
        assert "settlement failed: execution reverted" in message.text
        backend = "postgresql" if migrated_database_url.startswith("postgresql") else "sqlite"
        # payment_saga_failed_alert_{,lean_}{backend}: older versions' histories, kept as recorded.
        await record_history(handle, f"payment_saga_failed_alert_verify_activity_{backend}")
