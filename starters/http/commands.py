"""A fleet command's answers over HTTP, one page at a time.

=============================================================  ====================================
``GET /commands/{command_id}/answers?page=1&size=50``          the command's summary and one page
                                                               of its answers (in target order)
=============================================================  ====================================

Commands start from the CLI and Telegram; this reads what one answered, small (answers in its
result) or large (answers stored in the database, :mod:`agentfleet.bots.command_store`), the
same way ``fleet command answers ID --page N --json`` does. Only callers with the operators'
token (``Authorization: Bearer``, ``FLEET_COMMAND_ANSWERS_TOKEN``) are answered; without that
setting the endpoint answers 403. A command still running is a 409 that says how far it is.
"""

from __future__ import annotations

import asyncio
import hmac
import math
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Path, Query
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, Field
from sqlalchemy.exc import SQLAlchemyError

from agentfleet.bots.commands import (
    COMMAND_ID_PATTERN,
    BatchFailure,
    BotAnswer,
    CommandSummary,
    FleetCommandResult,
)
from agentfleet.bots.model import Skill
from agentfleet.errors import FleetError, first_line
from agentfleet.settings import Settings
from clients.checkout import Checkout
from clients.commands import CommandUnreadable, NoSuchCommand, answered_command, answers_page
from starters.http.wire import problem

PAGE_SIZE = 50
MAX_PAGE_SIZE = 1000
bearer = HTTPBearer(
    auto_error=False, description="The operators' token (FLEET_COMMAND_ANSWERS_TOKEN)"
)


class CommandAnswers(BaseModel):
    """One page of a command's answers, with what the whole command answered."""

    command_id: str
    skill: Skill
    targets: str
    summary: CommandSummary
    failed_batches: list[BatchFailure] = Field(default_factory=list)
    """Batches that failed as a whole: their bots are counted failed and have no answer row."""
    elapsed_s: float
    page: int
    pages: int
    size: int
    count: int
    """Answers the command has, over every page."""
    answers: list[BotAnswer]


ANSWERS: dict[int | str, dict[str, Any]] = {
    401: problem("No token, or not the operators' token."),
    403: problem("A token, but FLEET_COMMAND_ANSWERS_TOKEN is not set: no answers over HTTP."),
    404: problem("No command of that id, a page past the last one, or answers since deleted."),
    409: problem("The command is still running (how far it is), or it failed."),
    503: problem("Temporal or the database cannot be reached."),
}


def create_router(settings: Settings, checkout: Checkout) -> APIRouter:
    """The ``/commands`` routes, reading commands through the gateway's Temporal client and
    stored answers from ``settings``' database."""
    router = APIRouter(prefix="/commands", tags=["commands"])
    url = settings.effective_database_url
    token = settings.command_answers_token

    def operator(
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
    ) -> None:
        if credentials is None:
            raise HTTPException(
                401,
                "command answers need the operators' token: Authorization: Bearer <token>",
                headers={"WWW-Authenticate": "Bearer"},
            )
        if token is None:
            raise HTTPException(
                403,
                "command answers are not served over HTTP: FLEET_COMMAND_ANSWERS_TOKEN is unset",
            )
        presented = credentials.credentials.encode()
        if not hmac.compare_digest(presented, token.get_secret_value().encode()):
            raise HTTPException(
                401, "not the operators' token", headers={"WWW-Authenticate": "Bearer"}
            )

    async def finished(command_id: str) -> FleetCommandResult:
        try:
            client = await checkout.client()
        except FleetError as exc:
            raise HTTPException(503, f"Temporal cannot be reached: {first_line(exc)}") from None
        try:
            return await answered_command(client, command_id)
        except NoSuchCommand as exc:
            raise HTTPException(404, str(exc)) from None
        except CommandUnreadable as exc:
            raise HTTPException(503, str(exc)) from None
        except FleetError as exc:  # running (with how far it is), or failed
            raise HTTPException(409, str(exc)) from None

    @router.get("/{command_id}/answers", responses=ANSWERS, dependencies=[Depends(operator)])
    async def command_answers(
        command_id: Annotated[str, Path(pattern=COMMAND_ID_PATTERN)],
        page: Annotated[int, Query(ge=1, le=1_000_000, description="Which page, from 1.")] = 1,
        size: Annotated[
            int, Query(ge=1, le=MAX_PAGE_SIZE, description="Answers per page.")
        ] = PAGE_SIZE,
    ) -> CommandAnswers:
        """The command's summary and answers ``(page - 1) * size`` on, ``size`` of them."""
        result = await finished(command_id)
        count = result.answer_count
        pages = max(1, math.ceil(count / size))
        if page > pages:
            raise HTTPException(
                404, f"page {page} is past the last one, {pages} ({size} answers a page)"
            )
        try:
            shown = await asyncio.to_thread(answers_page, url, result, (page - 1) * size, size)
        except SQLAlchemyError as exc:
            reason = first_line(exc)
            raise HTTPException(503, f"cannot read the stored answers: {reason}") from None
        if count and not shown:
            raise HTTPException(
                404,
                f"the answers of command {command_id} are no longer stored (kept "
                "FLEET_COMMAND_ANSWERS_DAYS days)",
            )
        return CommandAnswers(
            command_id=result.command_id,
            skill=result.skill,
            targets=result.targets,
            summary=result.summary,
            failed_batches=result.failed_batches,
            elapsed_s=result.elapsed_s,
            page=page,
            pages=pages,
            size=size,
            count=count,
            answers=shown,
        )

    return router
