"""The fleet health check rolls a champion that does worse than its parent on fresh data back
to the parent, fleet-wide, and says so (summary, audit event, the bots' model version)."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

from sqlmodel import select
from temporalio.client import Client

from agentfleet import db, taskqueues
from agentfleet.bots.health import FleetHealthSummary, HealthCheck
from agentfleet.bots.model import BotKind, BotStatus
from agentfleet.learning import registry
from agentfleet.learning.store import ArtifactStore
from agentfleet.learning.tasks.digits import DigitsTask
from agentfleet.models import AuditEvent, BotRecord, ModelVersion
from agentfleet.settings import Settings
from tests.replay import record_history
from workers.main import running_workers


async def test_a_champion_worse_than_its_parent_is_rolled_back_fleet_wide(
    dev_client: Client, migrated_database_url: str, tmp_path: Path
) -> None:
    settings = Settings(home=tmp_path, database_url=migrated_database_url)
    store = ArtifactStore(settings.effective_models_path)
    task = DigitsTask()
    good = task.train_centrally(seed=0).weights
    bad = task.init(seed=0)  # an untrained model: about one digit in ten
    with db.session_scope(migrated_database_url) as session:
        session.add(
            ModelVersion(
                version_id="digits-v1",
                task="digits",
                version=1,
                artifact=store.put(good),
                status="retired",
                round_id="learning-digits-init",
            )
        )
        session.add(
            ModelVersion(
                version_id="digits-v2",
                task="digits",
                version=2,
                parent="digits-v1",
                artifact=store.put(bad),
                status="champion",
                round_id="learning-digits-1",
            )
        )
        for name in ("deg-a", "deg-b"):  # paused: the health check has no bot to reach by chain
            session.add(
                BotRecord(
                    name=name,
                    kind=BotKind.FORECASTER.value,
                    owner="fleet",
                    status=BotStatus.PAUSED.value,
                    model_version="digits-v2",
                )
            )
        session.commit()
    async with running_workers(dev_client, settings):
        handle = await dev_client.start_workflow(
            "FleetHealthWorkflow",
            HealthCheck(),
            id=f"health-{uuid.uuid4().hex[:6]}",
            task_queue=taskqueues.WORKFLOWS,
            result_type=FleetHealthSummary,
        )
        summary: FleetHealthSummary = await asyncio.wait_for(handle.result(), 60)
    backend = "postgresql" if migrated_database_url.startswith("postgresql") else "sqlite"
    await record_history(handle, f"fleet_health_model_rollback_{backend}")
    [line] = summary.models_rolled_back
    assert line.startswith("digits: digits-v2 -> digits-v1 (accuracy 0.")
    versions = {
        v.version_id: v.status for v in registry.list_versions(migrated_database_url, "digits")
    }
    assert versions == {"digits-v1": "champion", "digits-v2": "retired"}
    with db.session_scope(migrated_database_url) as session:
        bots = session.exec(select(BotRecord)).all()
        [event] = session.exec(select(AuditEvent).where(AuditEvent.kind == "model_degraded")).all()
    assert {b.model_version for b in bots} == {"digits-v1"}
    assert event.detail["from"] == "digits-v2" and event.detail["to"] == "digits-v1"
