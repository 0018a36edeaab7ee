"""Database access for every agentfleet process: engines, sessions, schema migrations, checks.

Two backends are supported: SQLite (the embedded default, a file under ``FLEET_HOME``) and
PostgreSQL through psycopg 3 (``postgresql+psycopg://``; ``postgresql://`` and ``postgres://`` are
accepted and mean the same). The schema is owned by Alembic; the migrations ship inside the package
(``agentfleet/migrations``), so :func:`upgrade_database` works from an installed wheel.
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Insert, event, text
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import URL, Engine, create_engine, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError
from sqlalchemy.pool import NullPool, StaticPool
from sqlmodel import Session, col

from agentfleet.errors import FleetError
from agentfleet.models import AuditEvent
from agentfleet.settings import mask_url

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
"""Alembic script folder inside the installed package."""

CHECK_CONNECT_TIMEOUT_S = 3
SETTING = "FLEET_DATABASE_URL"
_EXAMPLES = "sqlite:///path/to/fleet.db or postgresql+psycopg://user@host:5432/dbname"

_engines: dict[str, Engine] = {}
_engines_lock = threading.Lock()
# Alembic keeps the running migration context in module globals (alembic.context, alembic.op):
# two migrations in one process must not interleave. Across processes env.py takes a PostgreSQL
# advisory lock.
_alembic_lock = threading.Lock()


def _parse(url: str) -> URL:
    """Parse ``url`` and point PostgreSQL URLs at psycopg 3; ``ArgumentError`` if unparsable."""
    parsed = make_url(url)
    if parsed.drivername in {"postgres", "postgresql"}:
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed


def _render(url: URL) -> str:
    return url.render_as_string(hide_password=False)


def _is_sqlite_memory(url: URL) -> bool:
    return url.database in (None, "", ":memory:")


def normalize_url(url: str) -> str:
    """The URL agentfleet connects with: ``postgres://`` and ``postgresql://`` become
    ``postgresql+psycopg://``; anything else is returned as SQLAlchemy renders it.

    Raises ``sqlalchemy.exc.ArgumentError`` for a string that is not a URL (use
    :func:`validate_database_url` for a user-facing check).
    """
    return _render(_parse(url))


def make_engine(url: str) -> Engine:
    """The process-wide engine for ``url`` (created once per URL, then cached).

    SQLite: the parent folder is created, connections may cross threads, and every connection
    runs in WAL mode with ``synchronous=NORMAL`` and foreign keys enforced. ``sqlite://`` (in
    memory) shares one connection so every session sees the same database. PostgreSQL: psycopg 3
    with pre-ping, so connections dropped by a server restart are replaced transparently.
    """
    parsed = _parse(url)
    key = _render(parsed)
    with _engines_lock:
        engine = _engines.get(key)
        if engine is None:
            engine = _create_engine(parsed)
            _engines[key] = engine
        return engine


def _create_engine(url: URL) -> Engine:
    if url.get_backend_name() != "sqlite":
        return create_engine(url, pool_pre_ping=True)
    if _is_sqlite_memory(url):
        engine = create_engine(url, connect_args={"check_same_thread": False}, poolclass=StaticPool)
    else:
        database = str(url.database)
        if not database.startswith("file:"):
            Path(database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"check_same_thread": False})
    event.listen(engine, "connect", _sqlite_pragmas)
    return engine


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
    finally:
        cursor.close()


def dispose_engine(url: str) -> None:
    """Close the pooled connections of ``url``'s cached engine and forget it (no-op if none)."""
    key = _render(_parse(url))
    with _engines_lock:
        engine = _engines.pop(key, None)
    if engine is not None:
        engine.dispose()


@contextmanager
def session_scope(url: str) -> Iterator[Session]:
    """A session on ``url`` that commits when the block ends and rolls back if it raises.

    Objects stay readable after the block (``expire_on_commit=False``); they are detached, so
    reload them in a new session to change them.
    """
    with Session(make_engine(url), expire_on_commit=False) as session:
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise


