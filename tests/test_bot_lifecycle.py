"""A bot's whole life on the real dev server and anvil: the database, the chain and the search
attributes agree at every step."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
import pytest_asyncio
from eth_account import Account
from pydantic import SecretStr
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment
from web3 import Web3

from agentfleet import db, keystore
from agentfleet.bots.model import BotKind, BotSpec, BotStatus, BotView
from agentfleet.chain import artifacts
from agentfleet.chain.deployment.manifest import load_deployment
from agentfleet.errors import FleetError
from agentfleet.models import BotRecord
from agentfleet.settings import Settings
from clients.bots import (
    configure_bot,
    create_bot,
    pause_bot,
    resume_bot,
    retire_bot,
    show_bot,
)
from starters.stack.devchain import funded_account, prepare_fleet
from tests.replay import record_history
from workers.main import running_workers


def fleet_settings(database_url: str, anvil_url: str, home: Path) -> Settings:
    return Settings(
        home=home,
        database_url=database_url,
        rpc_url=anvil_url,
        deployer_key=SecretStr(funded_account(anvil_url).key.hex()),
    )


@pytest_asyncio.fixture(loop_scope="session")
async def fleet_env(
    dev_client: Client, migrated_database_url: str, anvil_url: str, tmp_path: Path
) -> AsyncIterator[Settings]:
    """A deployed, funded chain and workers on this test's database."""
    settings = fleet_settings(migrated_database_url, anvil_url, tmp_path)
    async with running_workers(dev_client, settings):
        await prepare_fleet(dev_client, settings, anvil_url)
        yield settings


async def wait_for(
    client: Client, name: str, check: Callable[[BotView], bool], seconds: float = 60
) -> BotView:
    view = await show_bot(client, name)
    for _ in range(int(seconds * 10)):
        if check(view):
            return view
        if view.status is BotStatus.FAILED:
            raise AssertionError(f"bot {name} failed: {view.reason}")
        await asyncio.sleep(0.1)
        view = await show_bot(client, name)
    raise AssertionError(f"bot {name} stayed {view.status}: {view.reason}")


async def listed(client: Client, query: str) -> list[str]:
    for _ in range(100):
        ids = [w.id async for w in client.list_workflows(query)]
        if ids:
            return ids
        await asyncio.sleep(0.1)
    return []


async def row(settings: Settings, name: str) -> BotRecord:
    """The bot's row once it has caught up with the entity (it follows each change closely).
    It sleeps without blocking: the workers that write the row run on this event loop."""
    found: BotRecord | None = None
    for _ in range(600):  # 30 s at most; it returns as soon as the row has caught up
        with db.session_scope(settings.effective_database_url) as session:
            found = session.get(BotRecord, name)
        view_status = _last_status.get(name)
        if found is not None and (view_status is None or found.status == view_status):
            return found
        await asyncio.sleep(0.05)
    assert found is not None
    return found


_last_status: dict[str, str] = {}


async def active_in_table(settings: Settings, name: str, seconds: float = 30) -> BotRecord:
    """The bot's row once it says active with an agent id: activities that read the table (a
    purchase's discovery) see what the entity said a moment later."""
    found: BotRecord | None = None
    for _ in range(int(seconds * 20)):
        with db.session_scope(settings.effective_database_url) as session:
            found = session.get(BotRecord, name)
        if found is not None and found.status == BotStatus.ACTIVE and found.agent_id is not None:
            return found
        await asyncio.sleep(0.05)
    raise AssertionError(f"bot {name}'s row stayed {found.status if found else 'absent'}")


