"""Bot skills: built-in forecaster and publisher, batches, and remote bots over A2A (a real
``python -m starters.remote_bot`` process)."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
from temporalio.testing import ActivityEnvironment

from activities.skills import SkillActivities
from agentfleet.bots.kinds.forecaster import TUNE_ALPHAS
from agentfleet.bots.market import csv_import, ema, feed, regimes
from agentfleet.bots.model import (
    BotKind,
    BotRef,
    BotStatus,
    Forecast,
    Performance,
    Skill,
    SkillBatch,
    SkillCall,
    SkillResult,
)
from agentfleet.settings import Settings
from starters.stack.devchain import free_port

REPO = Path(__file__).resolve().parent.parent
SLOW_MS = 30_000
"""The slow bot's delay: far beyond every timeout here, so a call that returns before it did not
wait for the slow answer, on however loaded a machine."""


def forecaster(name: str = "f1", **params: Any) -> BotRef:
    return BotRef(
        name=name,
        kind=BotKind.FORECASTER,
        status=BotStatus.ACTIVE,
        owner="acme",
        params={"symbol": "BTCUSDT", **params},
    )


def remote(url: str, name: str = "r1", timeout_s: float = 5.0) -> BotRef:
    return BotRef(
        name=name,
        kind=BotKind.REMOTE,
        status=BotStatus.ACTIVE,
        params={"url": url, "timeout_s": timeout_s},
    )


@pytest_asyncio.fixture(loop_scope="session")
async def skills(migrated_database_url: str, tmp_path: Path) -> AsyncIterator[SkillActivities]:
    bound = SkillActivities(Settings(database_url=migrated_database_url, home=tmp_path))
    yield bound
    await bound.close()


async def run(skills: SkillActivities, bot: BotRef, skill: Skill, **args: Any) -> SkillResult:
    result: SkillResult = await ActivityEnvironment().run(
        skills.run_skill, SkillCall(bot=bot, skill=skill, args=args)
    )
    return result


def _start_bot(name: str, *extra: str) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "starters.remote_bot", "--port", str(port), "--name", name, *extra],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    return process, f"http://127.0.0.1:{port}"


def _wait_for_card(process: subprocess.Popen[bytes], url: str) -> None:
    deadline = time.monotonic() + 60  # its imports alone can take 20 s on a loaded machine
    while time.monotonic() < deadline:
        if process.poll() is not None:
            stderr = process.stderr.read().decode() if process.stderr else ""
            pytest.fail(f"remote bot exited with {process.returncode}: {stderr}")
        try:
            if httpx.get(f"{url}/.well-known/agent-card.json", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            time.sleep(0.05)
    pytest.fail(f"remote bot at {url} did not serve its card within 60 s")


@pytest.fixture(scope="module")
def remote_bots() -> Iterator[dict[str, str]]:
    """Two real remote bots: ``fast`` and ``slow`` (answers after SLOW_MS)."""
    started = {
        "fast": _start_bot("remote-fast"),
        "slow": _start_bot("remote-slow", "--delay-ms", str(SLOW_MS)),
    }
    try:
        for process, url in started.values():
            _wait_for_card(process, url)
        yield {role: url for role, (_, url) in started.items()}
    finally:
        for process, _ in started.values():
            process.kill()  # the slow one may be mid-answer; nothing to shut down cleanly
            process.wait(timeout=10)


async def test_forecaster_forecasts_the_ema_of_its_synthetic_series(
    skills: SkillActivities,
) -> None:
    result = await run(
        skills, forecaster(alpha=0.25, lookback=300), Skill.FORECAST, symbol="SOLUSDT"
    )
    assert result.ok, result.error
    forecast = Forecast.model_validate(result.data)
    closes = feed.synthetic_closes("SOLUSDT", 300)
    assert forecast.value == pytest.approx(ema.ema(closes, 0.25))
    assert forecast.last == closes[-1] and forecast.symbol == "SOLUSDT"
    assert forecast.model == "ema(alpha=0.25)" and forecast.synthetic_data
    assert forecast.disclosure == "Automated agent operated by acme."


async def test_forecasters_that_share_a_series_answer_by_their_own_parameters_and_owner(
    skills: SkillActivities,
) -> None:
    bots = [
        forecaster("a", alpha=0.25),
        forecaster("b", alpha=0.25),
        forecaster("c", alpha=0.5),
        BotRef(
            name="d",
            kind=BotKind.FORECASTER,
            status=BotStatus.ACTIVE,
            owner="other",
            params={"symbol": "BTCUSDT", "alpha": 0.25},
        ),
        forecaster("e", alpha=0.25, lookback=50),
    ]
    batch = SkillBatch(
        calls=[
            SkillCall(bot=bot, skill=Skill.FORECAST, args={"symbol": "ETHUSDT", "horizon": h})
            for bot in bots
            for h in ("1h", "4h")
        ],
        per_call_timeout_s=10,
    )
    outcome = await ActivityEnvironment().run(skills.run_skill_batch, batch)
    closes = feed.synthetic_closes("ETHUSDT", 200)
    answers = {(r.bot, r.data["horizon"]): Forecast.model_validate(r.data) for r in outcome.results}
    assert len(answers) == 10 and all(r.ok for r in outcome.results)
    for (name, horizon), forecast in answers.items():
        bot = next(bot for bot in bots if bot.name == name)
        alpha, lookback = bot.params["alpha"], bot.params.get("lookback", 200)
        series = feed.synthetic_closes("ETHUSDT", lookback)
        assert (forecast.bot, forecast.horizon, forecast.symbol) == (name, horizon, "ETHUSDT")
        assert forecast.value == pytest.approx(ema.ema(series, alpha))
        assert forecast.model == f"ema(alpha={alpha:g})"
        assert forecast.disclosure == f"Automated agent operated by {bot.owner}."
    assert answers["a", "1h"].value == answers["b", "1h"].value != answers["c", "1h"].value
    assert answers["a", "1h"].value == pytest.approx(ema.ema(closes, 0.25))
    assert answers["e", "1h"].value != answers["a", "1h"].value


async def test_forecaster_uses_imported_bars_once_there(
    skills: SkillActivities, migrated_database_url: str, tmp_path: Path
) -> None:
    csv = tmp_path / "p.csv"
    csv.write_text(
        "time,close\n" + "".join(f"{1735689600 + i * 3600},{100 + i}\n" for i in range(30))
    )
    csv_import.import_csv(migrated_database_url, csv, "ADAUSDT")
    result = await run(skills, forecaster(lookback=20, alpha=1), Skill.FORECAST, symbol="ADAUSDT")
    assert result.ok, result.error
    assert result.data["value"] == 129 and result.data["synthetic_data"] is False


async def test_forecaster_reports_status_and_backtest_performance(skills: SkillActivities) -> None:
    status = await run(skills, forecaster(lookback=150), Skill.STATUS)
    assert status.ok and status.data["series"]["bars"] == 150
    assert status.data["series"]["synthetic"] and status.data["model"] == "ema(alpha=0.3)"
    result = await run(skills, forecaster(lookback=150), Skill.PERFORMANCE)
    assert result.ok, result.error
    performance = Performance.model_validate(result.data)
    expected = ema.backtest_ema(feed.synthetic_closes("BTCUSDT", 150), 0.3)
    assert performance.forecasts == 149
    assert performance.mean_abs_error == pytest.approx(expected.mean_abs_error)
    assert performance.hit_rate is not None and 0 <= performance.hit_rate <= 1
    weekly = await run(skills, forecaster(), Skill.PERFORMANCE, window="7d")
    assert weekly.data["forecasts"] == 168 and weekly.data["window"] == "7d"


async def test_tune_suggests_the_best_alpha_without_applying_it(skills: SkillActivities) -> None:
    bot = forecaster(alpha=0.05)
    result = await run(skills, bot, Skill.TUNE)
    assert result.ok, result.error
    data = result.data
    assert data["applied"] is False and bot.params["alpha"] == 0.05
    assert data["suggested"]["alpha"] in TUNE_ALPHAS
    assert data["suggested_mae"] <= data["current_mae"]
    assert data["suggested_mae"] == min(v for v in data["grid"].values() if v is not None)
    asked = await run(skills, bot, Skill.TUNE, alpha="0.5")
    assert asked.ok and asked.data["suggested"]["alpha"] == 0.5 and asked.data["grid"] == {}
    bad = await run(skills, bot, Skill.TUNE, alpha=2)
    assert not bad.ok and bad.error is not None and "alpha" in bad.error


async def test_patterns_are_detected_and_checked_on_the_bots_own_data(
    skills: SkillActivities,
) -> None:
    bot = forecaster(lookback=400)
    shared = await run(skills, bot, Skill.SHARE_PATTERN)
    assert shared.ok, shared.error
    pattern = shared.data["pattern"]
    assert pattern["regime"] in set(regimes.Regime) and pattern["source"] == "f1"
    closes = feed.synthetic_closes("BTCUSDT", 400)
    assert pattern["regime"] == regimes.detect_regime(closes)[0].value
    other = forecaster("f2", lookback=400)
    agree = await run(skills, other, Skill.RECEIVE_INTELLIGENCE, item=pattern)
    assert agree.ok and agree.data["holds"] is True
    assert 0 <= agree.data["confidence"] <= 1
    different = next(r for r in regimes.Regime if r.value != pattern["regime"])
    disagree = await run(
        skills, other, Skill.RECEIVE_INTELLIGENCE, item={**pattern, "regime": different.value}
    )
    assert disagree.ok and disagree.data["holds"] is False
    missing = await run(skills, other, Skill.RECEIVE_INTELLIGENCE)
    assert not missing.ok and "needs an item" in (missing.error or "")
    unknown = await run(skills, other, Skill.RECEIVE_INTELLIGENCE, item={**pattern, "regime": "x"})
    assert not unknown.ok and "unknown regime" in (unknown.error or "")


async def test_paused_bots_and_publishers_answer_what_they_can(skills: SkillActivities) -> None:
    paused = forecaster().model_copy(update={"status": BotStatus.PAUSED})
    refused = await run(skills, paused, Skill.FORECAST, symbol="BTCUSDT")
    assert not refused.ok and refused.error == "bot f1 is paused"
    assert (await run(skills, paused, Skill.STATUS)).ok
    publisher = BotRef(
        name="p1", kind=BotKind.PUBLISHER, status=BotStatus.ACTIVE, params={"channel": "news"}
    )
    forecast = await run(skills, publisher, Skill.FORECAST, symbol="BTCUSDT")
    assert not forecast.ok and forecast.error == "publisher bots do not forecast"
    status = await run(skills, publisher, Skill.STATUS)
    assert status.ok and status.data["channel"] == "news"
    performance = await run(skills, publisher, Skill.PERFORMANCE)
    assert performance.ok and Performance.model_validate(performance.data).forecasts == 0


async def test_batch_answers_every_call_and_isolates_failures(
    skills: SkillActivities, remote_bots: dict[str, str]
) -> None:
    calls = [
        SkillCall(bot=forecaster(f"f{i}"), skill=Skill.FORECAST, args={"symbol": "BTCUSDT"})
        for i in range(50)
    ]
    calls.insert(7, SkillCall(bot=forecaster("broken", alpha=5), skill=Skill.FORECAST))
    slow = remote(remote_bots["slow"], "slow", timeout_s=2 * SLOW_MS / 1000)
    calls.insert(9, SkillCall(bot=slow, skill=Skill.FORECAST))
    env = ActivityEnvironment()
    env.info = dataclasses.replace(env.info, heartbeat_timeout=timedelta(seconds=0.3))
    beats: list[tuple[Any, ...]] = []
    env.on_heartbeat = lambda *details: beats.append(details)
    started = time.monotonic()
    batch = await env.run(skills.run_skill_batch, SkillBatch(calls=calls, per_call_timeout_s=0.5))
    assert time.monotonic() - started < SLOW_MS / 1000, "the batch waited for the slow answer"
    # While the slow call runs, the heartbeats say 51 of 52 done (one more may land between the
    # slow call's timeout and the end of the batch, saying 52).
    assert (51, 52) in beats, "heartbeats count the calls done while it waits"
    assert all(total == 52 and done <= 52 for done, total in beats)
    assert [r.bot for r in batch.results] == [c.bot.name for c in calls]
    failed = {r.bot: r.error for r in batch.results if not r.ok}
    assert set(failed) == {"broken", "slow"}
    assert "alpha" in (failed["broken"] or "")
    assert failed["slow"] == "no answer within 0.5 s"
    values = {r.data["value"] for r in batch.results if r.ok}
    assert len(values) == 1, "every forecaster saw the same series"


async def test_remote_bot_forecasts_over_a2a(
    skills: SkillActivities, remote_bots: dict[str, str]
) -> None:
    bot = remote(remote_bots["fast"])
    result = await run(skills, bot, Skill.FORECAST, symbol="ETHUSDT", horizon="4h")
    assert result.ok, result.error
    forecast = Forecast.model_validate(result.data)
    assert forecast.bot == "r1" and result.data["remote_name"] == "remote-fast"
    assert forecast.value == pytest.approx(ema.ema(feed.synthetic_closes("ETHUSDT", 200), 0.3))
    assert forecast.horizon == "4h" and forecast.synthetic_data
    assert "Automated agent" in forecast.disclosure
    card_url = remote(f"{remote_bots['fast']}/.well-known/agent-card.json")
    assert (await run(skills, card_url, Skill.STATUS)).data["bot"] == "remote-fast"


async def test_remote_bot_errors_are_clear_results(
    skills: SkillActivities, remote_bots: dict[str, str]
) -> None:
    unknown = await run(skills, remote(remote_bots["fast"]), Skill.TUNE)
    assert not unknown.ok
    assert unknown.error == (
        "remote bot r1 does not offer tune (its card lists: forecast, status, performance)"
    )
    refused = await run(skills, remote(remote_bots["fast"]), Skill.FORECAST, symbol="bad symbol")
    assert not refused.ok and "refused" in (refused.error or "")
    slow = remote(remote_bots["slow"], timeout_s=0.5)
    started = time.monotonic()
    timed_out = await run(skills, slow, Skill.FORECAST, symbol="BTCUSDT")
    assert time.monotonic() - started < SLOW_MS / 1000, "the call waited for the slow answer"
    assert not timed_out.ok and timed_out.error == "remote bot r1 did not answer within 0.5 s"
    down = await run(skills, remote(f"http://127.0.0.1:{free_port()}"), Skill.STATUS)
    assert not down.ok and "cannot reach remote bot r1" in (down.error or "")


@pytest.mark.parametrize(
    ("reply", "error"),
    [
        (httpx.Response(503), "remote bot r1 answered HTTP 503"),
        (httpx.Response(200, text="<html>"), "remote bot r1 answered something not JSON"),
        (httpx.Response(200, json={"result": {}}), "malformed reply (not JSON-RPC 2.0)"),
        (
            httpx.Response(200, json={"jsonrpc": "2.0", "id": 1, "result": {"kind": "message"}}),
            "malformed reply (no data part)",
        ),
        (
            httpx.Response(
                200,
                json={
                    "jsonrpc": "2.0",
                    "id": 1,
                    "result": {"kind": "task", "status": {"state": "failed"}},
                },
            ),
            "left the task failed",
        ),
    ],
)
async def test_remote_replies_that_are_not_answers_fail_the_call(
    reply: httpx.Response, error: str, tmp_path: Path
) -> None:
    card = {"name": "x", "url": "/rpc", "skills": [{"id": "status"}]}

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/.well-known/agent-card.json":
            return httpx.Response(200, json=card)
        return reply

    client = httpx.AsyncClient(transport=httpx.MockTransport(handler))
    bound = SkillActivities(Settings(database_url="sqlite://", home=tmp_path), http=client)
    try:
        result = await run(bound, remote("http://bot.example"), Skill.STATUS)
    finally:
        await bound.close()
    assert not result.ok and error in (result.error or "")


async def test_unreadable_prices_are_a_one_line_failure(tmp_path: Path) -> None:
    bound = SkillActivities(Settings(database_url=f"sqlite:///{tmp_path / 'empty.db'}"))
    try:
        result = await run(bound, forecaster(), Skill.FORECAST)
    finally:
        await bound.close()
    assert not result.ok
    assert result.error == "cannot read the prices of BTCUSDT: no such table: price_bars"
