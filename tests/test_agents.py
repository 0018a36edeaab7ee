"""Agent bots on the real stack: the sandbox's deterministic model with tool calling, real
workers (the agents queue carries the OpenAI Agents SDK plugin), the gateway, anvil, forecasters
that sell, a publisher and its channel."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest_asyncio
from pydantic import SecretStr
from sqlmodel import select
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from agentfleet import db
from agentfleet.agents.model import AgentRunView, RunSource, RunStatus
from agentfleet.bots.model import BotKind, BotSpec, BotStatus
from agentfleet.content.model import ContentState
from agentfleet.models import UsageRecord
from agentfleet.settings import Settings
from clients import agents
from clients.bots import create_bot
from clients.content import show as show_content
from sandbox.app import Sandbox
from starters.http.app import create_app
from starters.stack.devchain import free_port, funded_account, prepare_fleet
from tests.test_bot_lifecycle import active_in_table, wait_for
from tests.test_content_pipeline import add_channels
from tests.test_payments import served
from workers.main import running_workers


@dataclass
class AgentFleet:
    settings: Settings
    client: Client
    sandbox: Sandbox
    sellers: list[str]
    publisher: str
    tag: str

    async def agent(self, name: str, **params: object) -> str:
        bot = f"{name}-{self.tag}"
        await create_bot(
            self.client,
            BotSpec(name=bot, kind=BotKind.AGENT, params={"publisher": self.publisher, **params}),
        )
        await wait_for(self.client, bot, lambda v: v.status is BotStatus.ACTIVE)
        await active_in_table(self.settings, bot)
        return bot

    async def ask(self, bot: str, task: str, wait_s: float = 120) -> AgentRunView:
        run_id = await agents.ask(self.client, self.settings, bot, task, source=RunSource.CLI)
        return await agents.wait(self.client, run_id, wait_s)


@pytest_asyncio.fixture(loop_scope="session")
async def agent_fleet(
    dev_env: WorkflowEnvironment,
    dev_client: Client,
    migrated_database_url: str,
    anvil_url: str,
    tmp_path: Path,
) -> AsyncIterator[AgentFleet]:
    async with Sandbox(home=tmp_path) as sandbox:
        settings = Settings(
            home=tmp_path,
            database_url=migrated_database_url,
            rpc_url=anvil_url,
            deployer_key=SecretStr(funded_account(anvil_url).key.hex()),
            temporal_address=dev_env.client.service_client.config.target_host,
            http_port=free_port(),
            **sandbox.settings_overrides(),
            openai_base_url=sandbox.openai_base_url,
        )
        add_channels(migrated_database_url, sandbox)
        tag = uuid.uuid4().hex[:6]
        sellers = [f"fc-a-{tag}", f"fc-b-{tag}"]
        publisher = f"pub-{tag}"
        async with running_workers(dev_client, settings):
            await prepare_fleet(dev_client, settings, anvil_url)
            async with served(create_app(settings), settings.http_port):
                for name in sellers:
                    await create_bot(dev_client, BotSpec(name=name, kind=BotKind.FORECASTER))
                await create_bot(
                    dev_client,
                    BotSpec(name=publisher, kind=BotKind.PUBLISHER, params={"channel": "hooks"}),
                )
                for name in [*sellers, publisher]:
                    await wait_for(dev_client, name, lambda v: v.status is BotStatus.ACTIVE)
                    await active_in_table(settings, name)
                yield AgentFleet(settings, dev_client, sandbox, sellers, publisher, tag)


async def test_an_agent_buys_two_forecasts_and_submits_a_post_that_waits(
    agent_fleet: AgentFleet,
) -> None:
    bot = await agent_fleet.agent("analyst")
    view = await agent_fleet.ask(bot, "What is the BTC outlook? Write a post about it.")

    assert view.status is RunStatus.COMPLETED, view.reason
    assert len(view.purchases) == 2
    assert view.purchase_units == 2 * 10_000
    assert view.model_calls >= 3 and view.token_units > 0
    assert view.answer and "automated" in view.answer
    assert len(view.posts) == 1
    for _ in range(100):
        content = await show_content(
            agent_fleet.client, agent_fleet.settings.effective_database_url, view.posts[0]
        )
        if content.state is ContentState.AWAITING_APPROVAL:
            break
        await asyncio.sleep(0.2)
    assert content.state is ContentState.AWAITING_APPROVAL
    with db.session_scope(agent_fleet.settings.effective_database_url) as session:
        rows = session.exec(select(UsageRecord).where(UsageRecord.run_id == view.run_id)).all()
    assert len(rows) == view.model_calls
    assert sum(r.cost_units for r in rows) == view.token_units
