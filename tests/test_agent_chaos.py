"""SIGKILL the worker in the middle of agent runs: after a model call (before its usage is
recorded), after the run's purchases settled (before the next model call's budget hold), and
while a tool call waits for a human. After a restart the run completes with no model call made
twice, no purchase paid twice and no token counted twice."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import pytest_asyncio
from pydantic import SecretStr
from sqlmodel import select
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from agentfleet import db
from agentfleet.agents.model import (
    FINAL_RUN_STATES,
    AgentRunView,
    ApprovalDecision,
    RunStatus,
    key_from,
    run_workflow_id,
)
from agentfleet.bots.model import BotKind, BotSpec, BotStatus
from agentfleet.models import PaymentRecord, UsageRecord
from agentfleet.settings import Settings
from clients import agents
from clients.bots import create_bot
from sandbox.app import Sandbox
from starters.http.app import create_app
from starters.stack.devchain import free_port, funded_account, prepare_fleet
from tests.fixtures.temporal import terminate_running
from tests.fixtures.worker import WorkerProcess, worker_env
from tests.test_bot_lifecycle import active_in_table, wait_for
from tests.test_content_pipeline import add_channels
from tests.test_payments import served
from workers.main import running_workers

PRICE = 10_000
TASK = "What is the BTC outlook? Write a post about it. ({tag})"


@dataclass
class ChaosFleet:
    settings: Settings
    client: Client
    sandbox: Sandbox
    worker: WorkerProcess
    chaos_dir: Path
    tag: str

    def model_requests(self, tag: str) -> int:
        """Chat completions the sandbox answered for the run whose task carries ``tag``."""
        return sum(
            1
            for r in self.sandbox.store.openai_requests("/chat/completions")
            if tag in str(r.body.get("messages"))
        )

    async def ended(self, run_id: str, wait_s: float = 180) -> AgentRunView:
        for _ in range(int(wait_s / 0.25)):
            view = await agents.show(self.client, run_id)
            if view.status in FINAL_RUN_STATES:
                return view
            await asyncio.sleep(0.25)
        raise AssertionError(f"{run_id} did not end; worker log:\n{self.worker.log.read_text()}")


pytestmark = pytest.mark.shared_fleet


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def shared_fleet(
    dev_env: WorkflowEnvironment,
    module_migrated_database_url: str,
    anvil_url: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[tuple[Settings, Sandbox, str]]:
    """Forecasters, a publisher and agents made by in-process workers (stopped again), and the
    gateway served here, once per backend; each test runs a worker process of its own."""
    home = tmp_path_factory.mktemp("agent-chaos")
    async with Sandbox(home=home) as sandbox:
        settings = Settings(
            home=home,
            database_url=module_migrated_database_url,
            rpc_url=anvil_url,
            deployer_key=SecretStr(funded_account(anvil_url).key.hex()),
            temporal_address=dev_env.client.service_client.config.target_host,
            http_port=free_port(),
            **sandbox.settings_overrides(),
            openai_base_url=sandbox.openai_base_url,
        )
        add_channels(module_migrated_database_url, sandbox)
        tag = uuid.uuid4().hex[:6]
        bots = [
            BotSpec(name=f"fc-a-{tag}", kind=BotKind.FORECASTER),
            BotSpec(name=f"fc-b-{tag}", kind=BotKind.FORECASTER),
            BotSpec(name=f"pub-{tag}", kind=BotKind.PUBLISHER, params={"channel": "hooks"}),
            BotSpec(name=f"analyst-{tag}", kind=BotKind.AGENT, params={"publisher": f"pub-{tag}"}),
            BotSpec(
                name=f"careful-{tag}",
                kind=BotKind.AGENT,
                params={"publisher": f"pub-{tag}", "approvals": {"purchase_over": "0"}},
            ),
        ]
        async with running_workers(dev_env.client, settings):
            await prepare_fleet(dev_env.client, settings, anvil_url)
            for spec in bots:
                await create_bot(dev_env.client, spec)
            for spec in bots:
                await wait_for(dev_env.client, spec.name, lambda v: v.status is BotStatus.ACTIVE)
                await active_in_table(settings, spec.name)
        async with served(create_app(settings), settings.http_port):
            yield settings, sandbox, tag
            await terminate_running(dev_env.client, "the module's shared fleet ended")


@pytest_asyncio.fixture(loop_scope="session")
async def chaos_fleet(
    dev_env: WorkflowEnvironment,
    shared_fleet: tuple[Settings, Sandbox, str],
    anvil_url: str,
    tmp_path: Path,
) -> AsyncIterator[ChaosFleet]:
    """The shared fleet, and this test's worker process (not started yet) to arm and kill."""
    settings, sandbox, tag = shared_fleet
    chaos_dir = tmp_path / "chaos"
    chaos_dir.mkdir()
    env = worker_env(dev_env, settings.effective_database_url, anvil_url, settings.home, chaos_dir)
    env.update(
        FLEET_HTTP_PORT=str(settings.http_port),
        FLEET_OPENAI_BASE_URL=sandbox.openai_base_url,
        FLEET_SANDBOX_PORT=str(sandbox.port),
        FLEET_DEPLOYER_KEY=funded_account(anvil_url).key.hex(),
    )
    worker = WorkerProcess(env, tmp_path / "worker.log")
    try:
        yield ChaosFleet(settings, dev_env.client, sandbox, worker, chaos_dir, tag)
    finally:
        worker.stop()


