"""LearningRoundWorkflow on the dev server with the real numeric activities (digits), SQLite and
PostgreSQL: rounds promote or roll back, paused bots sit out, a poisoned participant is excluded
with its reason, a participant that raises or is late is dropped without stalling the round,
and every artifact reads back intact."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest_asyncio
from temporalio import activity, workflow
from temporalio.client import Client
from temporalio.worker import UnsandboxedWorkflowRunner, Worker

from activities.learning import LearningActivities
from agentfleet import db, taskqueues
from agentfleet.bots.model import BotEvent, BotKind, BotStatus, bot_workflow_id
from agentfleet.learning import registry
from agentfleet.learning.rounds import (
    RoundOrder,
    RoundReport,
    RoundStatus,
    TrainFrom,
    TrainOrder,
    TrainOutcome,
    round_workflow_id,
)
from agentfleet.learning.store import ArtifactStore
from agentfleet.models import BotRecord
from agentfleet.operations.alerts import AlertBatch
from agentfleet.settings import Settings
from tests.replay import record_history
from workers.main import WORKFLOW_RUNNER
from workflows.learning_round import LearningRoundWorkflow

BOTS = ["fc-a", "fc-b", "fc-c", "fc-d", "fc-e"]


@workflow.defn(name="TestNoteTaker")
class NoteTaker:
    """Stands in for a bot's entity: keeps the ``note`` signals it gets."""

    def __init__(self) -> None:
        self.notes: list[BotEvent] = []

    @workflow.signal
    def note(self, event: BotEvent) -> None:
        self.notes.append(event)

    @workflow.query
    def models(self) -> list[str]:
        return [n.detail for n in self.notes if n.event == "model"]

    @workflow.run
    async def run(self) -> None:
        await workflow.wait_condition(lambda: False)


class Doubles:
    """``train_model`` as the real activity, except for the participants a test spoils: a
    poisoner (weights scaled x100), a crasher (raises), a sleeper (late)."""

    def __init__(self, real: LearningActivities, store: ArtifactStore) -> None:
        self.real = real
        self.store = store
        self.poisoned: set[str] = set()
        self.crashing: set[str] = set()
        self.sleeping: set[str] = set()

    @activity.defn(name="train_model")
    async def train_model(self, order: TrainOrder) -> TrainOutcome:
        if order.participant in self.crashing:
            raise RuntimeError("out of memory (test)")
        if order.participant in self.sleeping:
            while True:
                activity.heartbeat()
                await asyncio.sleep(0.2)
        outcome = await self.real.train_model(order)
        if order.participant in self.poisoned:
            weights = self.store.get(outcome.artifact)
            scaled = {k: v * 100.0 for k, v in weights.items()}
            outcome = outcome.model_copy(update={"artifact": self.store.put(scaled)})
        return outcome


@pytest_asyncio.fixture(loop_scope="session")
async def learning(
    dev_client: Client, migrated_database_url: str, tmp_path: Path
) -> AsyncIterator[tuple[Client, Settings, Doubles, str]]:
    settings = Settings(home=tmp_path, database_url=migrated_database_url)
    task = "digits"
    with db.session_scope(migrated_database_url) as session:
        for name in [*BOTS, "fc-napping"]:
            status = BotStatus.PAUSED if name == "fc-napping" else BotStatus.ACTIVE
            session.add(
                BotRecord(
                    name=name, kind=BotKind.FORECASTER.value, owner="fleet", status=status.value
                )
            )
        session.commit()
    real = LearningActivities(settings)
    doubles = Doubles(real, ArtifactStore(settings.effective_models_path))
    workers = [
        Worker(
            dev_client,
            task_queue=taskqueues.WORKFLOWS,
            workflows=[LearningRoundWorkflow],
            workflow_runner=WORKFLOW_RUNNER,
        ),
        Worker(
            dev_client,
            task_queue=taskqueues.IO,
            activities=[real.select_participants, real.record_round, raise_alerts],
        ),
        Worker(
            dev_client,
            task_queue=taskqueues.LLM,
            activities=[doubles.train_model, real.aggregate_updates, real.evaluate_candidate],
        ),
    ]
    async with workers[0], workers[1], workers[2]:
        yield dev_client, settings, doubles, task


