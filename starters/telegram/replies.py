"""What the command center says back: a :class:`Reply` (text, inline buttons, a file) and how
fleet-command answers become one, summarised past ``FLEET_TELEGRAM_MAX_ROWS`` rows (a large
command's stored answers: the summary and its first :data:`FIRST_ROWS` answers)."""

from __future__ import annotations

import csv
import io
import json
import re
from typing import TYPE_CHECKING

from pydantic import BaseModel, Field

from agentfleet.content.model import InlineButton, approval_buttons

if TYPE_CHECKING:
    from agentfleet.agents.model import AgentRunView
    from agentfleet.bots.commands import BotAnswer, FleetCommandResult
    from agentfleet.models import ContentItem

DISCLOSURE = (
    "This is agentfleet's command center, an automated bot: it answers commands from its "
    "operators and never pretends to be a person."
)
FIRST_ROWS = 5
"""Rows a summarised answer shows before the rest."""
MAX_TEXT = 3800
"""Stay under Telegram's 4096 characters per message."""
BUTTON_DATA_MAX = 64
"""Telegram carries at most 64 bytes of callback data per button."""
RUN_BUTTON = re.compile(r"^([yn])([0-9]{1,6}):([a-z0-9-]{1,60})$")
"""An agent run's approval button: ``y``/``n`` (approve / deny), the approval's number in the
run, the run id without its ``agent-`` prefix."""
RUN_PREFIX = "agent-"


class Attachment(BaseModel):
    filename: str
    content: str


class FollowRun(BaseModel):
    """An agent run the command center follows after a reply: its next news (the answer, the
    end, or a tool call waiting for approval) comes as another message in the same chat."""

    run_id: str
    after: str | None = None
    """An approval just decided: the run still showing it as waiting is not news."""


class Reply(BaseModel):
    """One message back to the chat: text, optional inline buttons (rows), optional file, and
    optionally a run to follow once it is sent."""

    text: str
    buttons: list[list[InlineButton]] = Field(default_factory=list)
    attachment: Attachment | None = None
    follow: FollowRun | None = None


class Usage(Exception):
    """A malformed command: the reply is its one line of help."""


class NotAllowed(Exception):
    """More than the operator's role allows (``what``): a refusal, logged and audited; nothing
    changed."""

    def __init__(self, what: str) -> None:
        super().__init__(what)
        self.what = what


def table_reply(
    headline: str, rows: list[list[str]], header: list[str], stem: str, max_rows: int
) -> Reply:
    """The headline and the table in the message, or, past ``max_rows`` rows
    (``FLEET_TELEGRAM_MAX_ROWS``), the headline with the first rows and the whole table as
    ``stem.csv``."""
    lines = [headline]
    shown = rows if len(rows) <= max_rows else rows[: min(FIRST_ROWS, max_rows)]
    lines += ["  ".join(row) for row in shown]
    attachment = None
    if len(rows) > max_rows:
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        writer.writerow(header)
        writer.writerows(rows)
        attachment = Attachment(filename=f"{stem}.csv", content=buffer.getvalue())
        lines.append(f"... and {len(rows) - len(shown)} more: the full table is attached.")
    text = "\n".join(lines)
    if len(text) > MAX_TEXT:
        text = text[: MAX_TEXT - 3] + "..."
    return Reply(text=text, attachment=attachment)


def result_reply(
    result: FleetCommandResult, max_rows: int, first: list[BotAnswer] | None = None
) -> Reply:
    """A fleet command's answer: the summary, then its rows (:func:`table_reply`); for a
    stored command, the summary, ``first`` (its first answers, read from the database) and
    where the rest are."""
    from agentfleet.bots.commands import describe_answer

    summary = result.summary
    headline = (
        f"{result.skill.value} to {result.targets}: {summary.ok} ok, {summary.failed} failed, "
        f"{summary.skipped} skipped in {result.elapsed_s:.2f} s"
    )
    forecast = summary.forecast
    if forecast is not None:
        lead = forecast.direction.value if forecast.direction else "no majority"
        headline += (
            f"\nmean {forecast.mean:,.4f}, median {forecast.median:,.4f}, spread "
            f"{forecast.spread:,.4f}; agreement {forecast.agreement:.0%} {lead} "
            f"({forecast.up} up, {forecast.down} down, {forecast.flat} flat)"
        )
    performance = summary.performance
    if performance is not None and performance.hit_rate is not None:
        headline += f"\nmean hit rate {performance.hit_rate:.0%} over {performance.bots} bots"
    stored = result.answers_ref is not None
    answers = (first or [])[:FIRST_ROWS] if stored else result.answers
    rows = [
        [
            answer.name,
            answer.status,
            describe_answer(result.skill, answer.data)
            if answer.ok
            else (answer.error or answer.outcome.value),
        ]
        for answer in answers
    ]
    if not stored:
        if not rows:
            headline += "\nno bot matched"
        return table_reply(headline, rows, ["bot", "status", "answer"], result.command_id, max_rows)
    lines = [headline, *("  ".join(row) for row in rows)]
    more = result.answer_count - len(rows)
    if more > 0:
        lines.append(f"... and {more} more: /answers {result.command_id}")
    text = "\n".join(lines)
    return Reply(text=text if len(text) <= MAX_TEXT else text[: MAX_TEXT - 3] + "...")


