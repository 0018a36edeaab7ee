"""Alembic environment for agentfleet, used by ``agentfleet.db`` and by the ``alembic`` CLI.

The database is ``config.attributes["url"]`` when ``agentfleet.db`` runs the migration, else
``sqlalchemy.url`` from ``alembic.ini``, else the ``FLEET_*`` settings (``FLEET_DATABASE_URL`` or
the SQLite file under ``FLEET_HOME``). On PostgreSQL the whole upgrade runs in one transaction
that first takes an advisory lock for the target schema, so concurrent upgrades serialize and the
later ones find nothing left to do.
"""

from __future__ import annotations

import logging
import re
import zlib
from logging.config import fileConfig
from typing import Any, Literal

from alembic import context
from alembic.autogenerate.api import AutogenContext
from alembic.operations.ops import MigrationScript
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Connection
from sqlalchemy.types import TypeDecorator
from sqlmodel import SQLModel

import agentfleet.models  # noqa: F401  (registers the tables on SQLModel.metadata)
from agentfleet.db import make_engine, normalize_url
from agentfleet.settings import get_settings

config = context.config
target_metadata = SQLModel.metadata
log = logging.getLogger("alembic.env.agentfleet")

MIGRATION_LOCK_CLASS = 0x466C6565  # "Flee": first key of pg_advisory_xact_lock(int, int)

if config.config_file_name is not None:
    fileConfig(config.config_file_name, disable_existing_loggers=False)


def _database_url() -> str:
    url = config.attributes.get("url") or config.get_main_option("sqlalchemy.url")
    return normalize_url(url or get_settings().effective_database_url)


def _render_item(type_: str, obj: Any, autogen_context: AutogenContext) -> str | Literal[False]:
    """Render our TypeDecorators as their plain SQLAlchemy type, so migrations never import
    application code, and JSONB the same whichever backend autogenerate compared against."""
    if type_ != "type":
        return False
    if isinstance(obj, TypeDecorator):
        return f"sa.{obj.impl_instance!r}"
    if isinstance(obj, JSONB):
        autogen_context.imports.add("from sqlalchemy.dialects import postgresql")
        return "postgresql.JSONB()"
    return False


def _number_revisions(
    migration_context: MigrationContext, revision: Any, directives: list[MigrationScript]
) -> None:
    """Give new revisions sequential ids (0001, 0002 ...) unless ``--rev-id`` was given, and
    write nothing when autogenerate found no change."""
    if not directives:
        return
    script = directives[0]
    cli_args = getattr(config, "cmd_opts", None)
    if getattr(cli_args, "autogenerate", False) and script.upgrade_ops_list[-1].is_empty():
        directives[:] = []
        log.info("No changes in schema detected; no revision written.")
        return
    if getattr(cli_args, "rev_id", None):
        return
    scripts = ScriptDirectory.from_config(config)
    numbers = [
        int(rev.revision) for rev in scripts.walk_revisions() if re.fullmatch(r"\d+", rev.revision)
    ]
    script.rev_id = f"{max(numbers, default=0) + 1:04d}"


def _configure(**kwargs: Any) -> None:
    context.configure(
        target_metadata=target_metadata,
        render_item=_render_item,
        process_revision_directives=_number_revisions,
        compare_type=True,
        **kwargs,
    )


def _lock_schema(connection: Connection) -> None:
    """Serialize migrations of one PostgreSQL schema across processes until the commit."""
    schema = connection.execute(text("SELECT current_schema()")).scalar() or ""
    key = zlib.crc32(schema.encode()) - 2**31
    connection.execute(
        text("SELECT pg_advisory_xact_lock(:cls, :key)"),
        {"cls": MIGRATION_LOCK_CLASS, "key": key},
    )


def run_migrations_offline() -> None:
    url = _database_url()
    _configure(url=url, literal_binds=True, render_as_batch=url.startswith("sqlite"))
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    engine = make_engine(_database_url())
    is_sqlite = engine.dialect.name == "sqlite"
    with engine.connect() as connection:
        _configure(connection=connection, render_as_batch=is_sqlite)
        with context.begin_transaction():
            if connection.dialect.name == "postgresql":
                _lock_schema(connection)
            context.run_migrations()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
