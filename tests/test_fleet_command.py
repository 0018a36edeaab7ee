"""FleetCommandWorkflow on the real dev server, SQLite and PostgreSQL: one skill to many bots,
answered on time whatever the bots do, idempotent by command id, observable while it runs.

``run_skill_batch`` is replaced by a scripted double registered under its real name on
``fleet-llm`` (Temporal's mocking seam); one test runs the real activity when it exists.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import importlib.util
import inspect
import json
import os
import sys
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from temporalio import activity
from temporalio.client import Client
from temporalio.common import SearchAttributePair, TypedSearchAttributes
from temporalio.exceptions import ApplicationError
from temporalio.worker import Worker

from activities.fleet import FleetActivities
from agentfleet import db, search_attributes, taskqueues
from agentfleet.bots.commands import (
    AnswerOutcome,
    BotAnswer,
    CommandPhase,
    Direction,
    FleetCommand,
    FleetCommandResult,
    Targets,
    command_workflow_id,
    summarize,
    summarize_forecasts,
)
from agentfleet.bots.model import (
    BotKind,
    BotStatus,
    Forecast,
    Performance,
    Skill,
    SkillBatch,
    SkillBatchResult,
    SkillCall,
    SkillResult,
)
from agentfleet.errors import FleetError
from agentfleet.models import BotRecord
from agentfleet.settings import Settings
from clients.commands import command_progress, run_command, start_command
from tests.fixtures.chain import free_port
from tests.replay import record_history, replay
from workers.main import WORKFLOW_RUNNER, WORKFLOWS, Activities, activities_for, running_workers
from workflows.fleet_command import FleetCommandWorkflow

FLEET = str(Path(sys.executable).parent / "fleet")


class SkillDouble:
    """``run_skill_batch`` scripted per bot: forecasts, delays, failures, whole-batch crashes."""

    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()
        self.forecasts: dict[str, tuple[float, float]] = {}
        self.delays: dict[str, float] = {}
        self.raising: set[str] = set()
        self.crashing: set[str] = set()
        self.gate = asyncio.Event()
        self.gated: set[str] = set()

    @activity.defn(name="run_skill_batch")
    async def run_skill_batch(self, batch: SkillBatch) -> SkillBatchResult:
        if any(call.bot.name in self.crashing for call in batch.calls):
            raise ApplicationError("model server lost", type="ModelDown", non_retryable=True)
        results = await asyncio.gather(
            *(self._call(call, batch.per_call_timeout_s) for call in batch.calls)
        )
        return SkillBatchResult(results=list(results))

    async def _call(self, call: SkillCall, timeout_s: float) -> SkillResult:
        self.calls[call.bot.name] += 1
        started = time.monotonic()
        ok, data, error = True, {}, None
        try:
            data = await asyncio.wait_for(self._answer(call), timeout_s)
        except TimeoutError:
            ok, error = False, f"no answer within {timeout_s:g} s"
        except Exception as exc:
            ok, error = False, f"{type(exc).__name__}: {exc}"
        return SkillResult(
            bot=call.bot.name,
            skill=call.skill,
            ok=ok,
            data=data,
            error=error,
            elapsed_ms=(time.monotonic() - started) * 1000,
        )

    async def _answer(self, call: SkillCall) -> dict[str, Any]:
        name = call.bot.name
        if name in self.gated:
            await self.gate.wait()
        await asyncio.sleep(self.delays.get(name, 0.0))
        if name in self.raising:
            raise RuntimeError("forecast model crashed")
        if call.bot.kind is BotKind.REMOTE:
            async with httpx.AsyncClient(timeout=timeout_of(call)) as http:
                response = await http.post(str(call.bot.params["url"]), json=call.args)
                response.raise_for_status()
                return dict(response.json())
        if call.skill is Skill.FORECAST:
            value, last = self.forecasts.get(name, (101.0, 100.0))
            return Forecast(
                bot=name,
                symbol=call.args["symbol"],
                horizon=call.args["horizon"],
                value=value,
                last=last,
                model="double",
            ).model_dump(mode="json")
        if call.skill is Skill.PERFORMANCE:
            return Performance(bot=name, window=call.args["window"], forecasts=3).model_dump()
        return {"status": call.bot.status.value}


def timeout_of(call: SkillCall) -> float:
    return float(call.bot.params.get("timeout_s", 5.0))


def add_bots(url: str, *bots: tuple[str, BotKind, BotStatus], **params: dict[str, Any]) -> None:
    with db.session_scope(url) as session:
        for name, kind, status in bots:
            session.add(
                BotRecord(
                    name=name,
                    kind=kind.value,
                    owner="fleet",
                    status=status.value,
                    params=params.get(name.replace("-", "_"), {}),
                    reason="operator asked" if status is BotStatus.PAUSED else None,
                )
            )


def backend(url: str) -> str:
    return "postgresql" if url.startswith("postgresql") else "sqlite"


async def _names_on(queue: str, bound: Activities) -> set[str]:
    return {activity._Definition.must_from_callable(fn).name for fn in activities_for(queue, bound)}


def _real_run_skill_batch(settings: Settings, client: Client) -> Callable[..., Any] | None:
    """The other half's ``run_skill_batch`` from ``activities/skills.py``, if it exists: a
    function, or the method of a class built from the ``settings`` / ``client`` it asks for."""
    if importlib.util.find_spec("activities.skills") is None:
        return None
    module = importlib.import_module("activities.skills")
    found = getattr(module, "run_skill_batch", None)
    if callable(found):
        return found
    available = {"settings": settings, "client": client}
    for value in vars(module).values():
        if not (isinstance(value, type) and hasattr(value, "run_skill_batch")):
            continue
        wanted = inspect.signature(value).parameters.values()
        if all(p.name in available or p.default is not p.empty for p in wanted):
            instance = value(**{p.name: available[p.name] for p in wanted if p.name in available})
            return instance.run_skill_batch
    return None


@contextlib.asynccontextmanager
async def fleet_workers(
    client: Client, settings: Settings, skills: Callable[..., Any] | None
) -> AsyncIterator[None]:
    """``workers.main``'s workers for each queue that already hosts what a command needs, our
    own worker for the others; ``skills`` (the double) on ``fleet-llm`` when given, else the
    real ``run_skill_batch``."""
    bound = Activities(settings, client)
    try:
        io_ready = "resolve_targets" in await _names_on(taskqueues.IO, bound)
        llm_ready = "run_skill_batch" in await _names_on(taskqueues.LLM, bound)
    finally:
        await bound.close()
    queues: list[str] = []
    own: list[Worker] = []
    if FleetCommandWorkflow in WORKFLOWS:
        queues.append(taskqueues.WORKFLOWS)
    else:
        own.append(
            Worker(
                client,
                task_queue=taskqueues.WORKFLOWS,
                workflows=[FleetCommandWorkflow],
                workflow_runner=WORKFLOW_RUNNER,
            )
        )
    if io_ready:
        queues.append(taskqueues.IO)
    else:
        fleet = FleetActivities(settings, client)
        own.append(Worker(client, task_queue=taskqueues.IO, activities=[fleet.resolve_targets]))
    real_owner = None
    if skills is None and llm_ready:
        queues.append(taskqueues.LLM)
    else:
        batch = skills or _real_run_skill_batch(settings, client)
        if batch is None:
            pytest.skip("activities/skills.py (run_skill_batch) does not exist yet")
        if skills is None:
            real_owner = getattr(batch, "__self__", None)
        own.append(Worker(client, task_queue=taskqueues.LLM, activities=[batch]))
    async with contextlib.AsyncExitStack() as stack:
        if real_owner is not None and hasattr(real_owner, "close"):
            stack.push_async_callback(real_owner.close)
        await stack.enter_async_context(running_workers(client, settings, queues))
        for worker in own:
            await stack.enter_async_context(worker)
        yield


def command(skill: Skill = Skill.FORECAST, **fields: Any) -> FleetCommand:
    args = {"symbol": "BTCUSDT", "horizon": "1h"} if skill is Skill.FORECAST else {}
    fields.setdefault("targets", Targets(all=True))
    fields.setdefault("args", args)
    return FleetCommand(command_id=f"t-{uuid.uuid4().hex[:10]}", skill=skill, **fields)


def by_name(result: FleetCommandResult) -> dict[str, BotAnswer]:
    return {answer.name: answer for answer in result.answers}


async def test_answer_arrives_within_the_per_bot_timeout_and_says_which_bot_is_which(
    dev_client: Client, migrated_database_url: str, tmp_path: Path
) -> None:
    url = migrated_database_url
    closed = f"http://127.0.0.1:{free_port()}/a2a"
    add_bots(
        url,
        ("fc-1", BotKind.FORECASTER, BotStatus.ACTIVE),
        ("fc-2", BotKind.FORECASTER, BotStatus.ACTIVE),
        ("fc-3", BotKind.FORECASTER, BotStatus.DEGRADED),
        ("slow", BotKind.FORECASTER, BotStatus.ACTIVE),
        ("boom", BotKind.FORECASTER, BotStatus.ACTIVE),
        ("napping", BotKind.FORECASTER, BotStatus.PAUSED),
        ("gone", BotKind.FORECASTER, BotStatus.RETIRED),
        ("far", BotKind.REMOTE, BotStatus.ACTIVE),
        far={"url": closed, "timeout_s": 5.0},
    )
    double = SkillDouble()
    double.forecasts.update({"fc-1": (105.0, 100.0), "fc-2": (103.0, 100.0), "fc-3": (99.0, 100.0)})
    double.delays["slow"] = 30.0
    double.raising.add("boom")
    names = ["fc-1", "fc-2", "fc-3", "slow", "boom", "napping", "gone", "far", "ghost"]
    settings = Settings(home=tmp_path, database_url=url)
    async with fleet_workers(dev_client, settings, double.run_skill_batch):
        started = time.monotonic()
        handle = await start_command(
            dev_client, command(targets=Targets(names=names), per_bot_timeout_s=1.0)
        )
        result: FleetCommandResult = await handle.result()
        took = time.monotonic() - started
    # The slow bot answers after 30 s: a command that returns before it did not wait for it
    # (how soon it answers is bench/lifecycle.py's figure, not a test's).
    assert took < double.delays["slow"], f"the answer waited for the slow bot ({took:.2f} s)"
    answers = by_name(result)
    assert [a.name for a in result.answers] == names
    assert {n for n, a in answers.items() if a.outcome is AnswerOutcome.OK} == {
        "fc-1",
        "fc-2",
        "fc-3",
    }
    assert answers["slow"].outcome is AnswerOutcome.FAILED
    assert "within 1 s" in (answers["slow"].error or "")
    assert "crashed" in (answers["boom"].error or "")
    assert answers["far"].outcome is AnswerOutcome.FAILED and answers["far"].error
    assert answers["napping"].outcome is AnswerOutcome.SKIPPED
    assert answers["napping"].error == "bot is paused: operator asked"
    assert (answers["gone"].outcome, answers["gone"].status) == (AnswerOutcome.SKIPPED, "retired")
    assert (answers["ghost"].outcome, answers["ghost"].status) == (AnswerOutcome.UNKNOWN, "unknown")
    assert {i.name for i in result.failed} == {"slow", "boom", "far"}
    assert {i.name: i.status for i in result.skipped} == {"napping": "paused", "gone": "retired"}
    assert result.unknown == ["ghost"]
    assert double.calls["napping"] == double.calls["gone"] == double.calls["ghost"] == 0
    forecast = result.summary.forecast
    assert forecast is not None and forecast.count == 3
    assert forecast.median == 103.0 and forecast.spread == 6.0
    assert forecast.direction is Direction.UP and forecast.agreement == pytest.approx(2 / 3)
    assert result.summary.by_status == {
        "active": 5,
        "degraded": 1,
        "paused": 1,
        "retired": 1,
        "unknown": 1,
    }
    name = f"fleet_command_{backend(url)}"
    await record_history(handle, name)
    await replay(name, [FleetCommandWorkflow])


async def test_same_command_id_twice_runs_once_and_answers_the_same(
    dev_client: Client, migrated_database_url: str, tmp_path: Path
) -> None:
    add_bots(
        migrated_database_url,
        ("fc-1", BotKind.FORECASTER, BotStatus.ACTIVE),
        ("fc-2", BotKind.FORECASTER, BotStatus.ACTIVE),
    )
    double = SkillDouble()
    double.delays["fc-2"] = 0.3
    settings = Settings(home=tmp_path, database_url=migrated_database_url)
    once = command()
    async with fleet_workers(dev_client, settings, double.run_skill_batch):
        first, second = await asyncio.gather(
            run_command(dev_client, once), run_command(dev_client, once)
        )
        later = await run_command(dev_client, once.model_copy(update={"per_bot_timeout_s": 9}))
    assert first == second == later
    assert double.calls == Counter({"fc-1": 1, "fc-2": 1})
    query = f'WorkflowId = "{command_workflow_id(once.command_id)}"'
    assert (await dev_client.count_workflows(query)).count == 1


async def test_progress_is_queryable_while_bots_are_answering(
    dev_client: Client, migrated_database_url: str, tmp_path: Path
) -> None:
    bots = [(f"fc-{i}", BotKind.FORECASTER, BotStatus.ACTIVE) for i in range(6)]
    add_bots(migrated_database_url, *bots, ("napping", BotKind.FORECASTER, BotStatus.PAUSED))
    double = SkillDouble()
    double.gated = {"fc-4", "fc-5"}
    settings = Settings(home=tmp_path, database_url=migrated_database_url)
    slow = command(concurrency=2, per_bot_timeout_s=20)
    async with fleet_workers(dev_client, settings, double.run_skill_batch):
        handle = await start_command(dev_client, slow)
        deadline = time.monotonic() + 10
        while True:
            progress = await command_progress(dev_client, slow.command_id)
            if progress.answered == 5 or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.05)
        assert progress.phase is CommandPhase.CALLING
        assert (progress.total, progress.answered, progress.pending) == (7, 5, 2)
        assert (progress.ok, progress.skipped, progress.failed) == (4, 1, 0)
        assert progress.by_status == {"active": 4, "paused": 1}
        double.gate.set()
        result: FleetCommandResult = await handle.result()
        done = await command_progress(dev_client, slow.command_id)
    assert result.summary.ok == 6
    assert (done.phase, done.answered, done.pending) == (CommandPhase.DONE, 7, 0)


async def test_batch_that_fails_as_a_whole_fails_its_bots_not_the_command(
    dev_client: Client, migrated_database_url: str, tmp_path: Path
) -> None:
    add_bots(
        migrated_database_url,
        *[(f"fc-{i}", BotKind.FORECASTER, BotStatus.ACTIVE) for i in range(4)],
    )
    double = SkillDouble()
    double.crashing.add("fc-3")
    settings = Settings(home=tmp_path, database_url=migrated_database_url)
    async with fleet_workers(dev_client, settings, double.run_skill_batch):
        result = await run_command(dev_client, command(concurrency=2))
    answers = by_name(result)
    assert [answers[f"fc-{i}"].ok for i in range(4)] == [True, True, False, False]
    assert answers["fc-2"].error == answers["fc-3"].error == "batch failed: model server lost"
    assert result.summary.forecast is not None and result.summary.forecast.count == 2


async def test_kind_and_query_targets_pick_their_bots(
    dev_client: Client, migrated_database_url: str, tmp_path: Path
) -> None:
    tag = uuid.uuid4().hex[:8]
    fc, pub, off = f"fc-{tag}", f"pub-{tag}", f"off-{tag}"
    add_bots(
        migrated_database_url,
        (fc, BotKind.FORECASTER, BotStatus.ACTIVE),
        (pub, BotKind.PUBLISHER, BotStatus.ACTIVE),
        (off, BotKind.FORECASTER, BotStatus.PAUSED),
    )
    unpolled = f"nobody-polls-{tag}"
    handles = []
    for name, kind in ((fc, BotKind.FORECASTER), (pub, BotKind.PUBLISHER)):
        # Entity stand-ins: visible with their search attributes, never run.
        handles.append(
            await dev_client.start_workflow(
                "BotLifecycleWorkflow",
                id=f"bot-{name}",
                task_queue=unpolled,
                search_attributes=TypedSearchAttributes(
                    [
                        SearchAttributePair(search_attributes.BOT_KIND, kind.value),
                        SearchAttributePair(search_attributes.BOT_OWNER, f"owner-{tag}"),
                    ]
                ),
            )
        )
    query = f'BotOwner = "owner-{tag}" AND BotKind = "forecaster"'
    try:
        for _ in range(100):
            if (await dev_client.count_workflows(f'BotOwner = "owner-{tag}"')).count == 2:
                break
            await asyncio.sleep(0.05)
        settings = Settings(home=tmp_path, database_url=migrated_database_url)
        async with fleet_workers(dev_client, settings, SkillDouble().run_skill_batch):
            kinds = await run_command(
                dev_client, command(Skill.STATUS, targets=Targets(kinds=[BotKind.FORECASTER]))
            )
            queried = await run_command(
                dev_client, command(Skill.STATUS, targets=Targets(query=query))
            )
            with pytest.raises(FleetError, match="invalid target query") as failure:
                await run_command(
                    dev_client, command(Skill.STATUS, targets=Targets(query="BotKind = = 1"))
                )
    finally:
        for handle in handles:
            await handle.terminate("test over")
    assert [a.name for a in kinds.answers] == [fc, off]
    assert by_name(kinds)[off].outcome is AnswerOutcome.SKIPPED
    assert [(a.name, a.data) for a in queried.answers] == [(fc, {"status": "active"})]
    assert "\n" not in str(failure.value)


async def test_real_skill_activity_end_to_end(
    dev_client: Client, migrated_database_url: str, tmp_path: Path
) -> None:
    closed = f"http://127.0.0.1:{free_port()}/a2a"
    add_bots(
        migrated_database_url,
        ("fc-1", BotKind.FORECASTER, BotStatus.ACTIVE),
        ("fc-2", BotKind.FORECASTER, BotStatus.ACTIVE),
        ("napping", BotKind.FORECASTER, BotStatus.PAUSED),
        ("far", BotKind.REMOTE, BotStatus.ACTIVE),
        far={"url": closed, "timeout_s": 2.0},
    )
    settings = Settings(home=tmp_path, database_url=migrated_database_url)
    async with fleet_workers(dev_client, settings, None):
        result = await run_command(dev_client, command(per_bot_timeout_s=3.0))
    answers = by_name(result)
    assert answers["fc-1"].ok and answers["fc-2"].ok, [a.error for a in result.answers]
    Forecast.model_validate(answers["fc-1"].data)
    assert answers["napping"].outcome is AnswerOutcome.SKIPPED
    assert answers["far"].outcome is AnswerOutcome.FAILED and answers["far"].error
    assert result.summary.forecast is not None and result.summary.forecast.count == 2


async def test_cli_forecast_and_status_show_the_fleet_answer(
    dev_client: Client, migrated_database_url: str, tmp_path: Path
) -> None:
    add_bots(
        migrated_database_url,
        ("fc-1", BotKind.FORECASTER, BotStatus.ACTIVE),
        ("napping", BotKind.FORECASTER, BotStatus.PAUSED),
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FLEET_", "TEMPORAL_"))}
    env.update(
        FLEET_HOME=str(tmp_path / "home"),
        FLEET_TEMPORAL_ADDRESS=dev_client.service_client.config.target_host,
        COLUMNS="200",
    )

    async def fleet(*args: str) -> tuple[int, str, str]:
        process = await asyncio.create_subprocess_exec(
            FLEET, *args, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
        )
        out, err = await asyncio.wait_for(process.communicate(), 60)
        return process.returncode or 0, out.decode(), err.decode()

    settings = Settings(home=tmp_path, database_url=migrated_database_url)
    async with fleet_workers(dev_client, settings, SkillDouble().run_skill_batch):
        code, out, err = await fleet("command", "forecast", "--all", "BTCUSDT", "4h", "--json")
        assert code == 0, err
        report = json.loads(out)
        assert report["ok"] and report["summary"]["forecast"]["count"] == 1
        assert [a["outcome"] for a in report["answers"]] == ["ok", "skipped"]
        code, tuned, err = await fleet(
            "command", "tune", "--bot", "fc-1", "--param", "alpha=0.5", "--json"
        )
        assert code == 0, err
        assert json.loads(tuned)["skill"] == "tune"
        code, out, err = await fleet("command", "status", "--kind", "forecaster")
        assert code == 0, err
    assert "fc-1" in out and "napping" in out and "bot is paused: operator asked" in out
    code, _, err = await fleet("command", "tune", "--param", "alpha")
    assert code == 2 and err.strip().splitlines() == ["error: parameter 'alpha' is not key=value"]
    code, out, err = await fleet("command", "forecast", "--all", "btc", "1h")
    assert code == 2 and err.strip().splitlines() == [
        "error: symbol 'btc' is not valid: use one like BTCUSDT (A-Z, 0-9)"
    ]


def test_forecast_summary_math_on_known_inputs() -> None:
    forecasts = [
        Forecast(bot=f"b{i}", symbol="X", horizon="1h", value=value, last=last, model="m")
        for i, (value, last) in enumerate(
            [(110.0, 100.0), (104.0, 100.0), (98.0, 100.0), (100.0, 100.0), (120.0, 100.0)]
        )
    ]
    summary = summarize_forecasts(forecasts)
    assert summary is not None
    assert (summary.count, summary.mean, summary.median) == (5, 106.4, 104.0)
    assert (summary.min, summary.max, summary.spread) == (98.0, 120.0, 22.0)
    assert summary.stdev == pytest.approx(7.9398, abs=1e-4)
    assert (summary.up, summary.down, summary.flat) == (3, 1, 1)
    assert summary.direction is Direction.UP and summary.agreement == 0.6
    banded = summarize_forecasts(forecasts, tolerance=0.05)
    assert banded is not None and (banded.up, banded.down, banded.flat) == (2, 0, 3)
    assert banded.direction is Direction.FLAT
    tie = summarize_forecasts(forecasts[:3:2])
    assert tie is not None and tie.direction is None and tie.agreement == 0.5
    assert summarize_forecasts([]) is None


def test_summary_counts_outcomes_and_leaves_other_shapes_out_of_statistics() -> None:
    answers = [
        BotAnswer(
            name="a",
            status="active",
            outcome=AnswerOutcome.OK,
            ok=True,
            data=Forecast(
                bot="a", symbol="X", horizon="1h", value=2, last=1, model="m"
            ).model_dump(),
        ),
        BotAnswer(name="b", status="active", outcome=AnswerOutcome.OK, ok=True, data={"x": 1}),
        BotAnswer(name="c", status="active", outcome=AnswerOutcome.FAILED, error="boom"),
        BotAnswer(name="d", status="paused", outcome=AnswerOutcome.SKIPPED),
    ]
    summary = summarize(Skill.FORECAST, answers)
    assert (summary.ok, summary.failed, summary.skipped, summary.unknown) == (2, 1, 1, 0)
    assert summary.forecast is not None and summary.forecast.count == 1
    assert summary.by_status == {"active": 3, "paused": 1}
    performance = summarize(
        Skill.PERFORMANCE,
        [
            BotAnswer(
                name=n,
                status="active",
                outcome=AnswerOutcome.OK,
                ok=True,
                data=Performance(bot=n, window="7d", forecasts=f, hit_rate=h).model_dump(),
            )
            for n, f, h in (("a", 10, 0.5), ("b", 30, None), ("c", 20, 0.7))
        ],
    ).performance
    assert performance is not None
    assert (performance.bots, performance.forecasts) == (3, 60)
    assert performance.hit_rate == pytest.approx(0.6) and performance.mean_abs_error is None


def test_targets_take_exactly_one_selector() -> None:
    with pytest.raises(ValueError, match="exactly one"):
        Targets()
    with pytest.raises(ValueError, match="exactly one"):
        Targets(all=True, names=["a"])
    assert Targets(kinds=[BotKind.REMOTE]).describe() == "kind remote"
    names = Targets(names=[f"b{i}" for i in range(8)]).describe()
    assert names == "bots b0, b1, b2, b3, b4 and 3 more"
