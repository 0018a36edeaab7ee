"""Fleet activities: which bots a command reaches (the ``bots`` table, Temporal visibility).

``resolve_targets`` reads the ``bots`` table for ``all`` / kinds / names; a visibility query is
asked of Temporal (``WorkflowType = "BotLifecycleWorkflow" AND (<query>)``) and its workflow ids
``bot-{name}`` are mapped to their rows. An invalid query is a non-retryable
``InvalidTargetQuery``. ``plan_command`` does the same for a fleet command and, past
``FLEET_COMMAND_INLINE_ANSWERS`` targets, splits them into batches instead of listing them.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

from temporalio import activity
from temporalio.client import Client
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError, RPCStatusCode

from agentfleet import taskqueues
from agentfleet.bots import command_store
from agentfleet.bots.command_batches import CommandPlan, PlanCommand, TargetBatch, batch_size
from agentfleet.bots.commands import (
    BOT_WORKFLOW_TYPE,
    ResolvedTargets,
    ResolveTargets,
)
from agentfleet.bots.model import bot_workflow_id
from agentfleet.models import utcnow
from agentfleet.settings import Settings


class FleetActivities:
    """Activities bound to one database and (for visibility queries) one Temporal client."""

    task_queue = taskqueues.IO

    def __init__(self, settings: Settings, client: Client | None = None) -> None:
        self._url = settings.effective_database_url
        self._client = client
        self._inline = settings.command_inline_answers
        self._keep = timedelta(days=settings.command_answers_days)

    @activity.defn(name="resolve_targets")
    async def resolve_targets(self, request: ResolveTargets) -> ResolvedTargets:
        """The bots ``request.targets`` names, in a stable order (by name; a name list keeps
        its order), and the names that are no bot."""
        targets = request.targets
        names: list[str] | None = list(targets.names) if targets.names else None
        if targets.query:
            names = await self._names_matching(targets.query)
        return await asyncio.to_thread(command_store.resolve, self._url, targets, names)

    @activity.defn(name="plan_command")
    async def plan_command(self, request: PlanCommand) -> CommandPlan:
        """The command's targets: resolved, when there are at most ``FLEET_COMMAND_INLINE_ANSWERS``
        of them; else in batches of names (the answers will be stored; stored answers older
        than ``FLEET_COMMAND_ANSWERS_DAYS`` go now)."""
        targets = request.targets
        names: list[str] | None = list(dict.fromkeys(targets.names)) if targets.names else None
        if targets.query:
            names = await self._names_matching(targets.query)
        if names is None:
            ranged = True
            names = await asyncio.to_thread(command_store.target_names, self._url, targets)
        else:
            ranged = False
        total = len(names)
        if total <= self._inline:
            resolved = await asyncio.to_thread(
                command_store.resolve, self._url, targets, None if ranged else names
            )
            return CommandPlan(total=len(resolved.bots) + len(resolved.unknown), resolved=resolved)
        await asyncio.to_thread(command_store.prune, self._url, utcnow() - self._keep)
        size = batch_size(total, request.parallel_batches)
        batches = []
        for index, start in enumerate(range(0, total, size)):
            chunk = names[start : start + size]
            batches.append(
                TargetBatch(
                    index=index,
                    position=start,
                    bots=len(chunk),
                    first=chunk[0],
                    last=chunk[-1],
                    names=[] if ranged else chunk,
                )
            )
        return CommandPlan(
            total=total, batches=batches, kinds=list(targets.kinds) if ranged else []
        )

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
