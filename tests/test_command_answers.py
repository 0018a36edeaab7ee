"""Fleet commands past ``FLEET_COMMAND_INLINE_ANSWERS`` bots, on the real dev server, SQLite and
PostgreSQL: their answers are stored in ``command_answers`` (once, whatever the retries), the
result carries the summary and where the answers are, and the CLI and the Telegram command
center page them.

The threshold is lowered through its setting where a test needs a stored command with few bots;
one test sends a command to more bots than a result could carry inline (Temporal's 2 MB).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import func, insert, select, text, update
from temporalio import activity
from temporalio.client import Client
from temporalio.exceptions import ApplicationError
from temporalio.worker import Worker

from activities.skills import SkillActivities
from agentfleet import db, taskqueues
from agentfleet.bots.command_batches import AnswerBatch, batch_size
from agentfleet.bots.command_store import ANSWERS, BOTS, PAGES, write_page
from agentfleet.bots.commands import (
    AnswerOutcome,
    AnswerTally,
    BotIssue,
    CommandPhase,
    FleetCommand,
    Targets,
)
from agentfleet.bots.model import BotKind, BotStatus, Skill
from agentfleet.models import utcnow
from agentfleet.operations.operators import parse_access_list
from agentfleet.settings import Settings
from clients.commands import (
    all_answers,
    answers_page,
    command_progress,
    run_command,
    start_command,
)
from starters.http.app import create_app
from starters.telegram import CommandCenter
from tests.replay import record_history, replay
from workers.main import running_workers
from workflows.fleet_command import FleetCommandWorkflow

FLEET = str(Path(sys.executable).parent / "fleet")
TEMPORAL_PAYLOAD_LIMIT = 2 * 1024 * 1024
FORECAST_ARGS = {"symbol": "BTCUSDT", "horizon": "1h"}
QUEUES = (taskqueues.WORKFLOWS, taskqueues.IO, taskqueues.LLM)


@contextlib.asynccontextmanager
async def batches_answered_by(
    client: Client, settings: Settings, skills: SkillActivities, stand_in: Any
) -> AsyncIterator[None]:
    """Real workers for the command workflow and its IO steps, its batches answered by
    ``stand_in`` (an ``answer_batch`` wrapping ``skills.answer_batch``); ``skills`` closed after."""
    try:
        async with (
            running_workers(client, settings, [taskqueues.WORKFLOWS, taskqueues.IO]),
            Worker(client, task_queue=taskqueues.LLM, activities=[stand_in]),
        ):
            yield
    finally:
        await skills.close()


def stored_command_fleet(url: str, home: Path) -> tuple[list[str], Settings, SkillActivities]:
    """1,200 active forecasters (past the inline limit: a command to them stores its answers, in
    batches), the settings and the skills a worker would have."""
    names = [f"fc-{index:04d}" for index in range(1200)]
    insert_bots(url, names)
    settings = Settings(home=home, database_url=url)
    return names, settings, SkillActivities(settings)


def insert_bots(
    url: str,
    names: Sequence[str],
    status: BotStatus = BotStatus.ACTIVE,
    reason: str | None = None,
) -> None:
    """Forecaster rows (what a command reads), in one statement: thousands in a second."""
    now = utcnow()
    rows = [
        {
            "name": name,
            "kind": BotKind.FORECASTER.value,
            "owner": "fleet",
            "status": status.value,
            "description": "",
            "params": {},
            "reason": reason,
            "created_at": now,
            "updated_at": now,
        }
        for name in names
    ]
    with db.make_engine(url).begin() as connection:
        connection.execute(insert(BOTS), rows)


def stored_pages(url: str, command_id: str) -> list[tuple[int, int]]:
    """(batch, answers) of every stored page of ``command_id``."""
    statement = (
        select(PAGES.c.batch, PAGES.c.bots)
        .where(PAGES.c.command_id == command_id)
        .order_by(PAGES.c.batch)
    )
    with db.make_engine(url).connect() as connection:
        return [(row.batch, row.bots) for row in connection.execute(statement)]


def backend(url: str) -> str:
    return "postgresql" if url.startswith("postgresql") else "sqlite"


def forecast_to_all(command_id: str | None = None, **fields: Any) -> FleetCommand:
    return FleetCommand(
        command_id=command_id or f"t-{uuid.uuid4().hex[:10]}",
        skill=Skill.FORECAST,
        args=FORECAST_ARGS,
        targets=Targets(all=True),
        **fields,
    )


async def test_command_to_more_bots_than_a_payload_holds_stores_and_pages_its_answers(
    dev_client: Client, migrated_database_url: str, tmp_path: Path
) -> None:
    url = migrated_database_url
    names = [f"fc-{index:05d}" for index in range(8000)]
    insert_bots(url, names)
    insert_bots(url, ["zz-napping"], BotStatus.PAUSED, "operator asked")
    settings = Settings(home=tmp_path, database_url=url)
    command = forecast_to_all()
    async with running_workers(dev_client, settings, QUEUES):
        result = await run_command(dev_client, command)

    assert result.answers == [] and result.answers_ref is not None
    assert (result.summary.ok, result.summary.skipped, result.summary.failed) == (8000, 1, 0)
    assert result.total == result.answer_count == 8001
    assert result.summary.forecast is not None and result.summary.forecast.count == 8000
    assert result.skipped == [
        BotIssue(name="zz-napping", status="paused", reason="bot is paused: operator asked")
    ]
    assert len(result.model_dump_json()) < 10_000, "the result does not grow with the fleet"
    every = await asyncio.to_thread(all_answers, url, result)
    assert [answer.name for answer in every] == [*names, "zz-napping"]
    assert len(ANSWERS.dump_json(every)) > TEMPORAL_PAYLOAD_LIMIT, "inline, this would not fit"
    page = await asyncio.to_thread(answers_page, url, result, 7998, 50)
    assert [(a.name, a.outcome) for a in page] == [
        ("fc-07998", AnswerOutcome.OK),
        ("fc-07999", AnswerOutcome.OK),
        ("zz-napping", AnswerOutcome.SKIPPED),
    ]
    size = batch_size(8001, command.parallel_batches)
    pages = stored_pages(url, command.command_id)
    assert [batch for batch, _ in pages] == list(range(-(-8001 // size)))
    assert sum(bots for _, bots in pages) == 8001
    history = await dev_client.get_workflow_handle(f"command-{command.command_id}").fetch_history()
    largest = max(event.ByteSize() for event in history.events)
    assert largest < 20_000, f"no event of the command's history grows with the fleet: {largest}"


async def test_a_retried_batch_stores_its_answers_once_and_calls_no_bot_again(
    dev_client: Client, migrated_database_url: str, tmp_path: Path
) -> None:
    url = migrated_database_url
    names, settings, skills = stored_command_fleet(url, tmp_path)
    attempts: Counter[int] = Counter()

    @activity.defn(name="answer_batch")
    async def completion_lost_once(batch: AnswerBatch) -> AnswerTally:
        """The real activity; its first completion of each batch never reaches the server."""
        tally = await skills.answer_batch(batch)
        attempts[batch.targets.index] += 1
        if activity.info().attempt == 1:
            # Pause the batch's bots: called again, they would answer "skipped".
            with db.make_engine(url).begin() as connection:
                connection.execute(
                    update(BOTS)
                    .where(BOTS.c.name.between(batch.targets.first, batch.targets.last))
                    .values(status=BotStatus.PAUSED.value)
                )
            raise RuntimeError("the worker lost its connection before completing")
        return tally

    command = forecast_to_all()
    async with batches_answered_by(dev_client, settings, skills, completion_lost_once):
        result = await run_command(dev_client, command)
        progress = await command_progress(dev_client, command.command_id)

    assert attempts == Counter({0: 2, 1: 2, 2: 2}), "3 batches (500, 500, 200), each retried"
    assert (result.summary.ok, result.summary.skipped) == (1200, 0)
    assert result.summary.forecast is not None and result.summary.forecast.count == 1200
    assert stored_pages(url, command.command_id) == [(0, 500), (1, 500), (2, 200)]
    every = await asyncio.to_thread(all_answers, url, result)
    assert [(a.name, a.status, a.ok) for a in every] == [(n, "active", True) for n in names]
    assert (progress.phase, progress.answered, progress.ok, progress.pending) == (
        CommandPhase.DONE,
        1200,
        1200,
        0,
    )
    handle = dev_client.get_workflow_handle(f"command-{command.command_id}")
    name = f"fleet_command_stored_{backend(url)}"
    await record_history(handle, name)
    await replay(name, [FleetCommandWorkflow])


async def test_a_batch_that_waits_for_the_database_keeps_heartbeating_and_answers(
    dev_client: Client, migrated_database_url: str, tmp_path: Path
) -> None:
    url = migrated_database_url
    names = [f"fc-{index:02d}" for index in range(12)]
    insert_bots(url, names)
    settings = Settings(home=tmp_path, database_url=url, command_inline_answers=3)
    skills = SkillActivities(settings)
    locked = threading.Event()
    lock_s = 4.0

    def hold_the_answers_table() -> None:
        """Another writer holds ``command_answers`` for ``lock_s`` seconds."""
        with db.make_engine(url).begin() as connection:
            if backend(url) == "postgresql":
                connection.execute(text("LOCK TABLE command_answers IN EXCLUSIVE MODE"))
            else:  # SQLite: a write takes the database's write lock until the commit
                connection.execute(update(PAGES).where(PAGES.c.batch < 0).values(bots=0))
            locked.set()
            time.sleep(lock_s)

    @activity.defn(name="answer_batch")
    async def behind_another_writer(batch: AnswerBatch) -> AnswerTally:
        """The real activity, started while another writer holds the answers' table."""
        holder = threading.Thread(target=hold_the_answers_table, daemon=True)
        holder.start()
        await asyncio.to_thread(locked.wait)
        try:
            return await skills.answer_batch(batch)
        finally:
            await asyncio.to_thread(holder.join)

    # One call at a time within 0.5 s each: a batch of 12 waves, so its heartbeat timeout is
    # 2.5 s, shorter than the wait for the table.
    command = forecast_to_all(concurrency=1, parallel_batches=1, per_bot_timeout_s=0.5)
    async with batches_answered_by(dev_client, settings, skills, behind_another_writer):
        result = await run_command(dev_client, command)

    assert result.failed_batches == []
    assert (result.summary.ok, result.summary.failed) == (12, 0)
    assert stored_pages(url, command.command_id) == [(0, 12)]


