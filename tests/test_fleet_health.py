"""Fleet health on the real dev server and anvil: a bot without gas is degraded with the reason
(its status, the ``bots`` table and the BotStatus search attribute agree), refunded it recovers;
the health schedule is created once and steered from the CLI."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest_asyncio
from prometheus_client import REGISTRY
from temporalio.client import Client, WorkflowExecutionStatus
from typer.testing import CliRunner, Result

from agentfleet import taskqueues
from agentfleet.bots.health import (
    FleetHealthSummary,
    HealthCheck,
)
from agentfleet.bots.model import BotKind, BotSpec, BotStatus
from agentfleet.settings import Settings
from clients.bots import create_bot, show_bot
from clients.schedules import (
    HEALTH_SCHEDULE_ID,
    describe_schedule,
    ensure_health_schedule,
    list_schedules,
    pause_schedule,
)
from starters.cli.main import app
from starters.stack.devchain import free_port, rpc
from tests.replay import record_history
from tests.test_bot_lifecycle import fleet_env, listed, row, wait_for
from workflows.fleet_health import (
    FleetHealthWorkflow,
)

__all__ = ["fleet_env"]  # the fixture, imported to be used here


@pytest_asyncio.fixture(loop_scope="session")
async def health_env(fleet_env: Settings) -> Settings:
    return fleet_env


async def health_run(client: Client) -> tuple[FleetHealthSummary, str]:
    """One health run as the schedule would start it; its answer and its workflow id."""
    handle = await client.start_workflow(
        FleetHealthWorkflow.run,
        HealthCheck(),
        id=f"health-test-{uuid.uuid4().hex[:8]}",
        task_queue=taskqueues.WORKFLOWS,
    )
    summary: FleetHealthSummary = await handle.result()
    return summary, handle.id


def metric(name: str, **labels: str) -> float | None:
    return REGISTRY.get_sample_value(name, labels)


async def test_bot_without_gas_is_degraded_with_the_reason_and_recovers_when_refunded(
    dev_client: Client, health_env: Settings, anvil_url: str
) -> None:
    settings = health_env
    name = f"health-{uuid.uuid4().hex[:6]}"
    await create_bot(dev_client, BotSpec(name=name, kind=BotKind.FORECASTER))
    active = await wait_for(dev_client, name, lambda v: v.status is BotStatus.ACTIVE)
    assert active.address is not None
    gas = int(rpc(anvil_url, "eth_getBalance", active.address, "latest"), 16)

    healthy, _ = await health_run(dev_client)
    assert (healthy.checked, healthy.healthy, healthy.degraded) == (1, 1, []), healthy.reasons
    assert (await show_bot(dev_client, name)).status is BotStatus.ACTIVE

    rpc(anvil_url, "anvil_setBalance", active.address, "0x0")
    drained, drained_id = await health_run(dev_client)
    assert drained.degraded == [name] and drained.healthy == 0
    assert drained.reasons[name].startswith("gas: 0 native left")
    view = await show_bot(dev_client, name)
    assert view.status is BotStatus.DEGRADED and view.reason == drained.reasons[name]
    record = await until(lambda: row(settings, name), is_("degraded"))
    assert record.reason == view.reason
    assert await listed(dev_client, f'BotName = "{name}" AND BotStatus = "degraded"')
    assert metric("fleet_bot_health_degraded_total", bot=name) == 1
    assert metric("fleet_bots_degraded") == 1
    backend = "postgresql" if settings.effective_database_url.startswith("postgresql") else "sqlite"
    await record_history(dev_client.get_workflow_handle(drained_id), f"fleet_health_{backend}")

    again, _ = await health_run(dev_client)
    assert again.still_degraded == [name] and again.degraded == [] and again.recovered == []
    assert metric("fleet_bot_health_degraded_total", bot=name) == 1, "no second alert"

    rpc(anvil_url, "anvil_setBalance", active.address, hex(gas))
    recovered, _ = await health_run(dev_client)
    assert recovered.recovered == [name] and recovered.reasons == {}
    view = await show_bot(dev_client, name)
    assert view.status is BotStatus.ACTIVE
    assert (await until(lambda: row(settings, name), is_("active"))).reason is None
    assert await listed(dev_client, f'BotName = "{name}" AND BotStatus = "active"')
    assert metric("fleet_bots_degraded") == 0


async def test_health_schedule_is_created_once_and_steered_from_the_cli(
    dev_client: Client, health_env: Settings, tmp_path: Any
) -> None:
    env = {
        "FLEET_HOME": str(tmp_path / "home"),
        "FLEET_TEMPORAL_ADDRESS": dev_client.service_client.config.target_host,
        "TEMPORAL_ADDRESS": None,
        "COLUMNS": "200",
    }

    async def fleet(*args: str, **overrides: str) -> Result:
        return await asyncio.to_thread(
            CliRunner().invoke, app, ["schedule", *args], env={**env, **overrides}
        )

    try:
        first = await ensure_health_schedule(dev_client, every=timedelta(hours=1))
        await pause_schedule(dev_client, HEALTH_SCHEDULE_ID, "kept while ensured again")
        second = await ensure_health_schedule(dev_client, every=timedelta(hours=1))
        assert (first.id, first.state, first.every) == (HEALTH_SCHEDULE_ID, "active", "1h")
        assert (second.state, second.note) == ("paused", "kept while ensured again")
        ids = [s.id for s in await until(lambda: list_schedules(dev_client), lambda v: v)]
        assert ids.count(HEALTH_SCHEDULE_ID) == 1

        resumed = await fleet("resume", HEALTH_SCHEDULE_ID, "--json")
        assert resumed.exit_code == 0, resumed.output
        assert json.loads(resumed.stdout)["state"] == "active"
        paused = await fleet("pause", HEALTH_SCHEDULE_ID, "--note", "maintenance", "--json")
        assert paused.exit_code == 0, paused.output
        assert (json.loads(paused.stdout)["state"], json.loads(paused.stdout)["note"]) == (
            "paused",
            "maintenance",
        )
        triggered = await fleet("trigger", HEALTH_SCHEDULE_ID, "--json")
        assert triggered.exit_code == 0, triggered.output
        done = await until(
            lambda: describe_schedule(dev_client, HEALTH_SCHEDULE_ID),
            lambda v: v.last_result == "completed",
        )
        assert done.runs == 1 and (done.last_workflow_id or "").startswith("schedule-fleet-health")
        ensured = await fleet("ensure", "--every", "2h", "--json")
        assert ensured.exit_code == 0, ensured.output
        assert json.loads(ensured.stdout)["every"] == "2h"
        shown = await fleet("list")
        assert shown.exit_code == 0 and HEALTH_SCHEDULE_ID in shown.stdout, shown.output
        assert "paused" in shown.stdout and "completed" in shown.stdout

        unknown = await fleet("pause", "nosuch")
        assert unknown.exit_code == 1
        assert unknown.stderr.strip().splitlines() == [
            "error: no schedule named nosuch; `fleet schedule list` shows them"
        ]
        down = await fleet("list", FLEET_TEMPORAL_ADDRESS=f"127.0.0.1:{free_port()}")
        lines = down.stderr.strip().splitlines()
        assert down.exit_code == 1 and len(lines) == 1, down.stderr
        assert lines[0].startswith("error: cannot reach Temporal")
    finally:
        await cleanup_schedule(dev_client)


async def until(read: Callable[[], Any], ok: Callable[[Any], Any], seconds: float = 20) -> Any:
    value = await read()
    for _ in range(int(seconds * 10)):
        if ok(value):
            return value
        await asyncio.sleep(0.1)
        value = await read()
    raise AssertionError(f"still {value!r}")


def is_(status: str) -> Callable[[Any], bool]:
    return lambda record: bool(record.status == status)


async def cleanup_schedule(client: Client) -> None:
    """Delete the session server's health schedule and stop what it started (nothing leaks into
    later tests' workers)."""
    handle = client.get_schedule_handle(HEALTH_SCHEDULE_ID)
    try:
        running = (await handle.describe()).info.running_actions
        await handle.delete()
    except Exception:  # noqa: BLE001 - never created
        return
    for action in running:
        workflow = client.get_workflow_handle(getattr(action, "workflow_id", ""))
        if (await workflow.describe()).status is WorkflowExecutionStatus.RUNNING:
            await workflow.terminate("test over")
