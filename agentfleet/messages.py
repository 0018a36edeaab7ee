"""Pydantic models that cross the workflow/activity boundary (inputs and results).

Every workflow and activity takes one model and returns one. Add fields with defaults; never
change the meaning of an existing field (recorded histories must keep replaying).
"""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field


class NoopInput(BaseModel):
    step: int = 0


class NoopResult(BaseModel):
    step: int = 0


class SkeletonInput(BaseModel):
    """Shape of a skeleton workflow: N sequential do-nothing activities, regular or local."""

    activities: int = Field(default=3, ge=0, le=1000)
    local: bool = False
    task_queue: str | None = None
    """Queue of the regular activities; None means the workflow's own queue."""


class SkeletonResult(BaseModel):
    activities: int


class AuditRecord(BaseModel):
    """One audit row; ``idempotency_key`` makes a retried write land once."""

    idempotency_key: str
    actor: str
    kind: str
    subject: str
    workflow_id: str | None = None
    detail: dict[str, str | int | float | bool | None] = Field(default_factory=dict)


class AuditWriteResult(BaseModel):
    inserted: bool


class DatabaseStatus(BaseModel):
    backend: str
    revision: str | None


class ChainHeadRequest(BaseModel):
    pass


class ChainHead(BaseModel):
    chain_id: int
    block_number: int


class StackCheckInput(BaseModel):
    """Which parts of the stack the check exercises; ``label`` names the run in the audit log."""

    label: str = "stack-check"
    check_chain: bool = True


class StackCheckResult(BaseModel):
    database: DatabaseStatus
    chain: ChainHead | None
    audit_inserted: bool
    checked_at: datetime