async def test_a_batch_that_fails_as_a_whole_counts_its_bots_failed_not_the_command(
    dev_client: Client, migrated_database_url: str, tmp_path: Path
) -> None:
    url = migrated_database_url
    names, settings, skills = stored_command_fleet(url, tmp_path)

    @activity.defn(name="answer_batch")
    async def middle_batch_lost(batch: AnswerBatch) -> AnswerTally:
        """The real activity, except for the second batch: its model server is gone."""
        if batch.targets.index == 1:
            raise ApplicationError("model server lost", type="ModelDown", non_retryable=True)
        return await skills.answer_batch(batch)

    command = forecast_to_all()
    async with batches_answered_by(dev_client, settings, skills, middle_batch_lost):
        result = await run_command(dev_client, command)

    assert (result.summary.ok, result.summary.failed, result.total) == (700, 500, 1200)
    [failure] = result.failed_batches
    assert (failure.batch, failure.position, failure.bots) == (1, 500, 500)
    assert (failure.first, failure.last) == ("fc-0500", "fc-0999")
    assert failure.reason == "batch failed: model server lost"
    assert result.answers_ref is not None and result.answers_ref.answers == 700
    every = await asyncio.to_thread(all_answers, url, result)
    assert [answer.name for answer in every] == names[:500] + names[1000:]