def _paid_by(settings: Settings, buyer: str) -> list[PaymentRecord]:
    with db.session_scope(settings.effective_database_url) as session:
        return list(session.exec(select(PaymentRecord).where(PaymentRecord.buyer == buyer)).all())


def _usage(settings: Settings, run_id: str) -> list[UsageRecord]:
    with db.session_scope(settings.effective_database_url) as session:
        return list(session.exec(select(UsageRecord).where(UsageRecord.run_id == run_id)).all())


@pytest.mark.parametrize("point", ["before_usage", "before_hold"])
async def test_worker_killed_mid_run_repeats_no_model_call_and_no_purchase(
    chaos_fleet: ChaosFleet, point: str
) -> None:
    fleet = chaos_fleet
    bot, key = f"analyst-{fleet.tag}", f"{point}-{uuid.uuid4().hex[:6]}"
    run_id = run_workflow_id(bot, key_from(key))
    # before_usage: right after the first model call answered; before_hold: after both
    # purchases settled, before the third model call holds its budget.
    armed = f"{point}@{run_id}" if point == "before_usage" else f"{point}@{run_id}:call-3"
    (fleet.chaos_dir / armed).touch()
    fleet.worker.start()
    task = TASK.format(tag=key)
    assert await agents.ask(fleet.client, fleet.settings, bot, task, key=key) == run_id
    assert await fleet.worker.wait_killed() == -9, f"{armed} was not reached"
    fleet.worker.start()
    view = await fleet.ended(run_id)

    assert view.status is RunStatus.COMPLETED, view.reason
    assert not list(fleet.chaos_dir.iterdir()), "the armed point fired"
    assert fleet.model_requests(key) == view.model_calls, "a model call was made twice"
    usage = _usage(fleet.settings, run_id)
    assert len(usage) == view.model_calls
    assert sum(u.cost_units for u in usage) == view.token_units
    paid = [p for p in _paid_by(fleet.settings, bot) if p.status == "settled"]
    assert len(view.purchases) == 2 and view.purchase_units == 2 * PRICE
    mine = [p for p in paid if p.nonce and p.payment_id]
    assert len(mine) == len(paid) and len(paid) % 2 == 0
    assert len({p.tx_hash for p in paid}) == len(paid), "one settlement per payment"


async def test_worker_killed_while_a_purchase_waits_for_approval(chaos_fleet: ChaosFleet) -> None:
    fleet = chaos_fleet
    bot = f"careful-{fleet.tag}"
    seller = f"fc-a-{fleet.tag}"
    fleet.worker.start()
    task = f'call buy_skill {{"seller": "{seller}", "skill": "forecast"}}'
    run_id = await agents.ask(fleet.client, fleet.settings, bot, task)
    view = await agents.wait(fleet.client, run_id, 60)
    assert view.status is RunStatus.WAITING_APPROVAL and view.pending is not None
    assert fleet.worker.proc is not None
    fleet.worker.proc.kill()
    assert await fleet.worker.wait_killed() == -9
    fleet.worker.start()
    await agents.decide(
        fleet.client,
        run_id,
        ApprovalDecision(approval_id=view.pending.approval_id, approver="alice", approved=True),
    )
    done = await fleet.ended(run_id)

    assert done.status is RunStatus.COMPLETED, done.reason
    assert len(done.purchases) == 1 and done.purchase_units == PRICE
    settled = [p for p in _paid_by(fleet.settings, bot) if p.status == "settled"]
    assert len(settled) == 1
    assert len(_usage(fleet.settings, run_id)) == done.model_calls
