"""A learning round survives its worker being SIGKILLed mid-training and the Temporal server
restarting mid-round: it completes, records its candidate once, and every artifact reads back
with its hash. The worker is a real process (``python -m workers.main``)."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from agentfleet import binaries, db, search_attributes, taskqueues
from agentfleet.bots.model import BotKind, BotStatus
from agentfleet.learning import registry
from agentfleet.learning.rounds import RoundOrder, RoundReport, RoundStatus
from agentfleet.learning.store import ArtifactStore
from agentfleet.models import BotRecord
from starters.stack.components import DEV_SERVER_ARGS
from tests.fixtures.chain import free_port
from tests.fixtures.worker import WorkerProcess, worker_env

BOTS = ["ch-a", "ch-b", "ch-c", "ch-d"]


def add_bots(url: str) -> None:
    with db.session_scope(url) as session:
        for name in BOTS:
            session.add(
                BotRecord(
                    name=name,
                    kind=BotKind.FORECASTER.value,
                    owner="fleet",
                    status=BotStatus.ACTIVE.value,
                )
            )
        session.commit()


async def start_round(client: Client, task_round: int) -> str:
    workflow_id = f"learning-digits-{task_round}-{uuid.uuid4().hex[:6]}"
    await client.start_workflow(
        "LearningRoundWorkflow",
        RoundOrder(task="digits", round=task_round, participant_timeout_s=6),
        id=workflow_id,
        task_queue=taskqueues.WORKFLOWS,
    )
    return workflow_id


def assert_recorded_once(url: str, home: Path, workflow_id: str) -> None:
    versions = registry.list_versions(url, "digits")
    assert [v.round_id for v in versions].count(workflow_id) == 1, "a version recorded twice"
    store = ArtifactStore(home / "models")
    assert all(store.verify(v.artifact) for v in versions), "an artifact does not match its hash"


async def test_worker_killed_mid_training_the_round_completes_and_records_once(
    dev_client: Client,
    chaos_worker: tuple[WorkerProcess, Path],
    migrated_database_url: str,
    tmp_path: Path,
) -> None:
    worker, chaos_dir = chaos_worker
    add_bots(migrated_database_url)
    (chaos_dir / "mid_train@ch-c").touch()
    worker.start()
    workflow_id = await start_round(dev_client, 1)
    assert await worker.wait_killed() == -9
    worker.start()
    handle = dev_client.get_workflow_handle(workflow_id, result_type=RoundReport)
    report: RoundReport = await asyncio.wait_for(handle.result(), 120)
    assert report.status is RoundStatus.PROMOTED, report.reason
    assert report.participants == BOTS
    assert_recorded_once(migrated_database_url, tmp_path, workflow_id)


async def test_temporal_restarted_mid_round_the_round_completes_and_records_once(
    migrated_database_url: str, anvil_url: str, tmp_path: Path
) -> None:
    port = free_port()
    server_db = tmp_path / "temporal.db"

    async def start_server() -> WorkflowEnvironment:
        return await WorkflowEnvironment.start_local(
            port=port,
            dev_server_existing_path=str(binaries.temporal_cli()),
            dev_server_database_filename=str(server_db),
            data_converter=pydantic_data_converter,
            search_attributes=list(search_attributes.ALL),
            dev_server_extra_args=list(DEV_SERVER_ARGS),
            dev_server_log_level="error",
        )

    add_bots(migrated_database_url)
    server = await start_server()
    chaos_dir = tmp_path / "chaos"
    chaos_dir.mkdir()
    worker = WorkerProcess(
        worker_env(server, migrated_database_url, anvil_url, tmp_path, chaos_dir),
        tmp_path / "worker.log",
    )
    try:
        worker.start()
        workflow_id = await start_round(server.client, 1)
        for _ in range(100):  # until training has started
            rows = registry.list_rounds(migrated_database_url, "digits")
            if rows:
                break
            await asyncio.sleep(0.1)
        await server.shutdown()
        server = await start_server()
        handle = server.client.get_workflow_handle(workflow_id, result_type=RoundReport)
        report: RoundReport = await asyncio.wait_for(handle.result(), 120)
        assert report.status is RoundStatus.PROMOTED, report.reason
        assert_recorded_once(migrated_database_url, tmp_path, workflow_id)
    finally:
        worker.stop()
        await server.shutdown()