async def test_cli_shows_the_first_page_pages_the_rest_and_json_gives_every_answer(
    dev_client: Client, migrated_database_url: str, tmp_path: Path
) -> None:
    url = migrated_database_url
    names = [f"fc-{index:02d}" for index in range(60)]
    insert_bots(url, names)
    insert_bots(url, ["zz-napping"], BotStatus.PAUSED)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FLEET_", "TEMPORAL_"))}
    env.update(
        FLEET_HOME=str(tmp_path / "home"),
        FLEET_TEMPORAL_ADDRESS=dev_client.service_client.config.target_host,
        FLEET_DATABASE_URL=url,
        COLUMNS="200",
    )

    async def fleet(*args: str) -> tuple[int, str, str]:
        process = await asyncio.create_subprocess_exec(
            FLEET, *args, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
        )
        out, err = await asyncio.wait_for(process.communicate(), 60)
        return process.returncode or 0, out.decode(), err.decode()

    command_id = f"cli-{uuid.uuid4().hex[:8]}"
    settings = Settings(home=tmp_path, database_url=url, command_inline_answers=10)
    async with running_workers(dev_client, settings, QUEUES):
        code, out, err = await fleet("command", "status", "--all", "--id", command_id)
        assert code == 0, err
        code, again, err = await fleet("command", "status", "--all", "--id", command_id, "--json")
        assert code == 0, err
    lines = out.splitlines()
    assert lines[0].startswith("status to all bots: 60 ok, 0 failed, 1 skipped, 0 unknown")
    shown = [line.split()[0] for line in lines if line.lstrip().startswith("fc-")]
    assert shown == names[:50]
    assert lines[-1] == f"... and 11 more: fleet command answers {command_id} --page 2"

    report = json.loads(again)
    assert report["ok"] and report["answers_ref"]["answers"] == 61
    assert [answer["name"] for answer in report["answers"]] == [*names, "zz-napping"]
    assert report["answers"][-1]["error"] == "bot is paused"

    code, out, err = await fleet("command", "answers", command_id, "--page", "2", "--json")
    assert code == 0, err
    page = json.loads(out)
    assert (page["page"], page["pages"], page["size"], page["count"]) == (2, 2, 50, 61)
    assert [answer["name"] for answer in page["answers"]] == [*names[50:], "zz-napping"]
    code, out, err = await fleet("command", "answers", command_id, "--page", "3", "--size", "30")
    assert code == 0, err
    rows = [line.split()[0] for line in out.splitlines() if line.lstrip().startswith("zz-")]
    assert rows == ["zz-napping"] and "fc-" not in out
    assert out.splitlines()[-1].startswith("page 3 of 3 (61 answers, 30 a page")
    code, _, err = await fleet("command", "answers", command_id, "--page", "4", "--size", "30")
    assert code == 2 and err.strip().splitlines() == [
        "error: page 4 is past the last one, 3 (30 answers a page)"
    ]
    code, _, err = await fleet("command", "answers", f"never-{command_id}")
    assert code == 1 and err.strip().splitlines() == [f"error: no command never-{command_id}"]
    elsewhere = f"sqlite:///{tmp_path / 'elsewhere.db'}"
    await asyncio.to_thread(db.upgrade_database, elsewhere)
    env["FLEET_DATABASE_URL"] = elsewhere
    code, _, err = await fleet("command", "answers", command_id)
    assert code == 1 and err.strip().splitlines() == [
        f"error: the answers of command {command_id} are not in this database (kept "
        "FLEET_COMMAND_ANSWERS_DAYS days, in the workers' FLEET_DATABASE_URL)"
    ]


