"""Fleet activities: which bots a command reaches (the ``bots`` table, Temporal visibility).

``resolve_targets`` reads the ``bots`` table for ``all`` / kinds / names; a visibility query is
asked of Temporal (``WorkflowType = "BotLifecycleWorkflow" AND (<query>)``) and its workflow ids
``bot-{name}`` are mapped to their rows. An invalid query is a non-retryable
``InvalidTargetQuery``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from sqlmodel import col, select
from temporalio import activity
from temporalio.client import Client
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError, RPCStatusCode

from agentfleet import db, taskqueues
from agentfleet.bots.commands import (
    BOT_WORKFLOW_TYPE,
    ResolvedTargets,
    ResolveTargets,
    Targets,
)
from agentfleet.bots.model import BotKind, BotRef, BotStatus, bot_workflow_id
from agentfleet.models import BotRecord
from agentfleet.settings import Settings

NAMES_PER_QUERY = 500
"""Names per ``IN (...)`` clause (far below every backend's parameter limit)."""


class FleetActivities:
    """Activities bound to one database and (for visibility queries) one Temporal client."""

    task_queue = taskqueues.IO

    def __init__(self, settings: Settings, client: Client | None = None) -> None:
        self._url = settings.effective_database_url
        self._client = client

    @activity.defn(name="resolve_targets")
    async def resolve_targets(self, request: ResolveTargets) -> ResolvedTargets:
        """The bots ``request.targets`` names, in a stable order (by name; a name list keeps
        its order), and the names that are no bot."""
        targets = request.targets
        names: list[str] | None = list(targets.names) if targets.names else None
        if targets.query:
            names = await self._names_matching(targets.query)
        return await asyncio.to_thread(self._read, targets, names)

    async def _names_matching(self, query: str) -> list[str]:
        if self._client is None:
            raise ApplicationError(
                "target queries need a Temporal client in the worker",
                type="NoTemporalClient",
                non_retryable=True,
            )
        prefix = bot_workflow_id("")
        full = f'WorkflowType = "{BOT_WORKFLOW_TYPE}" AND ({query})'
        names: set[str] = set()
        try:
            async for execution in self._client.list_workflows(full):
                if execution.id.startswith(prefix):
                    names.add(execution.id.removeprefix(prefix))
        except RPCError as exc:
            if exc.status is RPCStatusCode.INVALID_ARGUMENT:
                raise ApplicationError(
                    f"invalid target query {query!r}: {exc.message}",
                    type="InvalidTargetQuery",
                    non_retryable=True,
                ) from None
            raise
        return sorted(names)

    def _read(self, targets: Targets, names: Sequence[str] | None) -> ResolvedTargets:
        with db.session_scope(self._url) as session:
            if names is not None:
                rows: list[BotRecord] = []
                wanted = list(dict.fromkeys(names))
                for start in range(0, len(wanted), NAMES_PER_QUERY):
                    chunk = wanted[start : start + NAMES_PER_QUERY]
                    rows += session.exec(
                        select(BotRecord).where(col(BotRecord.name).in_(chunk))
                    ).all()
                by_name = {row.name: row for row in rows}
                ordered = [by_name[name] for name in wanted if name in by_name]
                unknown = [name for name in wanted if name not in by_name]
            else:
                statement = select(BotRecord).order_by(col(BotRecord.name))
                if targets.kinds:
                    kinds = [kind.value for kind in targets.kinds]
                    statement = statement.where(col(BotRecord.kind).in_(kinds))
                ordered = list(session.exec(statement).all())
                unknown = []
        resolved = ResolvedTargets(unknown=unknown)
        for row in ordered:
            try:
                kind, status = BotKind(row.kind), BotStatus(row.status)
            except ValueError:  # a row written by a newer version: not a bot we can call
                resolved.unknown.append(row.name)
                continue
            resolved.bots.append(
                BotRef(name=row.name, kind=kind, status=status, owner=row.owner, params=row.params)
            )
            if row.reason:
                resolved.reasons[row.name] = row.reason
        return resolved