@activity.defn(name="raise_alerts")
async def raise_alerts(batch: AlertBatch) -> None:
    """Alerts of rolled-back rounds are not this file's subject (tests/test_alerts.py)."""


async def run_round(client: Client, task: str, number: int, **fields: Any) -> RoundReport:
    order = RoundOrder(task=task, round=number, **({"participant_timeout_s": 20} | fields))
    handle = await client.start_workflow(
        LearningRoundWorkflow.run,
        order,
        id=f"{round_workflow_id(task, number)}-{uuid.uuid4().hex[:6]}",
        task_queue=taskqueues.WORKFLOWS,
    )
    return await asyncio.wait_for(handle.result(), 120)


def backend(url: str) -> str:
    return "postgresql" if url.startswith("postgresql") else "sqlite"


async def test_rounds_promote_better_models_and_bots_serve_the_champion(
    learning: tuple[Client, Settings, Doubles, str],
) -> None:
    client, settings, _, task = learning
    url = settings.effective_database_url
    first = await run_round(client, task, 1)
    assert first.status is RoundStatus.PROMOTED, first.reason
    assert first.participants == BOTS
    assert [(d.participant, d.reason) for d in first.dropped] == [("fc-napping", "bot is paused")]
    assert first.champion == f"{task}-v2" and first.candidate_version == f"{task}-v2"
    assert first.evaluation is not None
    assert first.evaluation.candidate["accuracy"] > first.evaluation.champion["accuracy"]
    accuracies = [first.evaluation.candidate["accuracy"]]
    second = await run_round(client, task, 2)
    assert second.evaluation is not None
    accuracies.append(
        second.evaluation.candidate["accuracy"]
        if second.status is RoundStatus.PROMOTED
        else second.evaluation.champion["accuracy"]
    )
    # No candidate beats the champion's accuracy by a whole point: the round rolls back.
    third = await run_round(client, task, 3, margin=1.0)
    assert third.status is RoundStatus.ROLLED_BACK, third.reason
    assert third.champion == second.champion and third.candidate_version != third.champion
    assert third.evaluation is not None
    accuracies.append(third.evaluation.champion["accuracy"])
    assert accuracies == sorted(accuracies), "the champion never got worse"
    versions = registry.list_versions(url, task)
    assert [v.status for v in versions].count("champion") == 1
    rejected = next(v for v in versions if v.version_id == third.candidate_version)
    assert rejected.status == "rejected"
    handle = client.get_workflow_handle(third.round_id)
    await record_history(handle, f"learning_round_rolled_back_{backend(url)}")
    assert versions[0].version_id == f"{task}-v1" and versions[1].parent == f"{task}-v1"
    store = ArtifactStore(settings.effective_models_path)
    assert all(store.verify(v.artifact) for v in versions), "an artifact does not match its hash"
    champion = next(v for v in versions if v.status == "champion")
    with db.session_scope(url) as session:
        served = {b.name: b.model_version for b in session.exec(db_select_bots()).all()}
    assert {served[name] for name in BOTS} == {champion.version_id}
    assert served["fc-napping"] is None


