"""``fleet report`` and the figures behind it (and behind the dashboards).

The figures are checked row by row on SQLite and PostgreSQL; the HTML is opened in headless
Chromium, which must see every section and the inline SVG charts and paint a non-blank page.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import matplotlib.image
import numpy
import pytest
from temporalio.testing import WorkflowEnvironment
from typer.testing import CliRunner

from agentfleet.db import dispose_engine, session_scope, upgrade_database
from agentfleet.models import (
    AuditEvent,
    BotRecord,
    ChainTransaction,
    ChannelRecord,
    ContentItem,
    LearningRoundRecord,
    ModelVersion,
    PaymentRecord,
    PublishAttempt,
    UsageRecord,
)
from agentfleet.operations.figures import read_figures
from agentfleet.operations.report import SAVED_VIEWS, agent_row, count_views, web_ui_url
from agentfleet.ports import free_port  # nothing listens on it
from starters.cli.main import app

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
SECTIONS = ("fleet", "payments", "content", "learning", "agents", "temporal")


def _at(seconds_ago: float) -> datetime:
    return NOW - timedelta(seconds=seconds_ago)


def _payment(
    pid: str, status: str, amount: int, recorded: datetime, buyer: str | None = None
) -> PaymentRecord:
    return PaymentRecord(
        payment_id=pid,
        chain_id=31337,
        asset="0xasset",
        nonce=pid.rsplit("-", 1)[-1],
        payer="0xpayer",
        pay_to="0xseller",
        amount=str(amount),
        status=status,
        buyer=buyer,
        created_at=recorded,
        updated_at=recorded,
    )


def _tx(request_id: str, nonce: int, sent: datetime) -> ChainTransaction:
    return ChainTransaction(
        request_id=request_id,
        chain_id=31337,
        sender="0xrelayer",
        nonce=nonce,
        gas_limit=100_000,
        status="confirmed",
        created_at=sent,
    )


def _audit(
    key: str, kind: str, subject: str, actor: str, at: datetime, **detail: str
) -> AuditEvent:
    return AuditEvent(
        idempotency_key=key, actor=actor, kind=kind, subject=subject, occurred_at=at, detail=detail
    )


def _usage(run: str, call: int, tokens: tuple[int, int], cost: int, at: datetime) -> UsageRecord:
    return UsageRecord(
        run_id=run,
        call_no=call,
        bot="analyst-1",
        model="gpt-4o-mini",
        input_tokens=tokens[0],
        output_tokens=tokens[1],
        cost_units=cost,
        created_at=at,
    )


def seed(url: str) -> None:
    """A small fleet: 3 bots and an agent, 3 ledger payments (one the agent's) and 1 settling, 2
    content items on one channel, 3 digits rounds (promoted, rolled back, promoted), 1 live
    rollback, and the agent's model calls and runs today and yesterday (13 h before noon)."""
    rows: list[object] = [
        BotRecord(name="forecaster-1", kind="forecaster", owner="desk", status="active"),
        BotRecord(name="forecaster-2", kind="forecaster", owner="desk", status="active"),
        BotRecord(name="publisher-1", kind="publisher", owner="desk", status="paused"),
        BotRecord(
            name="analyst-1",
            kind="agent",
            owner="desk",
            status="active",
            params={"budget": {"per_day": "0.5"}},
        ),
        _payment("payment-31337-0xa-0xp-1", "settled", 10_000, _at(100)),
        _tx("payment-31337-0xa-0xp-1", 1, _at(102)),
        _payment("payment-31337-0xa-0xp-2", "settled", 20_000, _at(50), buyer="analyst-1"),
        _tx("payment-31337-0xa-0xp-2", 2, _at(54)),
        _payment("payment-31337-0xa-0xp-3", "failed", 5_000, _at(40), buyer="analyst-1"),
        _usage("agent-analyst-1-old", 1, (5000, 900), 1290, _at(13 * 3600)),
        _usage("agent-analyst-1-aaa", 1, (1000, 200), 270, _at(600)),
        _usage("agent-analyst-1-aaa", 2, (1500, 100), 285, _at(590)),
        _usage("agent-analyst-1-bbb", 1, (800, 0), 120, _at(60)),
        _audit("run-old", "agent_run", "op", "analyst-1", _at(13 * 3600), status="completed"),
        _audit("run-aaa", "agent_run", "op", "analyst-1", _at(580), status="completed"),
        _audit("run-bbb", "agent_run", "op", "analyst-1", _at(50), status="over_budget"),
        _tx("payment-31337-0xa-0xp-4", 3, _at(5)),
        _tx("tx-31337-demo-transfer", 4, _at(500)),
        ChannelRecord(name="hooks", kind="webhook", target="http://x", rate_per_s=2, max_length=9),
        ContentItem(
            content_id="c1",
            bot="publisher-1",
            channel="hooks",
            brief="b",
            submitted_by="u",
            state="awaiting_approval",
        ),
        ContentItem(
            content_id="c2",
            bot="publisher-1",
            channel="hooks",
            brief="b",
            submitted_by="u",
            state="published",
        ),
        _audit("c1-s", "content.scores", "c1", "scorer", _at(60)),
        _audit("c2-s1", "content.scores", "c2", "scorer", _at(900)),
        _audit("c2-s2", "content.scores", "c2", "scorer", _at(300)),
        _audit("c2-d", "content.decision", "c2", "alice", _at(100)),
        _audit("c3-d", "content.decision", "c3", "policy:auto", _at(90)),
        PublishAttempt(content_id="c2", channel="hooks", state="sent", updated_at=_at(30)),
        PublishAttempt(content_id="n1", channel="hooks", state="sent", updated_at=_at(3600)),
        _audit("degraded", "model_degraded", "digits", "fleet-health", _at(10)),
        ModelVersion(
            version_id="digits-v2",
            task="digits",
            version=2,
            artifact="sha256:x",
            status="champion",
            metrics={"accuracy": 0.9},
        ),
    ]
    for number, status, accuracy in (
        (1, "promoted", 0.8),
        (2, "rolled_back", 0.7),
        (3, "promoted", 0.9),
        (4, "running", None),
    ):
        rows.append(
            LearningRoundRecord(
                round_id=f"learning-digits-{number}",
                task="digits",
                round=number,
                status=status,
                strategy="fedavg",
                metrics={} if accuracy is None else {"accuracy": accuracy, "loss": 0.3},
            )
        )
    with session_scope(url) as session:
        session.add_all(rows)


def test_figures_count_what_the_tables_hold(migrated_database_url: str) -> None:
    seed(migrated_database_url)
    figures = read_figures(migrated_database_url, series=True, now=NOW)
    assert figures.bots_by("status") == {"active": 3, "paused": 1}
    assert figures.bots_by("kind") == {"agent": 1, "forecaster": 2, "publisher": 1}
    payments = {p.status: (p.count, p.amount_fusd) for p in figures.payments.by_status}
    assert payments == {"failed": (1, 0.005), "settled": (2, 0.03)}
    assert figures.payments.settling == 1
    latency = figures.payments.settle_latency
    assert (latency.samples, latency.p50_s, latency.p95_s) == (2, 2.0, 4.0)
    content = figures.content
    assert content.by_state == {"awaiting_approval": 1, "published": 1}
    assert content.oldest_wait_s == 60.0
    assert (content.approval_wait.samples, content.approval_wait.p50_s) == (1, 200.0)
    [channel] = content.channels
    assert (channel.name, channel.limit_per_s, channel.published) == ("hooks", 2.0, 2)
    assert channel.rate_per_s == pytest.approx(1 / 300)
    [digits] = figures.learning
    assert (digits.metric, digits.higher_is_better) == ("accuracy", True)
    assert (digits.promotions, digits.rolled_back, digits.live_rollbacks) == (2, 1, 1)
    assert digits.rounds_by_status["running"] == 1
    assert (digits.champion, digits.champion_value) == ("digits-v2", 0.9)
    assert (digits.latest_round, digits.latest_value) == (3, 0.9)
    assert [(p.round, p.value) for p in digits.series] == [(1, 0.8), (2, 0.7), (3, 0.9)]
    [agent] = figures.agents
    assert (agent.bot, agent.model_calls, agent.input_tokens, agent.output_tokens) == (
        "analyst-1",
        3,
        3300,
        300,
    )
    assert (agent.token_units, agent.purchase_units, agent.budget_units) == (675, 20_000, 500_000)
    assert agent.runs == {"completed": 1, "over_budget": 1}
    assert agent.budget_used == pytest.approx(20_675 / 500_000)
    assert agent_row(agent)[3:6] == ("0.000675", "0.020000", "0.020675 of 0.500000 (4%)")


def test_web_ui_links_carry_the_query_urlencoded() -> None:
    url = web_ui_url("http://127.0.0.1:8233", "default", 'BotStatus = "paused"')
    assert url == (
        "http://127.0.0.1:8233/namespaces/default/workflows?query=BotStatus%20%3D%20%22paused%22"
    )


async def test_views_are_counted_by_temporal_visibility(dev_env: WorkflowEnvironment) -> None:
    counts = await count_views(dev_env.client, "default", "http://127.0.0.1:8233")
    assert counts.error is None
    assert [c.label for c in counts.counts] == [label for label, _ in SAVED_VIEWS]
    assert all(isinstance(c.count, int) for c in counts.counts)


def _chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        pytest.fail("chromium is not installed: `./dev install` installs it", pytrace=False)
    return found


def _browse(page: Path, tmp_path: Path, *args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(  # noqa: S603 - our own file in a browser we found on PATH
        [
            _chromium(),
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            f"--user-data-dir={tmp_path / 'chromium'}",
            "--hide-scrollbars",
            *args,
            page.as_uri(),
        ],
        capture_output=True,
        timeout=90,
        check=True,
    )


def _distinct_colours(png: Path) -> int:
    pixels = matplotlib.image.imread(png)
    return len(numpy.unique(pixels.reshape(-1, pixels.shape[-1]), axis=0))


@pytest.fixture
def sqlite_url(tmp_path: Path) -> Iterator[str]:
    """A migrated SQLite file (the page is the same on both backends; the figures test
    covers PostgreSQL)."""
    url = f"sqlite:///{tmp_path / 'fleet.db'}"
    upgrade_database(url)
    yield url
    dispose_engine(url)


def test_report_renders_in_a_headless_browser(
    sqlite_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seed(sqlite_url)
    monkeypatch.setenv("FLEET_DATABASE_URL", sqlite_url)
    monkeypatch.setenv("FLEET_TEMPORAL_ADDRESS", f"127.0.0.1:{free_port()}")
    page = tmp_path / "report.html"
    result = CliRunner().invoke(app, ["report", "--html", str(page), "--json"])
    assert result.exit_code == 0, result.output
    answer = json.loads(result.stdout)
    assert answer["html"] == str(page)
    assert answer["temporal"]["error"], "Temporal is down: the report must say so"
    text = page.read_text(encoding="utf-8")
    assert not re.search(
        r"""(src|href)=["']?(https?:)?//|<link|@import|url\((?!#)""",
        text.replace('href="http://127.0.0.1:', ""),
        re.IGNORECASE,
    ), "the page loads something from outside"
    dom = _browse(page, tmp_path, "--dump-dom").stdout.decode()
    for section in SECTIONS:
        assert f'<section id="{section}">' in dom, section
    assert dom.count("<svg") >= 7, "charts: bots, payments x2, content x2, digits, agents"
    assert "Agents: spent today (UTC) vs budget" in dom and "analyst-1" in dom
    assert [a["bot"] for a in answer["figures"]["agents"]] == ["analyst-1"]
    assert "Temporal not reachable" in dom
    assert "digits: accuracy per round" in dom
    shot = tmp_path / "report.png"
    _browse(page, tmp_path, f"--screenshot={shot}", "--window-size=1200,900")
    assert _distinct_colours(shot) > 16, "the page painted (next to) nothing"


def test_report_without_a_schema_is_one_line_and_exit_1(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FLEET_DATABASE_URL", f"sqlite:///{tmp_path / 'empty.db'}")
    monkeypatch.setenv("FLEET_TEMPORAL_ADDRESS", f"127.0.0.1:{free_port()}")
    result = CliRunner().invoke(app, ["report", "--html", str(tmp_path / "r.html")])
    assert result.exit_code == 1
    assert "has no schema yet" in result.output
    assert not (tmp_path / "r.html").exists()
