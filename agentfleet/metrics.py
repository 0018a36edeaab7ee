"""Application metrics (prometheus-client) and the one ``/metrics`` endpoint of a worker.

The Temporal SDK exports its own metrics through the Runtime's ``PrometheusConfig`` on an internal
loopback port; :class:`SdkMetricsCollector` folds that scrape into the process's registry, so a
worker answers Prometheus on a single ``/metrics`` port with SDK and app metrics together.
"""

from __future__ import annotations

import urllib.error
import urllib.request
from collections.abc import Iterator
from importlib.metadata import PackageNotFoundError, version

from prometheus_client import REGISTRY, Counter, Info, start_http_server
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector

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
BUILD = Info("fleet_build", "agentfleet version of this process")


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


def serve(port: int, sdk_metrics_address: str | None, host: str = "127.0.0.1") -> None:
    """Serve ``/metrics`` on ``host:port`` in a daemon thread, including SDK metrics if given."""
    if sdk_metrics_address:
        REGISTRY.register(SdkMetricsCollector(f"http://{sdk_metrics_address}/metrics"))
    start_http_server(port, addr=host)