async def test_the_next_round_starts_from_a_rolled_back_candidate_while_bots_serve_the_champion(
    learning: tuple[Client, Settings, Doubles, str],
) -> None:
    client, settings, _, task = learning
    url = settings.effective_database_url
    queue = f"notes-{uuid.uuid4().hex[:6]}"
    async with Worker(
        client, task_queue=queue, workflows=[NoteTaker], workflow_runner=UnsandboxedWorkflowRunner()
    ):
        entity = await client.start_workflow(
            NoteTaker.run, id=bot_workflow_id("fc-a"), task_queue=queue
        )
        try:
            first = await run_round(client, task, 1)
            assert first.status is RoundStatus.PROMOTED, first.reason
            held = await run_round(client, task, 2, margin=1.0)
            told = await entity.query(NoteTaker.models)
        finally:
            await entity.terminate()
    assert told == [first.champion, first.champion], "record_round tells the entity each round"
    assert held.status is RoundStatus.ROLLED_BACK and held.champion == first.champion
    await record_history(
        client.get_workflow_handle(held.round_id), f"learning_round_told_{backend(url)}"
    )
    versions = {v.version_id: v for v in registry.list_versions(url, task)}
    rejected = versions[str(held.candidate_version)]
    assert rejected.status == "rejected" and rejected.head
    assert not versions[str(first.champion)].head
    assert set(rejected.controls) == set(BOTS), "every bot's control as of the candidate"
    store = ArtifactStore(settings.effective_models_path)
    assert all(store.verify(ref) for ref in rejected.controls.values())

    onward = await run_round(client, task, 3, margin=1.0)
    assert onward.champion == first.champion, "the gate alone decides what bots serve"
    versions = {v.version_id: v for v in registry.list_versions(url, task)}
    assert versions[str(onward.candidate_version)].parent == held.candidate_version
    with db.session_scope(url) as session:
        served = {b.name: b.model_version for b in session.exec(db_select_bots()).all()}
    assert {served[name] for name in BOTS} == {first.champion}

    gated = await run_round(client, task, 4, margin=1.0, train_from=TrainFrom.CHAMPION)
    versions = {v.version_id: v for v in registry.list_versions(url, task)}
    assert versions[str(gated.candidate_version)].parent == first.champion

    registry.rollback(url, task, f"{task}-v1")
    start = registry.start_of(url, task, TrainFrom.CANDIDATE)
    assert start is not None and start.version_id == f"{task}-v1", "a rollback resets the start"


def db_select_bots() -> Any:
    from sqlmodel import select

    return select(BotRecord)


async def test_poisoned_crashing_and_late_participants_are_left_out_with_reasons(
    learning: tuple[Client, Settings, Doubles, str],
) -> None:
    client, settings, doubles, task = learning
    baseline = await run_round(client, task, 1)
    assert baseline.status is RoundStatus.PROMOTED
    doubles.poisoned = {"fc-a"}
    doubles.crashing = {"fc-b"}
    doubles.sleeping = {"fc-c"}
    # The sleeper never finishes, so the round waits the whole timeout; 10 s (the others train
    # in about 1 s) so that a loaded machine never makes an honest participant late.
    report = await run_round(client, task, 2, participant_timeout_s=10, min_participants=2)
    dropped = {d.participant: d.reason for d in report.dropped}
    assert set(dropped) == {"fc-napping", "fc-b", "fc-c"}, dropped
    assert dropped["fc-b"] == "failed: RuntimeError: out of memory (test)", dropped
    assert dropped["fc-c"].startswith("late: still training"), dropped
    excluded = {e.participant: e.reason for e in report.excluded}
    assert set(excluded) == {"fc-a"} and "median" in excluded["fc-a"], excluded
    assert report.status in {RoundStatus.PROMOTED, RoundStatus.ROLLED_BACK}
    assert report.evaluation is not None
    assert np.isfinite(report.evaluation.candidate["accuracy"])
    rows = registry.list_rounds(settings.effective_database_url, task)
    mine = next(r for r in rows if r.round == 2)
    assert {d["participant"] for d in mine.dropped} >= {"fc-b", "fc-c"}
    handle = client.get_workflow_handle(report.round_id)
    await record_history(handle, f"learning_round_{backend(settings.effective_database_url)}")


