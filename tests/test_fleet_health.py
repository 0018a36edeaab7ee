"""Fleet health on the real dev server and anvil: a bot without gas is degraded with the reason
(its status, the ``bots`` table and the BotStatus search attribute agree), refunded it recovers;
a bot whose ERC-8004 agent on chain no longer matches its record is degraded with what differs;
a remote bot whose ``status`` skill fails is degraded and recovers when it answers again; a bot
whose entity failed too many of its steps is degraded for its error rate; the health schedule is
created once and steered from the CLI."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
import pytest_asyncio
from eth_account import Account
from prometheus_client import REGISTRY
from temporalio.client import Client, WorkflowExecutionStatus
from typer.testing import CliRunner, Result
from web3 import Web3

from agentfleet import taskqueues
from agentfleet.bots.health import (
    FleetHealthSummary,
    HealthCheck,
)
from agentfleet.bots.model import BotKind, BotSpec, BotStatus
from agentfleet.chain import artifacts
from agentfleet.chain.deployment.manifest import load_deployment
from agentfleet.settings import Settings
from clients.bots import create_bot, retry_bot, show_bot
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
from tests.test_skills import REPO, _wait_for_card
from workflows.fleet_health import (
    FleetHealthWorkflow,
)

__all__ = ["fleet_env"]  # the fixture, imported to be used here


@pytest_asyncio.fixture(loop_scope="session")
async def health_env(fleet_env: Settings) -> Settings:
    return fleet_env


async def health_run(
    client: Client, check: HealthCheck | None = None
) -> tuple[FleetHealthSummary, str]:
    """One health run as the schedule would start it (or with ``check``); its answer and its
    workflow id."""
    handle = await client.start_workflow(
        FleetHealthWorkflow.run,
        check or HealthCheck(),
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


def send_as(anvil_url: str, sender: str, to: str, data: str) -> None:
    """A transaction from ``sender`` without its key (anvil impersonation), mined, status 1."""
    rpc(anvil_url, "anvil_impersonateAccount", sender)
    try:
        tx_hash = rpc(anvil_url, "eth_sendTransaction", {"from": sender, "to": to, "data": data})
    finally:
        rpc(anvil_url, "anvil_stopImpersonatingAccount", sender)
    receipt = None
    for _ in range(100):  # anvil mines at once, but answers the send before the receipt exists
        receipt = rpc(anvil_url, "eth_getTransactionReceipt", tx_hash)
        if receipt is not None:
            break
        time.sleep(0.05)
    assert receipt is not None and int(receipt["status"], 16) == 1, receipt


@pytest.mark.extended
async def test_bot_whose_agent_on_chain_differs_from_its_record_is_degraded_with_what_differs(
    dev_client: Client, health_env: Settings, anvil_url: str
) -> None:
    """The bot's ERC-8004 agent moved to another owner (which also clears its agent wallet), then
    back (the wallet stays cleared): each run names what differs from the bot's record."""
    settings = health_env
    name = f"health-{uuid.uuid4().hex[:6]}"
    await create_bot(dev_client, BotSpec(name=name, kind=BotKind.FORECASTER))
    active = await wait_for(
        dev_client, name, lambda v: v.status is BotStatus.ACTIVE and v.agent_id is not None
    )
    wallet, agent = Web3.to_checksum_address(str(active.address)), int(str(active.agent_id))
    deployment = load_deployment(settings)
    assert deployment is not None
    registry_address = deployment.address("IdentityRegistry")
    registry = Web3().eth.contract(abi=artifacts.load("IdentityRegistry").abi)
    stranger = Account.create().address
    rpc(anvil_url, "anvil_setBalance", stranger, hex(10**18))

    healthy, _ = await health_run(dev_client)
    assert (healthy.checked, healthy.healthy, healthy.degraded) == (1, 1, []), healthy.reasons

    moved = registry.encode_abi("transferFrom", args=[wallet, stranger, agent])
    send_as(anvil_url, wallet, registry_address, moved)
    transferred, _ = await health_run(dev_client)
    assert transferred.degraded == [name] and transferred.healthy == 0
    assert transferred.reasons[name] == (
        f"registration: agent {agent} is owned by {stranger}, not {wallet}; "
        f"registration: agent {agent}'s wallet is 0x{'0' * 40}, not {wallet}"
    )
    view = await show_bot(dev_client, name)
    assert view.status is BotStatus.DEGRADED and view.reason == transferred.reasons[name]
    assert (await until(lambda: row(settings, name), is_("degraded"))).reason == view.reason
    assert await listed(dev_client, f'BotName = "{name}" AND BotStatus = "degraded"')

    back = registry.encode_abi("transferFrom", args=[stranger, wallet, agent])
    send_as(anvil_url, stranger, registry_address, back)
    owned, _ = await health_run(dev_client)
    assert owned.still_degraded == [name] and owned.recovered == []
    assert owned.reasons[name] == (
        f"registration: agent {agent}'s wallet is 0x{'0' * 40}, not {wallet}"
    )


