"""What fleet commands read and write in the database: their targets (the ``bots`` table) and a
large command's answers (the ``command_answers`` table, one row per batch).

Reads use plain SQL statements, not ORM objects: a command to 10,000 bots reads 10,000 rows.
A page of answers is written once: a second write of the same command run and batch (a retried
activity) changes nothing, and the first one's answers are what everyone reads.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import Any

from pydantic import TypeAdapter, ValidationError
from sqlalchemy import delete, func, select
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Connection

from agentfleet import db
from agentfleet.bots.command_batches import TargetBatch
from agentfleet.bots.commands import AnswersRef, BotAnswer, ResolvedTargets, Targets
from agentfleet.bots.model import BotKind, BotRef
from agentfleet.errors import FleetError
from agentfleet.models import BotRecord, CommandAnswerPage, utcnow

NAMES_PER_QUERY = 500
"""Names per ``IN (...)`` clause (far below every backend's parameter limit)."""
ANSWERS = TypeAdapter(list[BotAnswer])
BOTS = BotRecord.__table__  # type: ignore[attr-defined]
PAGES = CommandAnswerPage.__table__  # type: ignore[attr-defined]
BOT_COLUMNS = (BOTS.c.name, BOTS.c.kind, BOTS.c.status, BOTS.c.owner, BOTS.c.params, BOTS.c.reason)


def bot_of(row: Any) -> BotRef | None:
    """A ``bots`` row (of :data:`BOT_COLUMNS`) as a bot to call; None for a row a newer version
    wrote (kind or status unknown here)."""
    name, kind, status, owner, params, _ = row
    try:
        return BotRef(name=name, kind=kind, status=status, owner=owner, params=params or {})
    except ValidationError:
        return None


def _rows_named(connection: Connection, names: Sequence[str]) -> dict[str, Any]:
    rows: dict[str, Any] = {}
    for start in range(0, len(names), NAMES_PER_QUERY):
        chunk = names[start : start + NAMES_PER_QUERY]
        for row in connection.execute(select(*BOT_COLUMNS).where(BOTS.c.name.in_(chunk))):
            rows[row.name] = row
    return rows


def _kind_filter(kinds: Sequence[BotKind]) -> list[Any]:
    return [BOTS.c.kind.in_([kind.value for kind in kinds])] if kinds else []


def target_names(url: str, targets: Targets) -> list[str]:
    """The names ``all`` or kind targets reach, by name."""
    statement = select(BOTS.c.name).where(*_kind_filter(targets.kinds)).order_by(BOTS.c.name)
    with db.make_engine(url).connect() as connection:
        return list(connection.execute(statement).scalars())


def resolve(url: str, targets: Targets, names: Sequence[str] | None) -> ResolvedTargets:
    """The bots ``targets`` reach (``names`` when given, in their order, else every bot or the
    targets' kinds by name) and the names that are no bot."""
    resolved = ResolvedTargets()
    with db.make_engine(url).connect() as connection:
        if names is not None:
            wanted = list(dict.fromkeys(names))
            found = _rows_named(connection, wanted)
            rows = [found[name] for name in wanted if name in found]
            resolved.unknown = [name for name in wanted if name not in found]
        else:
            statement = (
                select(*BOT_COLUMNS).where(*_kind_filter(targets.kinds)).order_by(BOTS.c.name)
            )
            rows = list(connection.execute(statement))
    for row in rows:
        bot = bot_of(row)
        if bot is None:
            resolved.unknown.append(row.name)
            continue
        resolved.bots.append(bot)
        if row.reason:
            resolved.reasons[row.name] = row.reason
    return resolved


def batch_targets(
    url: str, batch: TargetBatch, kinds: Sequence[BotKind]
) -> list[tuple[str, Any | None]]:
    """The targets of ``batch`` in answer order, each a name and its ``bots`` row (None: no such
    bot): its names, or the bots named ``first`` to ``last`` (of ``kinds``) as the table holds
    them now."""
    with db.make_engine(url).connect() as connection:
        if batch.names:
            found = _rows_named(connection, batch.names)
            return [(name, found.get(name)) for name in batch.names]
        statement = (
            select(*BOT_COLUMNS)
            .where(BOTS.c.name >= batch.first, BOTS.c.name <= batch.last, *_kind_filter(kinds))
            .order_by(BOTS.c.name)
        )
        return [(row.name, row) for row in connection.execute(statement)]


def write_page(
    url: str, command_id: str, run_id: str, batch: int, answers: bytes, count: int
) -> bool:
    """Store one batch's answers (``answers``: a JSON array of ``count`` :data:`AnswerRow`)
    unless that batch of that run is stored; True if this wrote."""
    values = {
        "command_id": command_id,
        "run_id": run_id,
        "batch": batch,
        "bots": count,
        "answers": answers.decode(),
        "created_at": utcnow(),
    }
    engine = db.make_engine(url)
    dialect = engine.dialect.name
    if dialect == "postgresql":
        statement: Any = postgresql_insert(PAGES).on_conflict_do_nothing()
    elif dialect == "sqlite":
        statement = sqlite_insert(PAGES).on_conflict_do_nothing()
    else:
        raise FleetError(f"command answers: unsupported database backend {dialect!r}")
    with engine.begin() as connection:
        return bool(connection.execute(statement.values(**values)).rowcount == 1)


def read_page(url: str, command_id: str, run_id: str, batch: int) -> list[BotAnswer] | None:
    """One stored batch's answers; None when that batch is not stored."""
    statement = select(PAGES.c.answers).where(
        PAGES.c.command_id == command_id, PAGES.c.run_id == run_id, PAGES.c.batch == batch
    )
    with db.make_engine(url).connect() as connection:
        text = connection.execute(statement).scalar_one_or_none()
    return None if text is None else ANSWERS.validate_json(text)


def _ref_filter(ref: AnswersRef) -> list[Any]:
    return [PAGES.c.command_id == ref.command_id, PAGES.c.run_id == ref.run_id]


def read_answers(url: str, ref: AnswersRef, offset: int, limit: int) -> list[BotAnswer]:
    """Stored answers ``offset`` to ``offset + limit - 1`` (in target order, batches that
    failed as a whole left out); only the batches that hold them are read."""
    with db.make_engine(url).connect() as connection:
        sizes = connection.execute(
            select(PAGES.c.batch, PAGES.c.bots).where(*_ref_filter(ref)).order_by(PAGES.c.batch)
        ).all()
        starts: dict[int, int] = {}
        start = 0
        for batch, bots in sizes:
            if start < offset + limit and start + bots > offset:
                starts[batch] = start
            start += bots
        if not starts:
            return []
        pages = connection.execute(
            select(PAGES.c.batch, PAGES.c.answers)
            .where(*_ref_filter(ref), PAGES.c.batch.in_(list(starts)))
            .order_by(PAGES.c.batch)
        ).all()
    answers: list[BotAnswer] = []
    for batch, text in pages:
        first = starts[batch]
        page = ANSWERS.validate_json(text)
        answers += page[max(0, offset - first) : max(0, offset + limit - first)]
    return answers


def iter_answers(url: str, ref: AnswersRef) -> Iterator[BotAnswer]:
    """Every stored answer of ``ref``, in target order, one batch read at a time."""
    with db.make_engine(url).connect() as connection:
        batches = list(
            connection.execute(
                select(PAGES.c.batch).where(*_ref_filter(ref)).order_by(PAGES.c.batch)
            ).scalars()
        )
    for batch in batches:
        yield from read_page(url, ref.command_id, ref.run_id, batch) or []


def stored_count(url: str, ref: AnswersRef) -> int:
    statement = select(func.coalesce(func.sum(PAGES.c.bots), 0)).where(*_ref_filter(ref))
    with db.make_engine(url).connect() as connection:
        return int(connection.execute(statement).scalar_one())


def prune(url: str, before: datetime) -> int:
    """Delete the answers stored before ``before``; how many batches went."""
    with db.make_engine(url).begin() as connection:
        result = connection.execute(delete(PAGES).where(PAGES.c.created_at < before))
        return int(result.rowcount)