async def test_ten_round_campaign_with_five_bots_reaches_the_pooled_model_within_a_point(
    dev_client: Client, migrated_database_url: str, tmp_path: Path
) -> None:
    """Through the CLI and the real workers: `fleet learn run`, then the registry commands."""
    import json
    import os
    import sys

    from agentfleet.learning.tasks.digits import DigitsTask
    from workers.main import running_workers

    settings = Settings(home=tmp_path, database_url=migrated_database_url)
    with db.session_scope(migrated_database_url) as session:
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
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FLEET_", "TEMPORAL_"))}
    env.update(
        FLEET_HOME=str(tmp_path),
        FLEET_TEMPORAL_ADDRESS=dev_client.service_client.config.target_host,
        FLEET_DATABASE_URL=migrated_database_url,
        COLUMNS="200",
    )
    fleet_bin = os.path.join(os.path.dirname(sys.executable), "fleet")

    async def fleet(*args: str) -> tuple[int, str, str]:
        process = await asyncio.create_subprocess_exec(
            fleet_bin,
            *args,
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(process.communicate(), 240)
        return process.returncode or 0, out.decode(), err.decode()

    async with running_workers(dev_client, settings):
        code, out, err = await fleet("learn", "run", "--task", "digits", "--rounds", "10", "--json")
        assert code == 0, err
        view = json.loads(out)
        assert len(view["rounds"]) == 10 and view["stopped"] == "10 rounds done"
        champion = view["champion"]
        code, out, err = await fleet("learn", "models", "--task", "digits", "--json")
        assert code == 0, err
        versions = {v["version_id"]: v for v in json.loads(out)}
        assert versions[champion]["status"] == "champion"
        pooled = DigitsTask().train_centrally(seed=0)
        pooled_accuracy = DigitsTask().evaluate(pooled.weights, DigitsTask().holdout())["accuracy"]
        federated = versions[champion]["metrics"]["accuracy"]
        assert federated >= pooled_accuracy - 0.01, (federated, pooled_accuracy)

        code, out, err = await fleet("learn", "rollback", "--task", "digits", "--to", "digits-v1")
        assert code == 0, err
        assert registry.list_versions(migrated_database_url, "digits")[0].status == "champion"
        code, _, err = await fleet("learn", "rollback", "--task", "digits", "--to", "digits-v99")
        assert code == 1 and err.count("\n") == 1 and "no version digits-v99" in err, err
        code, _, err = await fleet("learn", "run", "--task", "chess")
        assert code == 1 and "unknown learning task 'chess'" in err, err
        code, out, err = await fleet("learn", "status", "--task", "digits", "--json")
        assert code == 0 and len(json.loads(out)) == 10, err
        png = tmp_path / "rounds.png"
        code, out, err = await fleet("learn", "plot", "--task", "digits", "-o", str(png))
        assert code == 0, err
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        code, out, err = await fleet("learn", "share", "--from", "fc-a", "--json")
        assert code == 0, err
        assert json.loads(out)["asked"] == len(BOTS) - 1
        code, out, err = await fleet("learn", "patterns")
        assert code == 0 and "fc-a" in out, err
        code, _, err = await fleet("learn", "schedule", "--task", "digits", "--every", "3x")
        assert code == 1 and "is not a duration" in err, err
        code, out, err = await fleet("learn", "schedule", "--task", "digits", "--every", "1h")
        assert code == 0 and "learning-digits" in out, err
        scheduled = dev_client.get_schedule_handle("learning-digits")
        try:
            await scheduled.trigger()
            for _ in range(300):  # the scheduled run looks up its round number: the 11th
                rows = registry.list_rounds(migrated_database_url, "digits")
                if any(r.round == 11 and r.status != "running" for r in rows):
                    break
                await asyncio.sleep(0.1)
            else:
                raise AssertionError("the scheduled round did not run")
        finally:
            await scheduled.delete()
    handle = dev_client.get_workflow_handle("learning-campaign-digits-1")
    await record_history(handle, f"learning_campaign_{backend(migrated_database_url)}")