def record_once(session: Session, event: AuditEvent) -> bool:
    """Insert ``event`` unless a row with its ``idempotency_key`` exists; True if it inserted.

    Safe under retries and concurrent writers (``INSERT ... ON CONFLICT DO NOTHING`` on both
    backends): the first writer wins and later ones change nothing. On insert ``event.id`` is
    set; ``event`` itself is not added to the session. The row is committed with the session.
    """
    values = event.model_dump(exclude={"id"} if event.id is None else set())
    dialect = session.get_bind().dialect.name
    statement: Insert
    if dialect == "postgresql":
        statement = postgresql_insert(AuditEvent).on_conflict_do_nothing(
            index_elements=["idempotency_key"]
        )
    elif dialect == "sqlite":
        statement = sqlite_insert(AuditEvent).on_conflict_do_nothing(
            index_elements=["idempotency_key"]
        )
    else:
        raise FleetError(f"record_once: unsupported database backend {dialect!r}")
    inserted_id = session.exec(
        statement.values(**values).returning(col(AuditEvent.id))
    ).scalar_one_or_none()
    if inserted_id is None:
        return False
    event.id = inserted_id
    return True


def validate_database_url(url: str) -> str:
    """Check that ``url`` names a database agentfleet can use; return it normalized.

    Raises :class:`FleetError` with one line saying what is wrong and what to fix: unparsable
    URL, unsupported backend or driver, PostgreSQL refused / unreachable / slow to answer
    (3 s timeout), unknown database, rejected credentials, an SQLite path that cannot hold a
    database. Passwords never appear in the message. Nothing is created or changed.
    """
    try:
        parsed = _parse(url)
    except (ArgumentError, ValueError):
        # Not echoed: without a parse there is no telling which part is a password.
        raise FleetError(f"{SETTING}: the value is not a database URL; use {_EXAMPLES}") from None
    backend, driver = parsed.get_backend_name(), parsed.get_driver_name()
    if backend == "sqlite":
        if driver != "pysqlite":
            raise FleetError(
                f"{SETTING}: SQLite driver {driver!r} is not supported; use sqlite:///"
            )
        _check_sqlite(parsed)
    elif backend == "postgresql":
        if driver != "psycopg":
            raise FleetError(
                f"{SETTING}: PostgreSQL driver {driver!r} is not supported; "
                "use postgresql+psycopg://"
            )
        _check_postgresql(parsed)
    else:
        raise FleetError(
            f"{SETTING}: {backend!r} databases are not supported (only SQLite and PostgreSQL); "
            f"use {_EXAMPLES}"
        )
    return _render(parsed)


def _check_sqlite(url: URL) -> None:
    if _is_sqlite_memory(url) or str(url.database).startswith("file:"):
        return
    path = Path(str(url.database))
    if path.exists():
        try:
            engine = create_engine(url, poolclass=NullPool)
            with engine.connect() as connection:
                connection.execute(text("PRAGMA schema_version"))
            engine.dispose()
        except DBAPIError as exc:
            reason = str(exc.orig).splitlines()[0] if exc.orig else "unreadable"
            raise FleetError(
                f"{SETTING}: SQLite file {path} cannot be used ({reason}); "
                "point FLEET_DATABASE_URL at another file"
            ) from None
        return
    ancestor = path.parent
    while not ancestor.exists():
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise FleetError(
            f"{SETTING}: cannot create SQLite file {path}: {ancestor} is not a folder; "
            "fix FLEET_DATABASE_URL"
        )
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise FleetError(
            f"{SETTING}: cannot create SQLite file {path}: {ancestor} is not writable; "
            "fix its permissions or FLEET_DATABASE_URL"
        )


def _check_postgresql(url: URL) -> None:
    where = f"{url.host or 'localhost'}:{url.port or 5432}"
    engine = create_engine(
        url, poolclass=NullPool, connect_args={"connect_timeout": CHECK_CONNECT_TIMEOUT_S}
    )
    try:
        with engine.connect() as connection:
            schema = connection.execute(text("SELECT current_schema()")).scalar()
    except DBAPIError as exc:
        raise FleetError(_postgresql_problem(url, where, exc)) from None
    finally:
        engine.dispose()
    if schema is None:
        raise FleetError(
            f"{SETTING}: no schema of the search_path exists in database {url.database!r} at "
            f"{where}; create the schema or fix the options in FLEET_DATABASE_URL"
        )


