"""The command center's brain, free of Telegram: who is asking, may they, and which command runs.

``starters/telegram/bot.py`` moves updates and replies between the Bot API and :meth:`CommandCenter.
handle_text` / :meth:`CommandCenter.handle_button`. Every command is validated by the same
validators as the CLI before anything is asked of Temporal (:mod:`.handlers`), so a bad command
gets one line of help and changes nothing; anyone not on the allow-list, or asking for more than
their role allows, gets a polite refusal that is logged and audited.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from typing import TYPE_CHECKING, Any

from agentfleet.bots.model import Skill
from agentfleet.errors import FleetError
from agentfleet.operations.operators import Operator, Permission
from starters.telegram import views
from starters.telegram.handlers import COMMANDS
from starters.telegram.replies import (
    RUN_BUTTON,
    RUN_PREFIX,
    FollowRun,
    NotAllowed,
    Reply,
    Usage,
    run_reply,
)

if TYPE_CHECKING:
    from temporalio.client import Client

    from agentfleet.bots.commands import FleetCommandResult, Targets
    from agentfleet.settings import Settings

log = logging.getLogger("agentfleet.telegram")

BUTTON = re.compile(r"^([are]):([A-Za-z0-9._-]{1,62})$")
FOLLOW_S = 3600.0
"""How long the center follows a run for its next news before it says the run still runs."""
FOLLOW_POLL_S = (0.5, 5.0)
"""A followed run is read every 0.5 s at first, then less often, at most every 5 s."""


class CommandCenter:
    """Commands for the fleet, answered for one operator at a time."""

    def __init__(self, client: Client, settings: Settings, operators: dict[int, Operator]):
        self.client = client
        self.settings = settings
        self.operators = operators
        self.url = settings.effective_database_url

    async def handle_text(
        self, user_id: int, username: str | None, text: str, key: str = ""
    ) -> list[Reply]:
        """The replies to one message. ``key`` (chat, message id and date) keys fleet commands,
        so a message handled again after a crash gets the first run's answer, not a second
        run; without one each message runs afresh."""
        words = text.strip().split()
        if not words or not words[0].startswith("/"):
            return [Reply(text="Commands start with /. Send /help for the list.")]
        name = words[0][1:].split("@", 1)[0].lower()
        operator = self.operators.get(user_id)
        if operator is None:
            return [await self._refuse(user_id, username, f"/{name}")]
        command = COMMANDS.get(name)
        if command is None:
            return [Reply(text=f"Unknown command /{name}. Send /help for the list.")]
        if not operator.may(command.permission):
            return [await self._refuse(user_id, username, f"/{name}", operator)]
        try:
            return await command.run(self, operator, words[1:], key)
        except Usage as exc:
            return [Reply(text=f"{exc} Usage: {command.usage}")]
        except NotAllowed as exc:
            return [await self._refuse(user_id, username, exc.what, operator)]
        except FleetError as exc:
            return [Reply(text=f"Nothing changed: {exc.message}")]

    async def handle_button(self, user_id: int, username: str | None, data: str) -> Reply:
        """An inline button of a content item: ``a:ID`` approve, ``r:ID`` reject, ``e:ID``
        edit (asks for the new text); or of an agent run's tool call waiting for approval:
        ``yN:RUN`` approve, ``nN:RUN`` deny (N: the approval's number in the run)."""
        operator = self.operators.get(user_id)
        run = RUN_BUTTON.match(data)
        match = BUTTON.match(data)
        if operator is None or not operator.may(Permission.DECIDE):
            what = "an agent tool approval" if run else "a content decision"
            return await self._refuse(user_id, username, what, operator)
        if run is not None:
            verdict, number, rest = run.groups()
            try:
                return await self.decide_run(operator, RUN_PREFIX + rest, number, verdict == "y")
            except FleetError as exc:
                return Reply(text=f"Nothing changed: {exc.message}")
        if match is None:
            return Reply(text="That button is not one of mine; nothing changed.")
        action, content_id = match.groups()
        if action == "e":
            return Reply(text=f"Send the new text as: /edit {content_id} <text>")
        try:
            if action == "a":
                return await self.approve(operator, content_id, "")
            return await self.reject(
                operator, content_id, f"rejected in Telegram by {operator.name}"
            )
        except FleetError as exc:
            return Reply(text=f"Nothing changed: {exc.message}")

    async def _refuse(
        self, user_id: int, username: str | None, what: str, operator: Operator | None = None
    ) -> Reply:
        who = f"{user_id}" + (f" (@{username})" if username else "")
        if operator is None:
            log.warning("refused Telegram user %s: not on the access list (%s)", who, what)
            text = (
                "Sorry, this automated bot only answers its fleet's operators. Ask an admin to "
                f"add your Telegram id {user_id} to FLEET_TELEGRAM_USERS."
            )
        else:
            log.warning("refused Telegram user %s (%s): %s needs more", who, operator.role, what)
            text = (
                f"Sorry, your role ({operator.role.value}) does not allow {what}. "
                "Send /help for what you can do."
            )
        detail = {"role": _role(operator), "username": username}
        await asyncio.to_thread(
            views.audit, self.url, "telegram.refused", str(user_id), what, detail
        )
        return Reply(text=text)

    async def fleet_command(
        self, skill: Skill, targets: Targets, args: dict[str, Any], key: str
    ) -> FleetCommandResult:
        from agentfleet.bots.commands import FleetCommand
        from clients.commands import run_command

        command = FleetCommand(
            command_id=f"tg-{skill.value}-{key}" if key else views.fresh_command_id(skill),
            skill=skill,
            args=args,
            targets=targets,
        )
        return await run_command(self.client, command)

    async def approve(self, operator: Operator, content_id: str, note: str) -> Reply:
        from agentfleet.content.model import ApproveInput

        decision = ApproveInput(approver=operator.name, note=note)
        return await self._decide(operator, content_id, "approve", decision, "Approved")

    async def reject(self, operator: Operator, content_id: str, reason: str) -> Reply:
        from agentfleet.content.model import RejectInput

        decision = RejectInput(approver=operator.name, reason=reason)
        return await self._decide(operator, content_id, "reject", decision, "Rejected")

    async def decide_run(
        self, operator: Operator, run_id: str, number: str, approved: bool
    ) -> Reply:
        """Approve or deny the tool call of run ``run_id`` that waits as approval ``number``
        (the one its button showed, never a later one); FleetError when it no longer waits."""
        from agentfleet.agents.model import ApprovalDecision
        from clients import agents

        view = await agents.show(self.client, run_id)
        pending = view.pending
        if pending is None or pending.approval_id.rsplit("-", 1)[-1] != number:
            raise FleetError(
                f"that tool call of run {run_id} no longer waits for approval (decided or "
                f"expired); the run is {view.status.value}"
            )
        decision = ApprovalDecision(
            approval_id=pending.approval_id,
            approver=operator.name,
            approved=approved,
            note="" if approved else f"denied in Telegram by {operator.name}",
        )
        await agents.decide(self.client, run_id, decision)
        verdict = "Approved" if approved else "Denied"
        return Reply(
            text=f"{verdict} {pending.tool} of run {run_id} as {operator.name}; the run goes on "
            "and its next news follows here.",
            follow=FollowRun(run_id=run_id, after=pending.approval_id),
        )

    async def follow_run(self, follow: FollowRun, timeout_s: float = FOLLOW_S) -> Reply:
        """The run's next news once there is some: its answer or end, or a tool call that
        waits for approval (other than ``follow.after``); after ``timeout_s``, that it still
        runs. Reads the run less often the longer it takes."""
        from agentfleet.agents.model import FINAL_RUN_STATES, AgentRunView, RunStatus
        from clients import agents

        def news(view: AgentRunView) -> bool:
            if view.status in FINAL_RUN_STATES:
                return True
            waiting = view.pending
            return (
                view.status is RunStatus.WAITING_APPROVAL
                and waiting is not None
                and waiting.approval_id != follow.after
            )

        deadline = time.monotonic() + timeout_s
        pause, most = FOLLOW_POLL_S
        try:
            view = await agents.show(self.client, follow.run_id)
            while not news(view) and time.monotonic() < deadline:
                await asyncio.sleep(pause)
                pause = min(most, pause * 1.5)
                view = await agents.show(self.client, follow.run_id)
        except FleetError as exc:
            return Reply(text=f"Cannot follow run {follow.run_id}: {exc.message}")
        return run_reply(view)

    async def _decide(
        self, operator: Operator, content_id: str, update: str, decision: Any, done: str
    ) -> Reply:
        """The pipeline's ``update`` with ``decision`` (a refusal raises FleetError)."""
        from clients import content

        view = await content.steer(self.client, self.url, content_id, update, decision)
        return Reply(text=f"{done} {content_id} as {operator.name}: {view.state.value}.")


def _role(operator: Operator | None) -> str:
    return operator.role.value if operator else "none"
