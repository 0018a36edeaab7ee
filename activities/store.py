"""Database activities: every write is idempotent by key, so a retried activity lands once."""

from __future__ import annotations

from sqlalchemy.engine import make_url
from temporalio import activity

from agentfleet import db, taskqueues
from agentfleet.messages import AuditRecord, AuditWriteResult, DatabaseStatus
from agentfleet.models import AuditEvent
from agentfleet.operations import metrics
from agentfleet.settings import Settings


class StoreActivities:
    """Activities bound to one database (``Settings.effective_database_url``).

    They are synchronous (SQLAlchemy is), so the worker runs them in its thread pool.
    """

    task_queue = taskqueues.IO

    def __init__(self, settings: Settings) -> None:
        self._url = settings.effective_database_url

    @activity.defn(name="record_audit_event")
    def record_audit_event(self, record: AuditRecord) -> AuditWriteResult:
        with db.session_scope(self._url) as session:
            inserted = db.record_once(
                session,
                AuditEvent(
                    idempotency_key=record.idempotency_key,
                    actor=record.actor,
                    kind=record.kind,
                    subject=record.subject,
                    workflow_id=record.workflow_id,
                    detail=dict(record.detail),
                ),
            )
        if inserted:
            metrics.count_audit_event(record.kind, record.actor, record.detail)
        return AuditWriteResult(inserted=inserted)

    @activity.defn(name="database_status")
    def database_status(self) -> DatabaseStatus:
        return DatabaseStatus(
            backend=make_url(self._url).get_backend_name(),
            revision=db.current_revision(self._url),
        )
