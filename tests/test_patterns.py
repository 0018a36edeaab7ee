"""Shared patterns: a bot's pattern reaches every eligible bot of its kind exactly once and its
success rate is recorded; a pattern the first wave rejects goes no further."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

from temporalio.client import Client

from agentfleet import db, taskqueues
from agentfleet.bots.market.regimes import Regime
from agentfleet.bots.model import BotKind, BotStatus, Pattern
from agentfleet.learning import patterns
from agentfleet.learning.patterns import PatternStatus, PatternView, ShareOrder
from agentfleet.models import BotRecord
from agentfleet.settings import Settings
from tests.replay import record_history
from workers.main import running_workers

FORECASTERS = ["pt-a", "pt-b", "pt-c", "pt-d", "pt-e", "pt-f"]


def add_bots(url: str) -> None:
    with db.session_scope(url) as session:
        for name in FORECASTERS:
            session.add(
                BotRecord(
                    name=name,
                    kind=BotKind.FORECASTER.value,
                    owner="fleet",
                    status=BotStatus.ACTIVE.value,
                    params={"symbol": "BTCUSDT"},
                )
            )
        session.add(
            BotRecord(
                name="pt-napping",
                kind=BotKind.FORECASTER.value,
                owner="fleet",
                status=BotStatus.PAUSED.value,
            )
        )
        session.add(
            BotRecord(
                name="pt-pub",
                kind=BotKind.PUBLISHER.value,
                owner="fleet",
                status=BotStatus.ACTIVE.value,
            )
        )
        session.commit()


async def share(client: Client, order: ShareOrder) -> PatternView:
    handle = await client.start_workflow(
        "PatternShareWorkflow",
        order,
        id=order.pattern_id,
        task_queue=taskqueues.WORKFLOWS,
        result_type=PatternView,
    )
    view: PatternView = await asyncio.wait_for(handle.result(), 60)
    return view


async def test_pattern_reaches_every_eligible_bot_once_and_records_its_success_rate(
    dev_client: Client, migrated_database_url: str, tmp_path: Path
) -> None:
    add_bots(migrated_database_url)
    settings = Settings(home=tmp_path, database_url=migrated_database_url)
    async with running_workers(dev_client, settings):
        order = ShareOrder(pattern_id=f"pattern-pt-a-{uuid.uuid4().hex[:6]}", source="pt-a")
        view = await share(dev_client, order)
        backend = "postgresql" if migrated_database_url.startswith("postgresql") else "sqlite"
        await record_history(
            dev_client.get_workflow_handle(order.pattern_id), f"pattern_share_{backend}"
        )
    assert view.status is PatternStatus.VALIDATED, view
    assert view.pattern is not None and view.pattern.source == "pt-a"
    rows = patterns.validations(migrated_database_url, order.pattern_id)
    assert [r.bot for r in rows] == FORECASTERS[1:], "each eligible bot once, no one else"
    assert view.asked == 5 and view.success_rate == view.holds / 5
    [stored] = [
        p for p in patterns.list_patterns(migrated_database_url) if p.pattern_id == order.pattern_id
    ]
    assert stored.status == "validated" and stored.asked == 5


async def test_a_pattern_the_first_wave_rejects_is_not_broadcast_further(
    dev_client: Client, migrated_database_url: str, tmp_path: Path
) -> None:
    add_bots(migrated_database_url)
    settings = Settings(home=tmp_path, database_url=migrated_database_url)
    async with running_workers(dev_client, settings):
        observed = await share(
            dev_client,
            ShareOrder(pattern_id=f"pattern-pt-b-{uuid.uuid4().hex[:6]}", source="pt-b"),
        )
        assert observed.pattern is not None
        wrong = next(r for r in Regime if r.value != observed.pattern.regime)
        order = ShareOrder(
            pattern_id=f"pattern-pt-c-{uuid.uuid4().hex[:6]}",
            source="pt-c",
            claim=Pattern(symbol="BTCUSDT", regime=wrong.value, confidence=0.9, source="pt-c"),
            first_wave=2,
        )
        view = await share(dev_client, order)
    assert view.status is PatternStatus.REJECTED and view.holds == 0
    rows = patterns.validations(migrated_database_url, order.pattern_id)
    assert [r.bot for r in rows] == ["pt-a", "pt-b"], "only the first wave was asked"
    assert view.not_reached == ["pt-d", "pt-e", "pt-f"]
