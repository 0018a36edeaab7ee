"""Schema migrations, idempotent audit writes and database URL checks, on SQLite and PostgreSQL."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import func, inspect, text
from sqlalchemy.exc import StatementError
from sqlmodel import SQLModel, col, select

from agentfleet.db import (
    current_revision,
    downgrade_database,
    head_revision,
    make_engine,
    normalize_url,
    record_once,
    session_scope,
    upgrade_database,
    validate_database_url,
)
from agentfleet.errors import FleetError
from agentfleet.models import AuditEvent
from agentfleet.ports import free_port  # nothing listens on it
from tests.fixtures.db import *  # noqa: F403

PASSWORD = "s3cr3t-Pa55"


def _tables(url: str) -> set[str]:
    return set(inspect(make_engine(url)).get_table_names())


def _schema_of(url: str) -> str | None:
    """The PostgreSQL schema the URL's search_path selects (None on SQLite)."""
    engine = make_engine(url)
    if engine.dialect.name != "postgresql":
        return None
    with engine.connect() as connection:
        return connection.execute(text("SELECT current_schema()")).scalar_one()  # type: ignore[no-any-return]


def _event(key: str, **changes: object) -> AuditEvent:
    values: dict[str, object] = {
        "idempotency_key": key,
        "actor": "bot-alice",
        "kind": "payment.settled",
        "subject": "payment-31337-0xabc-0x01",
        "workflow_id": "payment-31337-0xabc-0x01",
        "detail": {"amount": "10000", "tx": "0xfeed"},
    }
    values.update(changes)
    return AuditEvent.model_validate(values)


def test_upgrade_from_empty_reaches_head_and_creates_tables(database_url: str) -> None:
    assert current_revision(database_url) is None
    assert "audit_events" not in _tables(database_url)

    revision = upgrade_database(database_url)

    assert revision == head_revision() == current_revision(database_url)
    assert {"audit_events", "alembic_version"} <= _tables(database_url)


def test_postgresql_tables_land_in_the_schema_of_the_url(postgresql_url: str) -> None:
    upgrade_database(postgresql_url)
    schema = _schema_of(postgresql_url)
    assert schema is not None and schema.startswith("test_")
    with make_engine(postgresql_url).connect() as connection:
        placed = connection.execute(
            text("SELECT table_name FROM information_schema.tables WHERE table_schema = :schema"),
            {"schema": schema},
        ).scalars()
        assert {"audit_events", "alembic_version"} <= set(placed)


def test_upgrading_twice_changes_nothing(database_url: str) -> None:
    first = upgrade_database(database_url)
    with session_scope(database_url) as session:
        assert record_once(session, _event("kept"))

    assert upgrade_database(database_url) == first
    with session_scope(database_url) as session:
        assert session.exec(select(func.count()).select_from(AuditEvent)).one() == 1


def test_models_match_migrations(migrated_database_url: str) -> None:
    engine = make_engine(migrated_database_url)
    with engine.connect() as connection:
        context = MigrationContext.configure(
            connection,
            opts={"compare_type": True, "render_as_batch": engine.dialect.name == "sqlite"},
        )
        assert compare_metadata(context, SQLModel.metadata) == []


def test_audit_event_with_same_idempotency_key_is_written_once(
    migrated_database_url: str,
) -> None:
    with session_scope(migrated_database_url) as session:
        first = _event("settled:0x01")
        assert record_once(session, first) is True
        assert first.id is not None
    with session_scope(migrated_database_url) as session:
        retry = _event("settled:0x01", actor="bot-retry", detail={"other": 1})
        assert record_once(session, retry) is False
        assert retry.id is None
        assert record_once(session, _event("settled:0x02")) is True

    with session_scope(migrated_database_url) as session:
        rows = session.exec(select(AuditEvent).order_by(col(AuditEvent.id))).all()
    assert [row.idempotency_key for row in rows] == ["settled:0x01", "settled:0x02"]
    assert rows[0].actor == "bot-alice"
    assert rows[0].detail == {"amount": "10000", "tx": "0xfeed"}


def test_audit_event_time_reads_back_as_aware_utc(migrated_database_url: str) -> None:
    paris_noon = datetime(2026, 6, 1, 12, 0, tzinfo=timezone(timedelta(hours=2)))
    with session_scope(migrated_database_url) as session:
        record_once(session, _event("timed", occurred_at=paris_noon))
    with session_scope(migrated_database_url) as session:
        stored = session.exec(select(AuditEvent)).one().occurred_at
    assert stored == paris_noon
    assert stored.tzinfo is UTC


def test_audit_event_with_naive_time_is_refused(migrated_database_url: str) -> None:
    with (
        pytest.raises(StatementError, match="naive datetime") as refused,
        session_scope(migrated_database_url) as session,
    ):
        record_once(session, _event("naive", occurred_at=datetime(2026, 6, 1, 12, 0)))
    assert isinstance(refused.value.orig, ValueError)
    with session_scope(migrated_database_url) as session:
        assert session.exec(select(AuditEvent)).all() == []


