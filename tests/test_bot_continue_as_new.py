"""The bot entity continues as new when the server suggests it, and a burst of updates across
that boundary loses none."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from agentfleet import binaries, search_attributes
from agentfleet.bots.model import BotKind, BotSpec, BotStatus
from agentfleet.settings import Settings
from clients.bots import configure_bot, create_bot, show_bot
from tests.replay import record_continued
from workers.main import running_workers


async def test_burst_of_updates_across_continue_as_new_loses_none(
    migrated_database_url: str, tmp_path: Path
) -> None:
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=str(binaries.temporal_cli()),
        data_converter=pydantic_data_converter,
        search_attributes=list(search_attributes.ALL),
        dev_server_extra_args=[
            "--dynamic-config-value",
            "limit.historyCount.suggestContinueAsNew=60",
        ],
    )
    try:
        client = env.client
        settings = Settings(home=tmp_path, database_url=migrated_database_url)
        async with running_workers(client, settings):
            name = f"can-{uuid.uuid4().hex[:6]}"
            await create_bot(client, BotSpec(name=name, kind=BotKind.FORECASTER))
            view = await show_bot(client, name)
            for _ in range(200):  # no deployment here: provisioning fails, configure still works
                if view.status is BotStatus.FAILED:
                    break
                await asyncio.sleep(0.05)
                view = await show_bot(client, name)
            first_run = (await client.get_workflow_handle(f"bot-{name}").describe()).run_id
            alphas = [round(0.01 * (i + 1), 2) for i in range(60)]
            results = await asyncio.gather(
                *(configure_bot(client, name, {"alpha": a}) for a in alphas)
            )
            assert len(results) == 60
            final = await show_bot(client, name)
            assert final.commands_handled == 60, "an update was lost"
            assert final.params["alpha"] in alphas
            handle = client.get_workflow_handle(f"bot-{name}")
            assert (await handle.describe()).run_id != first_run, "it never continued as new"
            history = await handle.query("history")
            assert sum(1 for e in history["events"] if e["event"] == "configured") >= 1
            backend = "postgresql" if migrated_database_url.startswith("postgresql") else "sqlite"
            await record_continued(
                client, f"bot-{name}", first_run, "bot_lifecycle_continued", backend
            )
    finally:
        await env.shutdown()