@pytest.mark.extended
async def test_bot_whose_entity_failed_too_many_of_its_commands_is_degraded_for_its_error_rate(
    dev_client: Client, health_env: Settings
) -> None:
    """The entity's error rate is its failed steps over the commands it handled: a bot whose
    provisioning failed (no deployment manifest) and then succeeded on `retry` has failed 1 of 1.
    It counts from ``min_commands`` on (10 by default, so not yet)."""
    settings = health_env
    name = f"health-{uuid.uuid4().hex[:6]}"
    manifest = settings.home / "deployment.json"
    hidden = manifest.rename(manifest.with_name("deployment.hidden.json"))
    try:
        await create_bot(dev_client, BotSpec(name=name, kind=BotKind.FORECASTER))
        failed = await until(
            lambda: show_bot(dev_client, name), lambda v: v.status is BotStatus.FAILED
        )
        assert "no contract deployment" in str(failed.reason), failed.reason
    finally:
        hidden.rename(manifest)
    await retry_bot(dev_client, name)
    active = await wait_for(dev_client, name, lambda v: v.status is BotStatus.ACTIVE)
    assert (active.errors, active.commands_handled) == (1, 1)

    early, _ = await health_run(dev_client)
    assert (early.checked, early.healthy, early.degraded) == (1, 1, []), early.reasons

    counted, _ = await health_run(dev_client, HealthCheck(min_commands=1))
    assert counted.degraded == [name] and counted.healthy == 0
    assert counted.reasons[name] == "errors: 1 of 1 commands failed (100% > 50%)"
    view = await show_bot(dev_client, name)
    assert view.status is BotStatus.DEGRADED and view.reason == counted.reasons[name]


def start_remote_bot(name: str, port: int) -> subprocess.Popen[bytes]:
    """A real remote bot (``python -m starters.remote_bot``) serving its card on ``port``."""
    process = subprocess.Popen(
        [sys.executable, "-m", "starters.remote_bot", "--port", str(port), "--name", name],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    _wait_for_card(process, f"http://127.0.0.1:{port}")
    return process


@pytest.mark.extended
async def test_remote_bot_whose_status_skill_fails_is_degraded_and_recovers_when_it_answers(
    dev_client: Client, health_env: Settings
) -> None:
    settings = health_env
    name = f"health-{uuid.uuid4().hex[:6]}"
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    remote = await asyncio.to_thread(start_remote_bot, "far-away", port)
    try:
        await create_bot(
            dev_client,
            BotSpec(name=name, kind=BotKind.REMOTE, params={"url": url, "timeout_s": 5}),
        )
        await wait_for(dev_client, name, lambda v: v.status is BotStatus.ACTIVE)
        answering, _ = await health_run(dev_client)
        assert (answering.checked, answering.healthy) == (1, 1), answering.reasons

        remote.kill()
        remote.wait(timeout=10)
        gone, _ = await health_run(dev_client)
        assert gone.degraded == [name] and gone.healthy == 0
        reason = gone.reasons[name]
        assert reason.startswith(f"skill status: cannot reach remote bot {name} at {url}"), reason
        assert ";" not in reason, "the skill is the only thing wrong"
        view = await show_bot(dev_client, name)
        assert view.status is BotStatus.DEGRADED and view.reason == reason
        assert (await until(lambda: row(settings, name), is_("degraded"))).reason == reason

        remote = await asyncio.to_thread(start_remote_bot, "far-away", port)
        back, _ = await health_run(dev_client)
        assert back.recovered == [name] and back.reasons == {}
        assert (await show_bot(dev_client, name)).status is BotStatus.ACTIVE
    finally:
        remote.kill()
        remote.wait(timeout=10)


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