def answer_rows(result: FleetCommandResult, answers: list[BotAnswer]) -> list[str]:
    """One line per answer: the bot, its status, its answer (or why it has none)."""
    from agentfleet.bots.commands import describe_answer

    return [
        "  ".join(
            [
                answer.name,
                answer.status,
                describe_answer(result.skill, answer.data)
                if answer.ok
                else (answer.error or answer.outcome.value),
            ]
        )
        for answer in answers
    ]


def answers_page_reply(
    result: FleetCommandResult, page: int, size: int, answers: list[BotAnswer]
) -> Reply:
    """Page ``page`` (``size`` answers a page) of a command's answers, and the next page's
    command."""
    pages = max(1, -(-result.answer_count // size))
    lines = [
        f"{result.skill.value} to {result.targets}, page {page} of {pages} "
        f"({result.answer_count} answers):",
        *answer_rows(result, answers),
    ]
    if page < pages:
        lines.append(f"next: /answers {result.command_id} {page + 1}")
    text = "\n".join(lines)
    return Reply(text=text if len(text) <= MAX_TEXT else text[: MAX_TEXT - 3] + "...")


def pending_replies(items: list[ContentItem], max_rows: int) -> list[Reply]:
    """A count, then each item awaiting approval (up to ``max_rows``) with its approve,
    reject and edit buttons."""
    if not items:
        return [Reply(text="Nothing awaits approval.")]
    replies = [Reply(text=f"{len(items)} item(s) await approval:")]
    for item in items[:max_rows]:
        text = f"{item.content_id} by {item.bot} to {item.channel}:\n\n{item.text or item.brief}"
        replies.append(Reply(text=text[:MAX_TEXT], buttons=approval_buttons(item.content_id)))
    return replies


def run_buttons(run_id: str, approval_id: str) -> list[list[InlineButton]]:
    """Approve / Deny for the tool call ``approval_id`` of run ``run_id`` (the command center's
    ``y``/``n`` callbacks); none when the run id does not fit Telegram's 64 bytes."""
    number = approval_id.rsplit("-", 1)[-1]
    if not run_id.startswith(RUN_PREFIX) or not number.isdigit():
        return []
    buttons = []
    for verdict, label in (("y", "Approve"), ("n", "Deny")):
        data = f"{verdict}{number}:{run_id.removeprefix(RUN_PREFIX)}"
        if len(data.encode()) > BUTTON_DATA_MAX or not RUN_BUTTON.match(data):
            return []
        buttons.append(InlineButton(text=label, data=data))
    return [buttons]


def _spent(view: AgentRunView) -> str:
    from agentfleet.agents.model import fusd

    line = (
        f"model calls: {view.model_calls}, tokens: {view.input_tokens} in / "
        f"{view.output_tokens} out ({fusd(view.token_units)} fUSD), purchases: "
        f"{fusd(view.purchase_units)} fUSD"
    )
    if view.posts:
        line += f"; submitted for approval: {', '.join(view.posts)}"
    return line


def run_reply(view: AgentRunView) -> Reply:
    """What a followed run says next: its answer, how it ended, or the tool call that waits
    (with Approve / Deny buttons)."""
    from agentfleet.agents.model import FINAL_RUN_STATES, RunStatus

    if view.status is RunStatus.WAITING_APPROVAL and view.pending is not None:
        ask = view.pending
        arguments = json.dumps(ask.arguments, default=str)[:600]
        buttons = run_buttons(view.run_id, ask.approval_id)
        text = (
            f"Run {view.run_id} of {view.bot} waits for approval of {ask.tool} {arguments}: "
            f"{ask.why}. Expires {ask.expires_at:%Y-%m-%d %H:%M} UTC."
        )
        if not buttons:
            text += " The run id is too long for Telegram's buttons: decide it with `fleet agent`."
        return Reply(text=text[:MAX_TEXT], buttons=buttons)
    if view.status is RunStatus.COMPLETED:
        head = f"{view.bot} answered (run {view.run_id}):"
        tail = f"\n\n{_spent(view)}"
        body = (view.answer or "").strip() or "(no text)"
        room = MAX_TEXT - len(head) - len(tail) - 2
        if len(body) > room:
            body = body[: room - 3] + "..."
        return Reply(text=f"{head}\n\n{body}{tail}")
    if view.status not in FINAL_RUN_STATES:
        return Reply(
            text=f"Run {view.run_id} of {view.bot} is still {view.status.value}; `fleet agent "
            f"show {view.run_id}` follows it. So far: {_spent(view)}"
        )
    text = f"Run {view.run_id} of {view.bot} ended {view.status.value}: {view.reason or '-'}"
    return Reply(text=f"{text}\n{_spent(view)}"[:MAX_TEXT])
