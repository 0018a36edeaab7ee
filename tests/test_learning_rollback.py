"""`fleet learn rollback` on the real stack (dev server, anvil, the workers, the CLI as a
process): the earlier version is the champion again and every bot serving the task, paused
ones too, serves it: its entity says so and so does its row."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import uuid

import pytest
from temporalio.client import Client

from agentfleet import db, taskqueues
from agentfleet.bots.model import BotKind, BotSpec, BotStatus
from agentfleet.learning import registry
from agentfleet.learning.rounds import RoundOrder, RoundReport, RoundStatus, round_workflow_id
from agentfleet.models import BotRecord
from agentfleet.settings import Settings
from clients.bots import create_bot, pause_bot, show_bot
from tests.test_bot_lifecycle import fleet_env, wait_for
from workflows.learning_round import LearningRoundWorkflow

pytestmark = pytest.mark.extended

__all__ = ["fleet_env"]  # the fixture, imported to be used here

TASK = "digits"


async def fleet(settings: Settings, temporal: str, *args: str) -> tuple[int, str, str]:
    """The `fleet` command as a user runs it, on this test's home, database and dev server."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FLEET_", "TEMPORAL_"))}
    env.update(
        FLEET_HOME=str(settings.home),
        FLEET_DATABASE_URL=settings.effective_database_url,
        FLEET_RPC_URL=settings.effective_rpc_url,
        FLEET_TEMPORAL_ADDRESS=temporal,
    )
    process = await asyncio.create_subprocess_exec(
        os.path.join(os.path.dirname(sys.executable), "fleet"),
        *args,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 240)
    return process.returncode or 0, out.decode(), err.decode()


def served(url: str, names: list[str]) -> dict[str, str | None]:
    """What each bot's row says it serves."""
    with db.session_scope(url) as session:
        rows = {name: session.get(BotRecord, name) for name in names}
        return {name: row.model_version if row else None for name, row in rows.items()}


async def test_rollback_makes_every_bot_serving_the_task_serve_the_earlier_version(
    dev_client: Client, fleet_env: Settings
) -> None:
    settings = fleet_env
    url = settings.effective_database_url
    suffix = uuid.uuid4().hex[:6]
    names = [f"learner-{i}-{suffix}" for i in range(3)]
    for name in names:
        await create_bot(dev_client, BotSpec(name=name, kind=BotKind.FORECASTER))
    for name in names:
        await wait_for(dev_client, name, lambda v: v.status is BotStatus.ACTIVE)

    handle = await dev_client.start_workflow(
        LearningRoundWorkflow.run,
        RoundOrder(task=TASK, round=1, participant_timeout_s=60),
        id=f"{round_workflow_id(TASK, 1)}-{suffix}",
        task_queue=taskqueues.WORKFLOWS,
    )
    report: RoundReport = await asyncio.wait_for(handle.result(), 240)
    assert report.status is RoundStatus.PROMOTED, report.reason
    assert report.participants == names and report.champion == f"{TASK}-v2"
    for name in names:
        assert (await show_bot(dev_client, name)).model_version == f"{TASK}-v2"
    await pause_bot(dev_client, names[0])

    temporal = dev_client.service_client.config.target_host
    code, out, err = await fleet(
        settings, temporal, "learn", "rollback", "--task", TASK, "--to", f"{TASK}-v1", "--json"
    )
    assert code == 0, err
    answer = json.loads(out)
    assert answer["champion"] == f"{TASK}-v1"
    assert sorted(answer["bots"]) == sorted(answer["told"]) == names

    versions = {v.version_id: v.status for v in registry.list_versions(url, TASK)}
    assert versions == {f"{TASK}-v1": "champion", f"{TASK}-v2": "retired"}
    views = [await show_bot(dev_client, name) for name in names]
    assert [(v.name, v.model_version) for v in views] == [(n, f"{TASK}-v1") for n in names]
    assert views[0].status is BotStatus.PAUSED
    assert served(url, names) == dict.fromkeys(names, f"{TASK}-v1")
