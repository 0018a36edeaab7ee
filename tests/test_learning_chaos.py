"""A learning round survives its worker being SIGKILLed inside training (after an epoch) and
inside each later step (aggregate, evaluate, record, notify), and the Temporal server
restarting while it runs: it completes, records its candidate once, crowns one champion, and
every artifact reads back with its hash. The worker is a real process (``python -m
workers.main``); each test proves its kill point fired (the armed file was taken, the worker
died by SIGKILL, the step's activity finished on a later attempt)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from sqlmodel import select
from temporalio.api.enums.v1 import PendingActivityState
from temporalio.client import Client, WorkflowExecutionStatus, WorkflowHandle
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from agentfleet import binaries, db, search_attributes, taskqueues
from agentfleet.bots.model import BotKind, BotStatus
from agentfleet.learning import registry
from agentfleet.learning.rounds import (
    ModelStatus,
    RoundOrder,
    RoundReport,
    RoundStatus,
    round_workflow_id,
)
from agentfleet.learning.store import ArtifactStore
from agentfleet.models import BotRecord, ModelVersion
from starters.stack.components import DEV_SERVER_ARGS
from tests.fixtures.chain import free_port
from tests.fixtures.worker import WorkerProcess, worker_env

BOTS = ["ch-a", "ch-b", "ch-c", "ch-d"]
STEP_TIMEOUT_S = 8
"""A try of aggregate, evaluate or record whose worker died is retried after this."""

LATER_STEPS = {
    "aggregate": ("after_aggregate", "aggregate_updates"),
    "evaluate": ("after_evaluate", "evaluate_candidate"),
    "record": ("after_record", "record_round"),
    "notify": ("after_tell", "record_round"),
}
"""Step -> (its chaos point, keyed by round id; the activity it sits in)."""


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


ROUND_ID = round_workflow_id("digits", 1)
"""Every test runs round 1 of its own database (the ID is free again once a round closed)."""


async def start_round(client: Client, workflow_id: str) -> WorkflowHandle[object, RoundReport]:
    return await client.start_workflow(
        "LearningRoundWorkflow",
        RoundOrder(task="digits", round=1, participant_timeout_s=6, step_timeout_s=STEP_TIMEOUT_S),
        id=workflow_id,
        task_queue=taskqueues.WORKFLOWS,
        result_type=RoundReport,
    )


def arm(chaos_dir: Path, point: str) -> Path:
    armed = chaos_dir / point
    armed.touch()
    return armed


def assert_fired(armed: Path) -> None:
    """The armed point took its file (just before it SIGKILLed the worker)."""
    assert not armed.exists(), f"the worker died, but not at {armed.name}"


async def attempts(handle: WorkflowHandle[object, RoundReport], activity: str) -> list[int]:
    """The attempt on which each completed ``activity`` of the round ran (1: its first try)."""
    history = await handle.fetch_history()
    kinds = {
        event.event_id: event.activity_task_scheduled_event_attributes.activity_type.name
        for event in history.events
        if event.HasField("activity_task_scheduled_event_attributes")
    }
    tries = {
        event.event_id: event.activity_task_started_event_attributes.attempt
        for event in history.events
        if event.HasField("activity_task_started_event_attributes")
    }
    return [
        tries[done.started_event_id]
        for done in (
            event.activity_task_completed_event_attributes
            for event in history.events
            if event.HasField("activity_task_completed_event_attributes")
        )
        if kinds[done.scheduled_event_id] == activity
    ]


def assert_recorded_once(url: str, home: Path, workflow_id: str) -> None:
    versions = registry.list_versions(url, "digits")
    assert [v.round_id for v in versions].count(workflow_id) == 1, "a version recorded twice"
    store = ArtifactStore(home / "models")
    assert all(store.verify(v.artifact) for v in versions), "an artifact does not match its hash"


def assert_one_champion_served(url: str, report: RoundReport) -> None:
    """The round's row is finished, its candidate is the task's only champion, and every
    participant serves it."""
    [row] = registry.list_rounds(url, "digits")
    with db.session_scope(url) as session:
        champions = session.exec(
            select(ModelVersion).where(
                ModelVersion.task == "digits", ModelVersion.status == ModelStatus.CHAMPION.value
            )
        ).all()
        served = {name: session.get(BotRecord, name).model_version for name in BOTS}  # type: ignore[union-attr]
    assert (row.status, row.candidate, row.champion) == (
        RoundStatus.PROMOTED.value,
        report.candidate_version,
        report.champion,
    )
    assert [c.version_id for c in champions] == [report.candidate_version]
    assert report.champion == report.candidate_version
    assert served == dict.fromkeys(BOTS, report.champion)


async def run_killed_round(
    client: Client, worker: WorkerProcess, armed: Path
) -> tuple[WorkflowHandle[object, RoundReport], RoundReport]:
    """Round 1 on a worker that dies by SIGKILL at ``armed``, then on its replacement."""
    worker.start()
    handle = await start_round(client, ROUND_ID)
    assert await worker.wait_killed() == -9
    assert_fired(armed)
    worker.start()
    report: RoundReport = await asyncio.wait_for(handle.result(), 120)
    assert report.status is RoundStatus.PROMOTED, (report.reason, report.dropped)
    return handle, report


async def test_worker_killed_mid_training_the_round_completes_and_records_once(
    dev_client: Client,
    chaos_worker: tuple[WorkerProcess, Path],
    migrated_database_url: str,
    tmp_path: Path,
) -> None:
    worker, chaos_dir = chaos_worker
    add_bots(migrated_database_url)
    armed = arm(chaos_dir, "mid_train@ch-c:epoch-2")  # reached once ch-c's 2nd epoch is done
    handle, report = await run_killed_round(dev_client, worker, armed)
    assert report.participants == BOTS
    trained = await attempts(handle, "train_model")
    assert max(trained) >= 2, f"no killed training finished on a retry: {report.dropped}"
    assert_recorded_once(migrated_database_url, tmp_path, ROUND_ID)
    assert_one_champion_served(migrated_database_url, report)


@pytest.mark.extended
@pytest.mark.parametrize("step", list(LATER_STEPS))
async def test_worker_killed_in_a_later_step_the_round_completes_and_records_once(
    dev_client: Client,
    chaos_worker: tuple[WorkerProcess, Path],
    migrated_database_url: str,
    tmp_path: Path,
    step: str,
) -> None:
    point, activity = LATER_STEPS[step]
    worker, chaos_dir = chaos_worker
    add_bots(migrated_database_url)
    armed = arm(chaos_dir, f"{point}@{ROUND_ID}")
    handle, report = await run_killed_round(dev_client, worker, armed)
    [attempt] = await attempts(handle, activity)
    assert attempt >= 2, f"{activity} finished on its first try: the kill did not stop it"
    assert_recorded_once(migrated_database_url, tmp_path, ROUND_ID)
    assert_one_champion_served(migrated_database_url, report)


async def test_temporal_restarted_mid_round_the_round_completes_and_records_once(
    migrated_database_url: str, anvil_url: str, tmp_path: Path
) -> None:
    """The round is held in training across the restart: its workflow, select and record run
    on a worker that stays up through it, and nobody polls the training queue until after."""
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
    env = worker_env(server, migrated_database_url, anvil_url, tmp_path, chaos_dir)
    rest = [queue for queue in taskqueues.ALL if queue != taskqueues.LLM]
    worker = WorkerProcess(env, tmp_path / "worker.log", rest)
    trainer = WorkerProcess(env, tmp_path / "trainer.log", [taskqueues.LLM])
    try:
        worker.start()
        handle = await start_round(server.client, ROUND_ID)
        for _ in range(600):
            description = await handle.describe()
            training = [
                a
                for a in description.raw_description.pending_activities
                if a.activity_type.name == "train_model"
            ]
            if len(training) == len(BOTS):
                break
            await asyncio.sleep(0.1)
        else:
            raise AssertionError("the round never asked its participants to train")
        assert description.status is WorkflowExecutionStatus.RUNNING
        scheduled = PendingActivityState.PENDING_ACTIVITY_STATE_SCHEDULED
        assert {a.state for a in training} == {scheduled}, "training ran with no trainer up"
        [row] = registry.list_rounds(migrated_database_url, "digits")
        assert row.status == RoundStatus.RUNNING.value, "the round finished before the restart"

        await server.shutdown()
        server = await start_server()
        trainer.start()
        handle = server.client.get_workflow_handle(ROUND_ID, result_type=RoundReport)
        report: RoundReport = await asyncio.wait_for(handle.result(), 120)
        assert report.status is RoundStatus.PROMOTED, (report.reason, report.dropped)
        assert_recorded_once(migrated_database_url, tmp_path, ROUND_ID)
        assert_one_champion_served(migrated_database_url, report)
        assert worker.proc is not None and worker.proc.poll() is None, "the worker did not last"
    finally:
        trainer.stop()
        worker.stop()
        await server.shutdown()
