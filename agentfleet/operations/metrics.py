"""Application metrics (prometheus-client) and the one ``/metrics`` endpoint of a worker.

The Temporal SDK exports its own metrics through the Runtime's ``PrometheusConfig`` on an internal
loopback port; :class:`SdkMetricsCollector` folds that scrape into the process's registry, so a
worker answers Prometheus on a single ``/metrics`` port with SDK and app metrics together;
:class:`FiguresCollector` adds the fleet's figures from the database (the dashboards' gauges).
"""

from __future__ import annotations

import logging
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from prometheus_client import REGISTRY, Counter, Info, start_http_server
from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector

from agentfleet.agents.usage import RUN_AUDIT_KIND
from agentfleet.operations.figures import FUSD_UNIT, FleetFigures, Quantiles, read_figures

log = logging.getLogger("agentfleet.operations.metrics")

AUDIT_EVENTS = Counter(
    "fleet_audit_events_recorded",
    "Audit rows written (retries that found a row excluded)",
    ["kind"],
)
CHANNEL_SENDS = Counter(
    "fleet_channel_sends",
    "Content sends per channel and outcome (sent, rate_limited, not_sent, maybe_sent, refused)",
    ["channel", "outcome"],
)
AGENT_TOKENS = Counter(
    "agentfleet_agent_tokens",
    "Tokens of agents' model calls, each call counted once (its usage row is new)",
    ["bot", "model", "direction"],
)
AGENT_COST_UNITS = Counter(
    "agentfleet_agent_cost_units",
    "What agents' model calls cost, in token units (micro-fUSD), each call counted once",
    ["bot", "model"],
)
AGENT_RUNS = Counter(
    "agentfleet_agent_runs",
    "Agent runs that ended, by final status (completed, over_budget, refused, failed)",
    ["bot", "status"],
)
BUILD = Info("fleet_build", "agentfleet version of this process")


def count_model_call(
    bot: str, model: str, input_tokens: int, output_tokens: int, cost: int
) -> None:
    """One agent model call whose usage row was just written (never for a retry's)."""
    AGENT_TOKENS.labels(bot=bot, model=model, direction="input").inc(input_tokens)
    AGENT_TOKENS.labels(bot=bot, model=model, direction="output").inc(output_tokens)
    AGENT_COST_UNITS.labels(bot=bot, model=model).inc(cost)


def count_audit_event(kind: str, actor: str, detail: Mapping[str, Any]) -> None:
    """An audit row just written: counted by kind; an agent run's end also by its status."""
    AUDIT_EVENTS.labels(kind=kind).inc()
    if kind == RUN_AUDIT_KIND:
        AGENT_RUNS.labels(bot=actor, status=str(detail.get("status") or "unknown")).inc()


def _version() -> str:
    try:
        return version("agentfleet")
    except PackageNotFoundError:
        return "unknown"


BUILD.info({"version": _version()})


