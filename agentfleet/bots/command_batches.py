"""How a fleet command is split: the plan ``plan_command`` makes, and the batches it sends.

A command to at most ``FLEET_COMMAND_INLINE_ANSWERS`` bots is planned with its resolved bots and
answered inline, as it always was (``run_skill_batch`` per batch, the answers in the workflow).
A larger one is planned as batches that say which bots they hold without listing them when they
can: a range of names of the ``bots`` table for ``all`` and kind targets, a slice of names for
name lists and queries. Each batch is one ``answer_batch`` activity that reads its bots, calls
them, stores their answers as one row of ``command_answers`` and returns only an
:class:`~agentfleet.bots.commands.AnswerTally`.
"""

from __future__ import annotations

import math
from typing import Any

from pydantic import BaseModel, Field, model_validator

from agentfleet.bots.commands import ResolvedTargets, SummaryOptions, Targets
from agentfleet.bots.model import BotKind, Skill

MIN_BATCH = 500
"""The fewest bots one ``answer_batch`` activity answers (the last batch excepted): a built-in
bot's answer costs tens of microseconds, an activity milliseconds of the worker and server."""
MAX_BATCH = 1000
"""The most bots one ``answer_batch`` activity answers."""


def batch_size(total: int, parallel_batches: int) -> int:
    """Bots per batch of a stored command: enough that ``parallel_batches`` batches cover the
    targets, between :data:`MIN_BATCH` and :data:`MAX_BATCH`."""
    return min(MAX_BATCH, max(MIN_BATCH, math.ceil(total / parallel_batches)))


def calls_at_once(batch_bots: int, batches: int, concurrency: int, parallel_batches: int) -> int:
    """Calls a stored command's batch makes at once: the command's share of ``concurrency x
    parallel_batches`` (what an inline command has in flight at most) among the batches that
    run together, at least ``concurrency``, at most the batch's bots."""
    together = max(1, min(batches, parallel_batches))
    share = max(concurrency, concurrency * parallel_batches // together)
    return max(1, min(batch_bots, share))


class PlanCommand(BaseModel):
    command_id: str
    targets: Targets
    concurrency: int = 50
    """Unused by the plan (kept: recorded inputs carry it)."""
    parallel_batches: int = 20


class TargetBatch(BaseModel):
    """One batch of a stored command's targets: the bots of the ``bots`` table named ``first``
    to ``last`` (by name, of ``kinds`` if any) when ``names`` is empty, else ``names`` in order.
    Its answers take the positions ``position`` onwards."""

    index: int
    position: int
    bots: int
    """Targets the plan counted in it (a range read later may find a bot created since)."""
    first: str
    last: str
    names: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _bounds(self) -> TargetBatch:
        if self.names and (self.names[0], self.names[-1]) != (self.first, self.last):
            raise ValueError("a batch of names is bounded by its first and last name")
        return self


class CommandPlan(BaseModel):
    """What ``plan_command`` answers: ``resolved`` for an inline command, else ``batches``."""

    total: int
    resolved: ResolvedTargets | None = None
    batches: list[TargetBatch] = Field(default_factory=list)
    kinds: list[BotKind] = Field(default_factory=list)
    """The kinds a range batch is limited to (none: every kind)."""


class AnswerBatch(BaseModel):
    """One ``answer_batch`` activity: call ``targets``' bots (at most ``concurrency`` at once,
    each within ``per_call_timeout_s``), store their answers, return their tally."""

    command_id: str
    skill: Skill
    args: dict[str, Any] = Field(default_factory=dict)
    targets: TargetBatch
    kinds: list[BotKind] = Field(default_factory=list)
    per_call_timeout_s: float = 3.0
    concurrency: int = 50
    """Calls at once (:func:`calls_at_once`)."""
    summary: SummaryOptions = Field(default_factory=SummaryOptions)
    keep: int | None = None
    """Bots the tally names per kind of issue (None: all)."""
