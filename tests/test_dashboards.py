"""The Grafana dashboards ask only for metrics a worker really exports.

A real worker process (``python -m workers.main --metrics-port``) runs a skeleton workflow and a
fleet command that fails (so the SDK's failure counters exist too), then its ``/metrics`` is
scraped: every metric name in every panel's query and every template variable must be in it.
"""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from temporalio.client import WorkflowFailureError
from temporalio.testing import WorkflowEnvironment

from agentfleet import taskqueues
from agentfleet.bots.commands import FleetCommand, Targets
from agentfleet.bots.model import Skill
from agentfleet.db import dispose_engine, upgrade_database
from agentfleet.messages import SkeletonInput
from agentfleet.operations.metrics import FiguresCollector
from agentfleet.ports import free_port
from tests.fixtures.worker import worker_env

DASHBOARDS = Path(__file__).resolve().parents[1] / "deploy" / "grafana" / "dashboards"
DATASOURCE = {"type": "prometheus", "uid": "prometheus"}
PROMQL_WORDS = {
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "and",
    "or",
    "unless",
    "bool",
    "offset",
    "inf",
    "nan",
}
SUFFIXES = {
    "counter": ("_total", "_created"),
    "histogram": ("_bucket", "_sum", "_count", "_created"),
    "summary": ("_sum", "_count", "_created"),
    "info": ("_info",),
}


def dashboards() -> dict[str, dict[str, Any]]:
    return {
        path.name: json.loads(path.read_text(encoding="utf-8"))
        for path in sorted(DASHBOARDS.glob("*.json"))
    }


def queries(dashboard: dict[str, Any]) -> Iterator[str]:
    """Every PromQL query of a dashboard: panel targets and template variable queries."""
    for panel in dashboard.get("panels", []):
        for target in panel.get("targets", []):
            yield target["expr"]
    for variable in dashboard.get("templating", {}).get("list", []):
        if variable.get("type") == "query":
            query = variable["query"]
            yield query["query"] if isinstance(query, dict) else query


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects (functions, labels, keywords left out)."""
    label_values = re.fullmatch(r"\s*label_values\(\s*([A-Za-z_:][\w:]*)\s*,.*\)\s*", expr)
    if label_values:
        return {label_values.group(1)}
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    text = re.sub(r"\{[^}]*\}", " ", text)
    text = re.sub(r"\[[^\]]*\]", " ", text)
    text = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    names = set()
    for match in re.finditer(r"(?<![\w$.])([A-Za-z_:][\w:]*)(?!\w)(\s*\()?", text):
        name, call = match.group(1), match.group(2)
        if call or name.lower() in PROMQL_WORDS:
            continue
        names.add(name)
    return names


def exported_names(scrape: str) -> set[str]:
    """Every series name a scrape offers, families without samples (HELP/TYPE only) included."""
    names: set[str] = set()
    for family in text_string_to_metric_families(scrape):
        names.add(family.name)
        names.update(family.name + suffix for suffix in SUFFIXES.get(family.type, ()))
        names.update(sample.name for sample in family.samples)
    return names


def test_metric_names_are_read_from_promql() -> None:
    expr = (
        "histogram_quantile(0.95, sum by (le, activity_type) (rate(temporal_activity_"
        'execution_latency_bucket{namespace=~"$namespace", x="a{b}"}[$__rate_interval]))) '
        "/ on (channel) max by (channel) (fleet_channel_limit_per_second) or vector(0)"
    )
    assert metric_names(expr) == {
        "temporal_activity_execution_latency_bucket",
        "fleet_channel_limit_per_second",
    }
    assert metric_names("label_values(temporal_workflow_completed, namespace)") == {
        "temporal_workflow_completed"
    }


@pytest.mark.parametrize("name", sorted(dashboards()))
def test_dashboard_is_valid_grafana_json(name: str) -> None:
    dashboard = dashboards()[name]
    assert re.fullmatch(r"agentfleet-[a-z-]+", dashboard["uid"]), dashboard["uid"]
    assert dashboard["title"].startswith("agentfleet / ")
    panels = dashboard["panels"]
    assert panels, f"{name} has no panels"
    ids = [panel["id"] for panel in panels]
    assert len(ids) == len(set(ids)), f"{name}: duplicate panel ids"
    for panel in panels:
        where = f"{name} panel {panel['id']} ({panel['title']})"
        assert panel["datasource"] == DATASOURCE, where
        assert panel["description"], where
        assert {"h", "w", "x", "y"} <= set(panel["gridPos"]), where
        assert panel["gridPos"]["x"] + panel["gridPos"]["w"] <= 24, where
        assert panel["targets"], where
        refs = [target["refId"] for target in panel["targets"]]
        assert len(refs) == len(set(refs)), where
        for target in panel["targets"]:
            assert target["datasource"] == DATASOURCE, where
            assert metric_names(target["expr"]), f"{where}: no metric in {target['expr']!r}"


def test_dashboard_uids_are_unique() -> None:
    uids = [dashboard["uid"] for dashboard in dashboards().values()]
    assert len(uids) == len(set(uids))
    assert {"agentfleet-fleet", "agentfleet-payments", "agentfleet-content"} <= set(uids)
    assert {"agentfleet-learning", "agentfleet-temporal", "agentfleet-agents"} <= set(uids)


def test_figures_collector_answers_when_the_database_is_not_there(tmp_path: Path) -> None:
    registry = CollectorRegistry()
    url = f"sqlite:///{tmp_path / 'missing' / 'fleet.db'}"
    registry.register(FiguresCollector(url))
    try:
        scrape = generate_latest(registry).decode()
    finally:
        dispose_engine(url)
    assert "fleet_figures_up 0.0" in scrape
    assert "fleet_bots" not in scrape


class MetricsWorker:
    """``python -m workers.main --metrics-port PORT`` on every queue, on its own SQLite."""

    def __init__(self, dev_env: WorkflowEnvironment, folder: Path) -> None:
        self.database_url = f"sqlite:///{folder / 'fleet.db'}"
        upgrade_database(self.database_url)
        env = worker_env(dev_env, self.database_url, "http://127.0.0.1:9", folder, folder)
        self.port = free_port()
        self.log = folder / "worker.log"
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "workers.main", "--metrics-port", str(self.port)],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    def died(self) -> str | None:
        """The worker's log if it exited."""
        return None if self.proc.poll() is None else self.log.read_text()

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        dispose_engine(self.database_url)