def _postgresql_problem(url: URL, where: str, exc: DBAPIError) -> str:
    """One line for a failed PostgreSQL connection, from the server's SQLSTATE or libpq text."""
    raw = str(exc.orig) if exc.orig is not None else str(exc)
    sqlstate = getattr(exc.orig, "sqlstate", None)
    detail = _first_reason(raw)
    lowered = raw.lower()
    if sqlstate == "3D000" or ("database" in lowered and "does not exist" in lowered):
        return (
            f"{SETTING}: database {url.database!r} does not exist on PostgreSQL at {where}; "
            f"create it (createdb {url.database}) or fix FLEET_DATABASE_URL"
        )
    if sqlstate in {"28P01", "28000"} or any(
        marker in lowered
        for marker in (
            "password authentication failed",
            "no password supplied",
            "role ",
            "pg_hba.conf",
            "authentication failed",
        )
    ):
        return (
            f"{SETTING}: PostgreSQL at {where} rejected user {url.username!r} ({detail}); "
            "fix the user or password in FLEET_DATABASE_URL"
        )
    if "connection refused" in lowered:
        return (
            f"{SETTING}: cannot connect to PostgreSQL at {where} (connection refused); "
            "start it or fix FLEET_DATABASE_URL"
        )
    if "timeout expired" in lowered:
        return (
            f"{SETTING}: PostgreSQL at {where} did not answer within "
            f"{CHECK_CONNECT_TIMEOUT_S} s; check the host and firewall or fix FLEET_DATABASE_URL"
        )
    if "translate host name" in lowered or "name or service not known" in lowered:
        return (
            f"{SETTING}: cannot resolve the PostgreSQL host {url.host!r}; "
            "fix the host in FLEET_DATABASE_URL"
        )
    return (
        f"{SETTING}: cannot connect to PostgreSQL at {where} ({detail}); "
        "start it or fix FLEET_DATABASE_URL"
    )


def _first_reason(message: str) -> str:
    """The most specific line of a libpq error, without ``connection failed:`` / ``FATAL:``."""
    lines = [line.strip() for line in message.splitlines() if line.strip()]
    reason = lines[-1] if lines else "unknown error"
    for line in lines:
        if "FATAL:" in line:
            reason = line
            break
    reason = re.sub(r"^.*?FATAL:\s*", "", reason)
    reason = re.sub(r"^connection failed:\s*", "", reason)
    return reason.rstrip(".")


def alembic_config(url: str | None = None) -> Config:
    """An Alembic configuration of the packaged migrations, migrating ``url`` when given.

    Usable with any ``alembic.command`` (``history``, ``check``, ``downgrade`` ...); ``env.py``
    reads the URL from ``config.attributes["url"]`` and falls back to the ``FLEET_*`` settings.
    """
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("path_separator", "os")
    if url is not None:
        config.attributes["url"] = normalize_url(url)
    return config


def head_revision() -> str:
    """The newest migration shipped with this version of agentfleet."""
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    if head is None:
        raise FleetError("agentfleet ships no database migrations (broken install?)")
    return head


def upgrade_database(url: str) -> str:
    """Apply every pending migration to ``url``; return the revision it is now at (the head).

    Idempotent (an up-to-date database is left untouched) and safe to call from several
    processes at once on one PostgreSQL database: one migrates while the others wait, then find
    nothing to do. Creates the SQLite file and its folder if missing.
    """
    with _alembic_lock:
        command.upgrade(alembic_config(url), "head")
    revision = current_revision(url)
    if revision is None:
        raise FleetError(f"{SETTING}: migrating {mask_url(url)} left no schema revision")
    return revision


def downgrade_database(url: str, revision: str = "base") -> str | None:
    """Revert ``url`` to ``revision`` (``"base"``: drop every agentfleet table); return where it
    is now (None at base). Data in dropped tables is lost."""
    with _alembic_lock:
        command.downgrade(alembic_config(url), revision)
    return current_revision(url)


def current_revision(url: str) -> str | None:
    """The migration revision ``url`` is at; None for a database never migrated."""
    with make_engine(url).connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()