async def test_telegram_answers_a_stored_command_with_its_summary_and_first_lines(
    dev_client: Client, migrated_database_url: str, tmp_path: Path
) -> None:
    url = migrated_database_url
    names = [f"fc-{index:02d}" for index in range(12)]
    insert_bots(url, names)
    insert_bots(url, ["zz-newer"], BotStatus.PAUSED)
    with db.make_engine(url).begin() as connection:  # a kind a newer version knows
        connection.execute(update(BOTS).where(BOTS.c.name == "zz-newer").values(kind="oracle"))
    settings = Settings(home=tmp_path, database_url=url, command_inline_answers=3)
    center = CommandCenter(dev_client, settings, parse_access_list("3001:viewer:vera"))
    # A week-old command's answers: the next large command deletes them.
    write_page(url, "old-command", "old-run", 0, b"[]", 0)
    with db.make_engine(url).begin() as connection:
        week_ago = utcnow() - timedelta(days=settings.command_answers_days, minutes=1)
        connection.execute(update(PAGES).values(created_at=week_ago))
    key = uuid.uuid4().hex[:8]
    async with running_workers(dev_client, settings, QUEUES):
        [reply] = await center.handle_text(3001, "vera", "/forecast all BTCUSDT 1h", key)
    lines = reply.text.splitlines()
    assert lines[0].startswith("forecast to all bots: 12 ok, 0 failed, 0 skipped in ")
    assert lines[1].startswith("mean ") and "agreement" in lines[1]
    assert [line.split()[0] for line in lines[2:-1]] == names[:5]
    assert lines[-1] == f"... and 8 more: /answers tg-forecast-{key}"
    assert reply.attachment is None
    with db.make_engine(url).connect() as connection:
        stored = connection.execute(
            select(func.sum(PAGES.c.bots)).where(PAGES.c.command_id == f"tg-forecast-{key}")
        ).scalar_one()
    assert stored == 13
    assert stored_pages(url, "old-command") == []
    [page] = stored_pages(url, f"tg-forecast-{key}")
    with db.make_engine(url).connect() as connection:
        text = connection.execute(
            select(PAGES.c.answers).where(PAGES.c.command_id == f"tg-forecast-{key}")
        ).scalar_one()
    newer = ANSWERS.validate_json(text)[-1]
    assert (newer.name, newer.outcome, newer.kind) == ("zz-newer", AnswerOutcome.UNKNOWN, None)