def test_session_scope_rolls_back_when_the_block_raises(migrated_database_url: str) -> None:
    with pytest.raises(RuntimeError), session_scope(migrated_database_url) as session:
        session.add(_event("rolled-back"))
        session.flush()
        raise RuntimeError("boom")
    with session_scope(migrated_database_url) as session:
        assert session.exec(select(AuditEvent)).all() == []


def test_downgrade_to_base_then_upgrade_again(database_url: str) -> None:
    upgrade_database(database_url)

    assert downgrade_database(database_url, "base") is None
    assert "audit_events" not in _tables(database_url)

    assert upgrade_database(database_url) == head_revision()
    assert "audit_events" in _tables(database_url)


def test_concurrent_upgrades_of_one_postgresql_schema_both_succeed(postgresql_url: str) -> None:
    start = threading.Barrier(2)
    results: list[str] = []
    errors: list[BaseException] = []

    def upgrade() -> None:
        start.wait()
        try:
            results.append(upgrade_database(postgresql_url))
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=upgrade, daemon=True) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert errors == []
    assert results == [head_revision(), head_revision()]


def test_concurrent_upgrades_from_two_processes_both_succeed(postgresql_url: str) -> None:
    go_at = time.time() + 3.0
    script = (
        "import sys, time\n"
        "from agentfleet.db import upgrade_database\n"
        "time.sleep(max(0.0, float(sys.argv[2]) - time.time()))\n"
        "print(upgrade_database(sys.argv[1]))\n"
    )
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", script, postgresql_url, str(go_at)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=Path(__file__).resolve().parents[1],
        )
        for _ in range(2)
    ]
    outcomes = [process.communicate(timeout=60) for process in processes]

    for process, (stdout, stderr) in zip(processes, outcomes, strict=True):
        assert process.returncode == 0, stderr
        assert stdout.strip() == head_revision()
    assert current_revision(postgresql_url) == head_revision()


def _validation_error(url: str) -> str:
    with pytest.raises(FleetError) as caught:
        validate_database_url(url)
    message = str(caught.value)
    assert "\n" not in message
    assert PASSWORD not in message
    assert message.startswith("FLEET_DATABASE_URL: ")
    return message


def test_validate_accepts_a_reachable_database(database_url: str) -> None:
    assert validate_database_url(database_url) == normalize_url(database_url)


def test_validate_rewrites_plain_postgresql_urls_to_psycopg() -> None:
    url = "postgres://postgres@127.0.0.1:5432/test"
    assert validate_database_url(url) == "postgresql+psycopg://postgres@127.0.0.1:5432/test"


def test_validate_rejects_garbage_url() -> None:
    message = _validation_error(f"not a url:{PASSWORD}")
    assert "is not a database URL" in message


def test_validate_rejects_unparsable_port_without_leaking_password() -> None:
    message = _validation_error(f"postgresql://fleet:{PASSWORD}@db.example:port/fleet")
    assert "is not a database URL" in message


def test_validate_rejects_unsupported_backend() -> None:
    message = _validation_error(f"mysql://root:{PASSWORD}@127.0.0.1:3306/fleet")
    assert "'mysql' databases are not supported" in message


def test_validate_reports_refused_postgresql_connection() -> None:
    port = free_port()
    message = _validation_error(f"postgresql://postgres:{PASSWORD}@127.0.0.1:{port}/test")
    assert message == (
        f"FLEET_DATABASE_URL: cannot connect to PostgreSQL at 127.0.0.1:{port} "
        "(connection refused); start it or fix FLEET_DATABASE_URL"
    )


def test_validate_reports_unknown_postgresql_database() -> None:
    message = _validation_error(
        f"postgresql+psycopg://postgres:{PASSWORD}@127.0.0.1:5432/no_such_fleet_db"
    )
    assert "database 'no_such_fleet_db' does not exist" in message
    assert "createdb no_such_fleet_db" in message


def test_validate_reports_rejected_postgresql_user() -> None:
    message = _validation_error(
        f"postgresql+psycopg://no_such_fleet_user:{PASSWORD}@127.0.0.1:5432/test"
    )
    assert "rejected user 'no_such_fleet_user'" in message
    assert "fix the user or password" in message


def test_validate_reports_sqlite_path_under_a_file(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    message = _validation_error(f"sqlite:///{blocker / 'fleet.db'}")
    assert "is not a folder" in message
    assert not (blocker / "fleet.db").exists()


def test_validate_reports_sqlite_file_that_is_not_a_database(tmp_path: Path) -> None:
    bogus = tmp_path / "fleet.db"
    bogus.write_bytes(b"definitely not sqlite" * 100)
    message = _validation_error(f"sqlite:///{bogus}")
    assert "not a database" in message
