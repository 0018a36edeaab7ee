"""Shared intelligence: a bot shares a pattern it sees (a regime on a symbol, with a
confidence), bots of its kind check it on their own data, and the fleet records how often it
held. A pattern goes to a first wave of bots; only if enough of them confirm it is it
broadcast to the rest (a pattern that fails validation is not spread further).

Messages for ``PatternShareWorkflow`` and its activities, and the SQL side (``patterns``,
``pattern_validations``: one row per bot and pattern, so a repeated broadcast never counts a
bot twice).
"""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, Field
from sqlalchemy.exc import IntegrityError
from sqlmodel import col, select

from agentfleet.bots.model import BotRef, Pattern
from agentfleet.db import session_scope
from agentfleet.models import PatternRecord, PatternValidation, utcnow


class PatternStatus(StrEnum):
    VALIDATING = "validating"
    VALIDATED = "validated"
    REJECTED = "rejected"


class ShareOrder(BaseModel):
    """The input of ``PatternShareWorkflow`` (``fleet learn share``)."""

    pattern_id: str
    source: str
    symbol: str | None = None
    """None: the source bot's own symbol."""
    claim: Pattern | None = None
    """A pattern to share in the source's name instead of asking it (operators, tests)."""
    first_wave: int = Field(default=3, ge=1, le=1000)
    min_success: float = Field(default=0.5, ge=0, le=1)
    """Share of the first wave that must confirm the pattern before it goes to everyone."""


class PatternTargets(BaseModel):
    source: BotRef
    others: list[BotRef]
    """Active bots of the source's kind, the source left out, in a stable order."""


class Verdict(BaseModel):
    bot: str
    holds: bool
    confidence: float | None = None
    error: str | None = None


class ValidationWave(BaseModel):
    pattern_id: str
    verdicts: list[Verdict]


class PatternView(BaseModel):
    pattern_id: str
    source: str
    pattern: Pattern | None = None
    status: PatternStatus = PatternStatus.VALIDATING
    asked: int = 0
    holds: int = 0
    success_rate: float | None = None
    not_reached: list[str] = Field(default_factory=list)
    """Bots not asked because the pattern failed its first wave."""


def store_pattern(url: str, pattern_id: str, source: str, pattern: Pattern) -> None:
    with session_scope(url) as session:
        if session.get(PatternRecord, pattern_id) is None:
            session.add(
                PatternRecord(
                    pattern_id=pattern_id,
                    source=source,
                    symbol=pattern.symbol,
                    regime=pattern.regime,
                    confidence=pattern.confidence,
                    status=PatternStatus.VALIDATING.value,
                )
            )
            session.commit()


def record_wave(url: str, wave: ValidationWave) -> tuple[int, int]:
    """Each verdict once (a retried wave finds its rows); the pattern's totals: (asked, holds)."""
    for verdict in wave.verdicts:
        with session_scope(url) as session:
            session.add(
                PatternValidation(
                    pattern_id=wave.pattern_id,
                    bot=verdict.bot,
                    holds=verdict.holds,
                    confidence=verdict.confidence,
                    error=verdict.error,
                )
            )
            try:
                session.commit()
            except IntegrityError:
                session.rollback()
    with session_scope(url) as session:
        rows = session.exec(
            select(PatternValidation).where(PatternValidation.pattern_id == wave.pattern_id)
        ).all()
        asked = sum(1 for r in rows if r.error is None)
        holds = sum(1 for r in rows if r.holds and r.error is None)
        record = session.get(PatternRecord, wave.pattern_id)
        if record is not None:
            record.asked, record.holds = asked, holds
            record.success_rate = holds / asked if asked else None
            record.updated_at = utcnow()
            session.add(record)
            session.commit()
        return asked, holds


def set_status(url: str, pattern_id: str, status: PatternStatus) -> None:
    with session_scope(url) as session:
        record = session.get(PatternRecord, pattern_id)
        if record is not None:
            record.status = status.value
            record.updated_at = utcnow()
            session.add(record)
            session.commit()


def list_patterns(url: str, limit: int = 50) -> list[PatternRecord]:
    with session_scope(url) as session:
        query = select(PatternRecord).order_by(col(PatternRecord.created_at).desc()).limit(limit)
        return list(session.exec(query).all())


def validations(url: str, pattern_id: str) -> list[PatternValidation]:
    with session_scope(url) as session:
        query = select(PatternValidation).where(PatternValidation.pattern_id == pattern_id)
        return list(session.exec(query.order_by(col(PatternValidation.bot))).all())
