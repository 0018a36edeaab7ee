"""SIGKILL the worker while a bot is provisioned and while it registers: after a restart there
is one wallet, one key, one registration, and the bot is active."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import pytest
import pytest_asyncio
from sqlmodel import select
from temporalio.client import Client
from web3 import Web3

from agentfleet import db
from agentfleet.bots.model import BotKind, BotSpec, BotStatus
from agentfleet.chain import artifacts
from agentfleet.chain.deployment.manifest import load_deployment
from agentfleet.models import WalletKey
from agentfleet.settings import Settings
from clients.bots import create_bot, show_bot
from tests.fixtures.worker import WorkerProcess
from tests.test_bot_lifecycle import fleet_settings, prepare_fleet
from workers.main import running_workers


@pytest_asyncio.fixture(loop_scope="session")
async def chaos_fleet(
    dev_client: Client,
    chaos_worker: tuple[WorkerProcess, Path],
    migrated_database_url: str,
    anvil_url: str,
    tmp_path: Path,
) -> tuple[Settings, WorkerProcess, Path]:
    """A deployed, funded chain (through an in-process worker, stopped before the test's
    worker process starts)."""
    settings = fleet_settings(migrated_database_url, anvil_url, tmp_path)
    async with running_workers(dev_client, settings):
        await prepare_fleet(dev_client, settings, anvil_url)
    return settings, *chaos_worker


@pytest.mark.parametrize("point", ["after_wallet", "after_broadcast@register-"])
async def test_worker_killed_during_provisioning_or_registration_leaves_one_of_each(
    dev_client: Client,
    chaos_fleet: tuple[Settings, WorkerProcess, Path],
    anvil_url: str,
    point: str,
) -> None:
    settings, worker, chaos_dir = chaos_fleet
    name = f"chaos-{uuid.uuid4().hex[:6]}"
    (chaos_dir / point).touch()
    worker.start()
    await create_bot(dev_client, BotSpec(name=name, kind=BotKind.FORECASTER))
    assert await worker.wait_killed() == -9
    worker.start()
    view = await show_bot(dev_client, name)
    for _ in range(900):
        if view.status in (BotStatus.ACTIVE, BotStatus.FAILED):
            break
        await asyncio.sleep(0.1)
        view = await show_bot(dev_client, name)
    assert view.status is BotStatus.ACTIVE, view.reason
    with db.session_scope(settings.effective_database_url) as session:
        keys = session.exec(select(WalletKey).where(WalletKey.label == f"bot:{name}")).all()
        all_bot_keys = session.exec(
            select(WalletKey).where(WalletKey.label.startswith("bot:"))
        ).all()  # type: ignore[attr-defined]
    assert [k.address for k in keys] == [view.address]
    assert len(all_bot_keys) == 1, "no orphan key"
    deployment = load_deployment(settings)
    assert deployment is not None
    w3 = Web3(Web3.HTTPProvider(anvil_url))
    registry = w3.eth.contract(
        address=deployment.address("IdentityRegistry"), abi=artifacts.load("IdentityRegistry").abi
    )
    assert registry.functions.balanceOf(view.address).call() == 1, "registered exactly once"
    assert registry.functions.ownerOf(view.agent_id).call() == view.address