@pytest.fixture
def metrics_worker(dev_env: WorkflowEnvironment, tmp_path: Path) -> Iterator[MetricsWorker]:
    worker = MetricsWorker(dev_env, tmp_path)
    yield worker
    worker.stop()


async def _scrape(worker: MetricsWorker) -> str:
    async with httpx.AsyncClient() as http:
        for _ in range(300):
            log = worker.died()
            if log is not None:
                raise AssertionError(f"worker exited; log:\n{log}")
            try:
                response = await http.get(f"http://127.0.0.1:{worker.port}/metrics", timeout=5)
            except httpx.TransportError:
                await asyncio.sleep(0.05)
                continue
            return response.text
    raise AssertionError("worker metrics never answered")


async def test_every_dashboard_metric_is_exported_by_a_running_worker(
    dev_env: WorkflowEnvironment, metrics_worker: MetricsWorker
) -> None:
    client = dev_env.client
    await client.execute_workflow(
        "SkeletonWorkflow",
        SkeletonInput(activities=1),
        id=f"dashboards-skeleton-{uuid.uuid4().hex[:8]}",
        task_queue=taskqueues.WORKFLOWS,
    )
    command = FleetCommand(
        command_id=f"dashboards-{uuid.uuid4().hex[:8]}",
        skill=Skill.STATUS,
        targets=Targets(query="BotKind = "),
    )
    with pytest.raises(WorkflowFailureError):
        await client.execute_workflow(
            "FleetCommandWorkflow",
            command,
            id=f"command-{command.command_id}",
            task_queue=taskqueues.WORKFLOWS,
        )
    scrape = await _scrape(metrics_worker)
    exported = exported_names(scrape)
    assert "fleet_figures_up 1.0" in scrape, scrape
    missing = sorted(
        f"{metric} ({name}: {expr})"
        for name, dashboard in dashboards().items()
        for expr in queries(dashboard)
        for metric in metric_names(expr)
        if metric not in exported
    )
    assert not missing, "metrics no worker exports:\n" + "\n".join(missing)