class SdkMetricsCollector(Collector):
    """Re-exports what the Temporal SDK's Prometheus endpoint serves (empty while it is down)."""

    def __init__(self, url: str, timeout: float = 2.0) -> None:
        self._url = url
        self._timeout = timeout

    def describe(self) -> list[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        try:
            with urllib.request.urlopen(self._url, timeout=self._timeout) as response:  # noqa: S310
                text = response.read().decode()
        except (urllib.error.URLError, OSError):
            return
        yield from text_string_to_metric_families(text)


class FiguresCollector(Collector):
    """The fleet's figures (:func:`agentfleet.operations.figures.read_figures`) as gauges, read from
    the
    database on each scrape (cached ``max_age_s``, so concurrent scrapes share one read).

    Every worker exports the same values (one database): dashboards aggregate them with
    ``max by (...)``. A database error yields only ``fleet_figures_up 0`` and is logged once
    until a read succeeds again, so the scrape (and the SDK metrics in it) still answers.
    """

    def __init__(self, database_url: str, max_age_s: float = 5.0) -> None:
        self._url = database_url
        self._max_age_s = max_age_s
        self._lock = threading.Lock()
        self._cached: tuple[float, list[Metric]] | None = None
        self._failing = False

    def describe(self) -> list[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            now = time.monotonic()
            if self._cached is None or now - self._cached[0] > self._max_age_s:
                self._cached = (now, self._read())
            families = self._cached[1]
        yield from families

    def _read(self) -> list[Metric]:
        started = time.perf_counter()
        try:
            figures = read_figures(self._url)
        except Exception as exc:  # noqa: BLE001 - any database failure: the scrape still answers
            if not self._failing:
                reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
                log.warning("fleet figures unavailable (%s): %s", type(exc).__name__, reason)
            self._failing = True
            return [_gauge("fleet_figures_up", "1 when the last figures read succeeded", 0.0)]
        if self._failing:
            log.info("fleet figures readable again")
        self._failing = False
        families = figure_metrics(figures)
        families.append(_gauge("fleet_figures_up", "1 when the last figures read succeeded", 1.0))
        families.append(
            _gauge(
                "fleet_figures_read_seconds",
                "Time the last figures read took (a few GROUP BY queries)",
                time.perf_counter() - started,
            )
        )
        return families


def _gauge(name: str, documentation: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, documentation, value=value)


def _labelled(name: str, documentation: str, labels: list[str]) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, documentation, labels=labels)


def _quantiles(family: GaugeMetricFamily, values: Quantiles, *labels: str) -> None:
    for quantile, value in (("0.5", values.p50_s), ("0.95", values.p95_s)):
        if value is not None:
            family.add_metric([*labels, quantile], value)


def figure_metrics(figures: FleetFigures) -> list[Metric]:
    """One gauge family per figure (families without rows still carry their HELP and TYPE)."""
    bots = _labelled("fleet_bots", "Bots by status and kind (bots table)", ["status", "kind"])
    for row in figures.bots:
        bots.add_metric([row.status, row.kind], row.count)
    payments = _labelled("fleet_payments", "Ledger payments by status", ["status"])
    amounts = _labelled(
        "fleet_payments_amount_fusd", "Ledger amount by payment status, in fUSD", ["status"]
    )
    for paid in figures.payments.by_status:
        payments.add_metric([paid.status], paid.count)
        amounts.add_metric([paid.status], paid.amount_fusd)
    settling = _gauge(
        "fleet_payments_settling",
        "Settlement transactions sent for payments not in the ledger yet",
        figures.payments.settling,
    )
    settle = _labelled(
        "fleet_payment_settle_latency_seconds",
        "Settlement sent to ledger row, settled payments of the last 24 h (p50, p95)",
        ["quantile"],
    )
    _quantiles(settle, figures.payments.settle_latency)
    content = figures.content
    items = _labelled("fleet_content_items", "Content items by state", ["state"])
    for state, count in content.by_state.items():
        items.add_metric([state], count)
    oldest = _labelled(
        "fleet_content_approval_oldest_wait_seconds",
        "How long the oldest item awaiting approval has waited",
        [],
    )
    if content.oldest_wait_s is not None:
        oldest.add_metric([], content.oldest_wait_s)
    wait = _labelled(
        "fleet_content_approval_wait_seconds",
        "Scoring to a person's decision, decisions of the last 24 h (p50, p95)",
        ["quantile"],
    )
    _quantiles(wait, content.approval_wait)
    limit = _labelled(
        "fleet_channel_limit_per_second", "A channel's publish rate limit", ["channel", "kind"]
    )
    rate = _labelled(
        "fleet_channel_publish_rate_per_second",
        "Items sent per second on a channel, last 5 minutes",
        ["channel"],
    )
    published = _labelled("fleet_channel_published", "Items sent on a channel, ever", ["channel"])
    for channel in content.channels:
        limit.add_metric([channel.name, channel.kind], channel.limit_per_s)
        rate.add_metric([channel.name], channel.rate_per_s)
        published.add_metric([channel.name], channel.published)
    rounds = _labelled(
        "fleet_learning_rounds", "Learning rounds by task and status", ["task", "status"]
    )
    metric = _labelled(
        "fleet_learning_primary_metric",
        "A task's deciding metric: the champion's, and the latest round's candidate's",
        ["task", "metric", "model"],
    )
    latest = _labelled("fleet_learning_latest_round", "Latest finished round", ["task"])
    live = _labelled(
        "fleet_learning_live_rollbacks",
        "Champions fleet-health rolled back on fresh data",
        ["task"],
    )
    spent = _labelled(
        "fleet_agent_spent_today_fusd",
        "What an agent spent since 00:00 UTC, model tokens and settled purchases, in fUSD",
        ["bot", "what"],
    )
    budget = _labelled(
        "fleet_agent_budget_per_day_fusd", "An agent's budget.per_day, in fUSD", ["bot"]
    )
    calls = _labelled(
        "fleet_agent_model_calls_today", "An agent's model calls since 00:00 UTC", ["bot"]
    )
    for agent in figures.agents:
        spent.add_metric([agent.bot, "tokens"], agent.token_units / FUSD_UNIT)
        spent.add_metric([agent.bot, "purchases"], agent.purchase_units / FUSD_UNIT)
        calls.add_metric([agent.bot], agent.model_calls)
        if agent.budget_units is not None:
            budget.add_metric([agent.bot], agent.budget_units / FUSD_UNIT)
    for task in figures.learning:
        for status, count in task.rounds_by_status.items():
            rounds.add_metric([task.task, status], count)
        if task.champion_value is not None:
            metric.add_metric([task.task, task.metric, "champion"], task.champion_value)
        if task.latest_value is not None:
            metric.add_metric([task.task, task.metric, "latest_candidate"], task.latest_value)
        if task.latest_round is not None:
            latest.add_metric([task.task], task.latest_round)
        live.add_metric([task.task], task.live_rollbacks)
    return [
        bots,
        payments,
        amounts,
        settling,
        settle,
        items,
        oldest,
        wait,
        limit,
        rate,
        published,
        rounds,
        metric,
        latest,
        live,
        spent,
        budget,
        calls,
    ]


def serve(
    port: int,
    sdk_metrics_address: str | None,
    host: str = "127.0.0.1",
    database_url: str | None = None,
) -> None:
    """Serve ``/metrics`` on ``host:port`` in a daemon thread, including SDK metrics if given
    and the fleet's figures from ``database_url`` if given."""
    if sdk_metrics_address:
        REGISTRY.register(SdkMetricsCollector(f"http://{sdk_metrics_address}/metrics"))
    if database_url:
        REGISTRY.register(FiguresCollector(database_url))
    start_http_server(port, addr=host)
