"""What the command center says back: a :class:`Reply` (text, inline buttons, a file) and how
fleet-command answers become one, summarised past :data:`MAX_ROWS` rows."""

from __future__ import annotations

import csv
import io
from typing import TYPE_CHECKING

from pydantic import BaseModel, Field

from agentfleet.content.model import InlineButton, approval_buttons

if TYPE_CHECKING:
    from agentfleet.bots.commands import FleetCommandResult
    from agentfleet.models import ContentItem

DISCLOSURE = (
    "This is agentfleet's command center, an automated bot: it answers commands from its "
    "operators and never pretends to be a person."
)
MAX_ROWS = 20
"""Answers with more rows than this are summarised, with the full table as a file."""
MAX_TEXT = 3800
"""Stay under Telegram's 4096 characters per message."""


class Attachment(BaseModel):
    filename: str
    content: str


class Reply(BaseModel):
    """One message back to the chat: text, optional inline buttons (rows), optional file."""

    text: str
    buttons: list[list[InlineButton]] = Field(default_factory=list)
    attachment: Attachment | None = None


class Usage(Exception):
    """A malformed command: the reply is its one line of help."""


class NotAllowed(Exception):
    """More than the operator's role allows (``what``): a refusal, logged and audited; nothing
    changed."""

    def __init__(self, what: str) -> None:
        super().__init__(what)
        self.what = what


def table_reply(headline: str, rows: list[list[str]], header: list[str], stem: str) -> Reply:
    """The headline and the table in the message, or, past :data:`MAX_ROWS`, the headline with
    the first rows and the whole table as ``stem.csv``."""
    lines = [headline]
    shown = rows if len(rows) <= MAX_ROWS else rows[:5]
    lines += ["  ".join(row) for row in shown]
    attachment = None
    if len(rows) > MAX_ROWS:
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


def result_reply(result: FleetCommandResult) -> Reply:
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
    rows = [
        [
            answer.name,
            answer.status,
            describe_answer(result.skill, answer.data)
            if answer.ok
            else (answer.error or answer.outcome.value),
        ]
        for answer in result.answers
    ]
    if not rows:
        headline += "\nno bot matched"
    return table_reply(headline, rows, ["bot", "status", "answer"], result.command_id)


def pending_replies(items: list[ContentItem]) -> list[Reply]:
    """A count, then each item awaiting approval (up to :data:`MAX_ROWS`) with its approve,
    reject and edit buttons."""
    if not items:
        return [Reply(text="Nothing awaits approval.")]
    replies = [Reply(text=f"{len(items)} item(s) await approval:")]
    for item in items[:MAX_ROWS]:
        text = f"{item.content_id} by {item.bot} to {item.channel}:\n\n{item.text or item.brief}"
        replies.append(Reply(text=text[:MAX_TEXT], buttons=approval_buttons(item.content_id)))
    return replies
