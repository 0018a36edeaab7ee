"""Starting and following fleet commands (``FleetCommandWorkflow``, ``command-{command_id}``)
and reading their answers: what ``fleet command``, the Telegram command center and the
benchmarks call.

The same ``command_id`` runs once: starting it again (concurrently, or after it finished)
attaches to the first run and answers its result. A large command's answers are stored in the
database, not in its result: :func:`answers_page` and :func:`all_answers` read them (or a small
command's, from its result) the same way.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from temporalio.client import (
    Client,
    WorkflowExecutionStatus,
    WorkflowFailureError,
    WorkflowHandle,
    WorkflowQueryFailedError,
    WorkflowQueryRejectedError,
)
from temporalio.common import WorkflowIDReusePolicy
from temporalio.exceptions import FailureError
from temporalio.service import RPCError, RPCStatusCode

from agentfleet import taskqueues
from agentfleet.bots import command_store
from agentfleet.bots.commands import (
    BotAnswer,
    CommandProgress,
    FleetCommand,
    FleetCommandResult,
    command_workflow_id,
)
from agentfleet.errors import FleetError
from agentfleet.temporal import start_or_attach

WORKFLOW_TYPE = "FleetCommandWorkflow"


async def start_command(client: Client, command: FleetCommand) -> WorkflowHandle[Any, Any]:
    """Start the command, or attach to the one already started under its id."""
    return await start_or_attach(
        client,
        WORKFLOW_TYPE,
        command,
        id=command_workflow_id(command.command_id),
        task_queue=taskqueues.WORKFLOWS,
        reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE_FAILED_ONLY,
        result_type=FleetCommandResult,
        memo={"skill": command.skill.value, "targets": command.targets.describe()},
    )


async def command_result(handle: WorkflowHandle[Any, Any]) -> FleetCommandResult:
    """The command's result; a failed command is a one-line :class:`FleetError`."""
    try:
        result: FleetCommandResult = await handle.result()
    except WorkflowFailureError as exc:
        cause = exc.cause
        reason = cause.message if isinstance(cause, FailureError) else str(cause)
        command_id = handle.id.removeprefix(command_workflow_id(""))
        raise FleetError(f"command {command_id} failed: {reason}") from exc
    return result


async def run_command(client: Client, command: FleetCommand) -> FleetCommandResult:
    """Run ``command`` and wait for its answer; the same ``command_id`` runs once, so a second
    call (concurrent or later) returns the first run's result, whatever its other fields say."""
    return await command_result(await start_command(client, command))


async def command_progress(client: Client, command_id: str) -> CommandProgress:
    """The ``progress`` query of a running (or finished) command."""
    handle = client.get_workflow_handle(command_workflow_id(command_id))
    progress: CommandProgress = await handle.query(
        "progress", result_type=CommandProgress, rpc_timeout=timedelta(seconds=5)
    )
    return progress


async def follow_command(
    client: Client,
    handle: WorkflowHandle[Any, Any],
    poll_s: float,
    on_progress: Callable[[CommandProgress | None], None],
) -> FleetCommandResult:
    """The command's result (as :func:`command_result`); until it comes, ``on_progress`` sees its
    progress every ``poll_s`` seconds (None while no worker answers the query)."""
    command_id = handle.id.removeprefix(command_workflow_id(""))
    answer = asyncio.ensure_future(command_result(handle))
    while not answer.done():
        try:
            progress: CommandProgress | None = await command_progress(client, command_id)
        except (RPCError, WorkflowQueryFailedError, WorkflowQueryRejectedError):
            progress = None
        on_progress(progress)
        await asyncio.wait({answer}, timeout=poll_s)
    return answer.result()


class NoSuchCommand(FleetError):
    """No command was started under that id."""


class CommandUnreadable(FleetError):
    """Temporal did not answer for the command (unreachable, or refused the read)."""


async def finished_command(client: Client, command_id: str) -> FleetCommandResult:
    """The result of the command started under ``command_id`` (waiting while it runs); a
    command id never started is a one-line :class:`FleetError`."""
    handle = client.get_workflow_handle(
        command_workflow_id(command_id), result_type=FleetCommandResult
    )
    try:
        return await command_result(handle)
    except RPCError as exc:
        if exc.status is RPCStatusCode.NOT_FOUND:
            raise NoSuchCommand(f"no command {command_id}") from None
        raise CommandUnreadable(f"could not read command {command_id}: {exc.message}") from exc


class CommandRunning(FleetError):
    """The command has not answered yet; ``progress`` says how far it is."""

    def __init__(self, command_id: str, progress: CommandProgress | None) -> None:
        done = f": {progress.answered} of {progress.total} answered" if progress else ""
        super().__init__(f"command {command_id} is still running{done}")
        self.progress = progress


async def answered_command(client: Client, command_id: str) -> FleetCommandResult:
    """The result of the command started under ``command_id`` without waiting for it: a
    :class:`CommandRunning` while it runs, a one-line :class:`FleetError` for a command id
    never started (or one that failed)."""
    handle = client.get_workflow_handle(
        command_workflow_id(command_id), result_type=FleetCommandResult
    )
    try:
        described = await handle.describe()
    except RPCError as exc:
        if exc.status is RPCStatusCode.NOT_FOUND:
            raise NoSuchCommand(f"no command {command_id}") from None
        raise CommandUnreadable(f"could not read command {command_id}: {exc.message}") from exc
    if described.status is WorkflowExecutionStatus.RUNNING:
        try:
            progress: CommandProgress | None = await command_progress(client, command_id)
        except (RPCError, WorkflowQueryFailedError, WorkflowQueryRejectedError):
            progress = None
        raise CommandRunning(command_id, progress)
    return await command_result(handle)


def answers_page(
    database_url: str, result: FleetCommandResult, offset: int, limit: int
) -> list[BotAnswer]:
    """Answers ``offset`` to ``offset + limit - 1`` of ``result``, from the result itself or,
    for a stored command, from the database (blocking: call it in a thread from async code)."""
    if result.answers_ref is None:
        return result.answers[offset : offset + limit]
    return command_store.read_answers(database_url, result.answers_ref, offset, limit)


def all_answers(database_url: str, result: FleetCommandResult) -> list[BotAnswer]:
    """Every answer of ``result`` (blocking, as :func:`answers_page`)."""
    if result.answers_ref is None:
        return list(result.answers)
    return list(command_store.iter_answers(database_url, result.answers_ref))