async def test_telegram_pages_a_stored_commands_answers(
    dev_client: Client, migrated_database_url: str, tmp_path: Path
) -> None:
    url = migrated_database_url
    names = [f"fc-{index:02d}" for index in range(12)]
    insert_bots(url, names)
    settings = Settings(
        home=tmp_path, database_url=url, command_inline_answers=3, telegram_max_rows=5
    )
    center = CommandCenter(dev_client, settings, parse_access_list("3001:viewer:vera"))
    command = forecast_to_all()
    async with running_workers(dev_client, settings, QUEUES):
        await run_command(dev_client, command)
    command_id = command.command_id

    async def ask(text: str) -> list[str]:
        [reply] = await center.handle_text(3001, "vera", text)
        return reply.text.splitlines()

    first = await ask(f"/answers {command_id}")
    assert first[0] == "forecast to all bots, page 1 of 3 (12 answers):"
    assert [line.split()[0] for line in first[1:-1]] == names[:5]
    assert first[-1] == f"next: /answers {command_id} 2"
    last = await ask(f"/answers {command_id} 3")
    assert last[0] == "forecast to all bots, page 3 of 3 (12 answers):"
    assert [line.split()[0] for line in last[1:]] == names[10:]
    assert await ask(f"/answers {command_id} 4") == [
        "Page 4 is past the last one, 3 (5 answers a page)."
    ]
    assert await ask(f"/answers never-{command_id}") == [f"no command never-{command_id}."]
    assert await ask(f"/answers {command_id} 0") == [
        "'0' is not a page number (1, 2 ...). Usage: /answers COMMAND_ID [PAGE]"
    ]
    assert (await ask("/answers ../etc"))[0].startswith("Give a command's id")


