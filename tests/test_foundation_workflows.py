"""The foundation's workflows on real servers: the stack check on both databases, the skeleton."""

from __future__ import annotations

import uuid

import pytest
from sqlmodel import select
from temporalio.client import Client
from temporalio.testing import ActivityEnvironment, WorkflowEnvironment
from temporalio.worker import Worker

from activities.skeleton import noop
from activities.store import StoreActivities
from agentfleet import db, taskqueues
from agentfleet.messages import AuditRecord, SkeletonInput, StackCheckInput
from agentfleet.models import AuditEvent
from agentfleet.settings import Settings
from tests.replay import record_history
from workers.main import running_workers
from workflows.skeleton import SkeletonWorkflow
from workflows.stack_check import StackCheckWorkflow


async def test_stack_check_reads_chain_and_writes_one_audit_row(
    dev_client: Client, migrated_database_url: str, anvil_url: str, tmp_path: object
) -> None:
    settings = Settings(database_url=migrated_database_url, rpc_url=anvil_url)
    async with running_workers(dev_client, settings):
        handle = await dev_client.start_workflow(
            StackCheckWorkflow.run,
            StackCheckInput(label="test"),
            id=f"stack-check-{uuid.uuid4()}",
            task_queue=taskqueues.WORKFLOWS,
        )
        result = await handle.result()
    assert result.chain is not None and result.chain.chain_id == 31337
    assert result.database.revision == db.head_revision()
    assert result.audit_inserted is True
    with db.session_scope(migrated_database_url) as session:
        rows = session.exec(select(AuditEvent).where(AuditEvent.workflow_id == handle.id)).all()
    assert [(r.kind, r.subject) for r in rows] == [("stack.checked", "test")]
    await record_history(handle, f"stack_check_{make_backend(migrated_database_url)}")


def make_backend(url: str) -> str:
    return "postgresql" if url.startswith("postgresql") else "sqlite"


def test_retried_audit_write_lands_once(migrated_database_url: str) -> None:
    store = StoreActivities(Settings(database_url=migrated_database_url))
    record = AuditRecord(idempotency_key="k-1", actor="t", kind="k", subject="s")
    env = ActivityEnvironment()
    assert env.run(store.record_audit_event, record).inserted is True
    assert env.run(store.record_audit_event, record).inserted is False
    with db.session_scope(migrated_database_url) as session:
        assert len(session.exec(select(AuditEvent)).all()) == 1


@pytest.mark.parametrize("local", [False, True], ids=["regular", "local"])
async def test_skeleton_runs_its_activities(
    time_skipping_env: WorkflowEnvironment, local: bool
) -> None:
    queue = f"skeleton-{uuid.uuid4()}"
    client = time_skipping_env.client
    async with Worker(client, task_queue=queue, workflows=[SkeletonWorkflow], activities=[noop]):
        handle = await client.start_workflow(
            SkeletonWorkflow.run,
            SkeletonInput(activities=3, local=local),
            id=f"skeleton-{uuid.uuid4()}",
            task_queue=queue,
        )
        result = await handle.result()
    assert result.activities == 3
    history = await handle.fetch_history()
    kind = "MARKER_RECORDED" if local else "ACTIVITY_TASK_COMPLETED"
    completed = [e for e in history.events if kind in str(e.event_type) or _is(e, kind)]
    assert len(completed) == 3
    await record_history(handle, f"skeleton_{'local' if local else 'regular'}")


def _is(event: object, kind: str) -> bool:
    from temporalio.api.enums.v1 import EventType

    return EventType.Name(event.event_type) == f"EVENT_TYPE_{kind}"  # type: ignore[attr-defined]