async def test_bot_lives_from_creation_to_retirement(
    dev_client: Client, fleet_env: Settings, anvil_url: str
) -> None:
    settings = fleet_env
    name = f"forecaster-{uuid.uuid4().hex[:6]}"
    spec = BotSpec(name=name, kind=BotKind.FORECASTER, owner="ops", params={"alpha": 0.2})
    created = await create_bot(dev_client, spec)
    assert created.name == name
    again = await create_bot(dev_client, spec)
    assert again.name == name, "creating the same bot twice is idempotent"

    active = await wait_for(dev_client, name, lambda v: v.status is BotStatus.ACTIVE)
    _last_status[name] = "active"
    assert active.address and active.agent_id is not None
    assert active.disclosure == "Automated agent operated by ops."

    w3 = Web3(Web3.HTTPProvider(anvil_url))
    deployment = load_deployment(settings)
    assert deployment is not None
    registry = w3.eth.contract(
        address=deployment.address("IdentityRegistry"), abi=artifacts.load("IdentityRegistry").abi
    )
    assert registry.functions.ownerOf(active.agent_id).call() == active.address
    assert registry.functions.getAgentWallet(active.agent_id).call() == active.address
    assert (
        registry.functions.tokenURI(active.agent_id)
        .call()
        .endswith(f"/bots/{name}/registration.json")
    )
    record = await row(settings, name)
    assert (record.status, record.address, record.agent_id) == (
        "active",
        active.address,
        active.agent_id,
    )
    assert await listed(dev_client, f'BotName = "{name}" AND BotStatus = "active"') == [
        f"bot-{name}"
    ]

    paused = await pause_bot(dev_client, name)
    _last_status[name] = "paused"
    assert paused.status is BotStatus.PAUSED and (await row(settings, name)).status == "paused"
    assert await listed(dev_client, f'BotName = "{name}" AND BotStatus = "paused"')
    with pytest.raises(FleetError, match="alpha"):
        await configure_bot(dev_client, name, {"alpha": "5"})
    assert (await show_bot(dev_client, name)).params["alpha"] == 0.2
    with pytest.raises(FleetError, match="paused"):
        await pause_bot(dev_client, name)
    configured = await configure_bot(dev_client, name, {"alpha": "0.5"})
    assert configured.params["alpha"] == 0.5 and (await row(settings, name)).params["alpha"] == 0.5

    resumed = await resume_bot(dev_client, name)
    _last_status[name] = "active"
    assert resumed.status is BotStatus.ACTIVE and (await row(settings, name)).status == "active"

    retired = await retire_bot(dev_client, name)
    _last_status[name] = "retired"
    assert retired.status is BotStatus.RETIRED
    record = await row(settings, name)
    assert record.status == "retired" and record.retired_at is not None
    assert await listed(dev_client, f'BotName = "{name}" AND BotStatus = "retired"')
    with pytest.raises(FleetError, match="retired"):
        await create_bot(dev_client, spec)

    backend = "postgresql" if settings.effective_database_url.startswith("postgresql") else "sqlite"
    await record_history(dev_client.get_workflow_handle(f"bot-{name}"), f"bot_lifecycle_{backend}")
    key = keystore.load_account(settings, active.address).key.hex().removeprefix("0x")
    history = await dev_client.get_workflow_handle(f"bot-{name}").fetch_history()
    assert key not in history.to_json().lower()


async def test_unknown_bot_and_bad_spec_are_one_line_errors(
    dev_client: Client, fleet_env: Settings
) -> None:
    with pytest.raises(FleetError, match="no running bot named nosuch"):
        await pause_bot(dev_client, "nosuch")
    with pytest.raises(FleetError, match="slug"):
        await create_bot(dev_client, BotSpec(name="Bad Name", kind=BotKind.FORECASTER))
    with pytest.raises(FleetError, match="alpha"):
        await create_bot(
            dev_client, BotSpec(name="x-1", kind=BotKind.FORECASTER, params={"alpha": 2})
        )


async def test_create_with_an_imported_keystore_uses_that_wallet(
    dev_env: WorkflowEnvironment, dev_client: Client, fleet_env: Settings, tmp_path: Path
) -> None:
    import json
    import os
    import sys

    owner_key = Account.create()
    keyfile = tmp_path / "bot-key.json"
    keyfile.write_text(json.dumps(Account.encrypt(owner_key.key, "pw", iterations=2)))
    name = f"imported-{uuid.uuid4().hex[:6]}"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FLEET_", "TEMPORAL_"))}
    env.update(
        FLEET_HOME=str(fleet_env.home),
        FLEET_DATABASE_URL=fleet_env.effective_database_url,
        FLEET_RPC_URL=fleet_env.effective_rpc_url,
        FLEET_TEMPORAL_ADDRESS=dev_env.client.service_client.config.target_host,
        FLEET_IMPORT_KEY_PASSWORD="pw",
    )
    argv = ["-m", "starters.cli.main", "bot", "create", name, "--kind", "forecaster"]
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        *argv,
        "--import-key",
        str(keyfile),
        "--no-wait",
        "--json",
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, err.decode()
    active = await wait_for(dev_client, name, lambda v: v.status is BotStatus.ACTIVE)
    assert active.address == owner_key.address
    wrong = await asyncio.create_subprocess_exec(
        sys.executable,
        *argv,
        "--import-key",
        str(keyfile),
        env={**env, "FLEET_IMPORT_KEY_PASSWORD": "nope"},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    _, err = await asyncio.wait_for(wrong.communicate(), 60)
    assert wrong.returncode == 1
    assert err.decode().strip().splitlines() == [
        f"error: bot {name} already has a wallet ({owner_key.address}); nothing imported"
    ]