async def test_http_pages_a_commands_answers_for_operators_only(
    dev_client: Client, migrated_database_url: str, tmp_path: Path
) -> None:
    url = migrated_database_url
    names = [f"fc-{index:02d}" for index in range(25)]
    insert_bots(url, names)
    insert_bots(url, ["zz-napping"], BotStatus.PAUSED)
    token = secrets.token_hex(20)
    settings = Settings(
        home=tmp_path,
        database_url=url,
        command_inline_answers=10,
        command_answers_token=token,
        temporal_address=dev_client.service_client.config.target_host,
    )
    stored, small = forecast_to_all(), forecast_to_all()
    async with running_workers(dev_client, settings, QUEUES):
        await run_command(dev_client, stored)
    async with running_workers(
        dev_client, settings.model_copy(update={"command_inline_answers": 100}), QUEUES
    ):
        await run_command(dev_client, small)
    # Started with no worker to run it: it is still running when read.
    running = forecast_to_all()
    await start_command(dev_client, running)

    transport = httpx.ASGITransport(app=create_app(settings))
    operator = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(transport=transport, base_url="http://fleet.test") as http:

        async def get(path: str, **params: Any) -> httpx.Response:
            return await http.get(path, params=params, headers=operator)

        answer = await get(f"/commands/{stored.command_id}/answers", page=3, size=10)
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert (body["page"], body["pages"], body["size"], body["count"]) == (3, 3, 10, 26)
        assert [a["name"] for a in body["answers"]] == [*names[20:], "zz-napping"]
        assert body["answers"][-1]["outcome"] == "skipped"
        assert (body["summary"]["ok"], body["summary"]["skipped"]) == (25, 1)
        assert body["summary"]["forecast"]["count"] == 25
        first = (await get(f"/commands/{stored.command_id}/answers")).json()
        assert [a["name"] for a in first["answers"]] == [*names, "zz-napping"]
        assert first["pages"] == 1 and first["size"] == 50
        inline = (await get(f"/commands/{small.command_id}/answers", page=2, size=20)).json()
        assert [a["name"] for a in inline["answers"]] == [*names[20:], "zz-napping"]

        refusals = {
            "past the last page": (
                await get(f"/commands/{stored.command_id}/answers", page=4, size=10),
                404,
            ),
            "page 0": (await get(f"/commands/{stored.command_id}/answers", page=0), 422),
            "a page that is no number": (
                await get(f"/commands/{stored.command_id}/answers", page="two"),
                422,
            ),
            "too large a page": (
                await get(f"/commands/{stored.command_id}/answers", size=1001),
                422,
            ),
            "not a command id": (await get("/commands/-not-an-id/answers"), 422),
            "no such command": (await get(f"/commands/never-{stored.command_id}/answers"), 404),
            "still running": (await get(f"/commands/{running.command_id}/answers"), 409),
            "no token": (
                await http.get(f"/commands/{stored.command_id}/answers"),
                401,
            ),
            "another token": (
                await http.get(
                    f"/commands/{stored.command_id}/answers",
                    headers={"Authorization": f"Bearer {secrets.token_hex(20)}"},
                ),
                401,
            ),
            "a 60 KB command id": (await get(f"/commands/{'a' * 60_000}/answers"), 422),
            "a 20,000-digit page": (
                await get(f"/commands/{stored.command_id}/answers", page="9" * 20_000),
                422,
            ),
        }

        # Many callers at once, operators and strangers mixed: each gets its own answer, none
        # a 5xx, and the stored answers read the same afterwards.
        asked = [
            (get(f"/commands/{stored.command_id}/answers", page=1 + i % 3, size=10), 200)
            for i in range(24)
        ] + [(http.get(f"/commands/{stored.command_id}/answers"), 401) for _ in range(12)]
        raced = await asyncio.gather(*(call for call, _ in asked))
        assert [r.status_code for r in raced] == [status for _, status in asked]
        pages = {r.json()["page"]: r.json()["answers"] for r in raced if r.status_code == 200}
        assert [a["name"] for p in (1, 2, 3) for a in pages[p]] == [*names, "zz-napping"]
        assert (await get(f"/commands/{stored.command_id}/answers", page=3, size=10)).json() == body
    for case, (response, status) in refusals.items():
        assert response.status_code == status, (case, response.text)
        assert set(response.json()) == {"detail"}, case
    assert "page 4 is past the last one, 3" in refusals["past the last page"][0].json()["detail"]
    assert (
        refusals["still running"][0]
        .json()["detail"]
        .startswith(f"command {running.command_id} is still running")
    )
    assert token not in refusals["another token"][0].text

    closed = httpx.ASGITransport(
        app=create_app(settings.model_copy(update={"command_answers_token": None}))
    )
    async with httpx.AsyncClient(transport=closed, base_url="http://fleet.test") as http:
        answer = await http.get(f"/commands/{stored.command_id}/answers", headers=operator)
    assert answer.status_code == 403, answer.text
