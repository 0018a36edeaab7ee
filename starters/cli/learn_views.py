"""How ``fleet learn`` draws rounds, model versions and shared patterns for a person."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from rich.table import Table

if TYPE_CHECKING:
    from agentfleet.learning.patterns import PatternView
    from agentfleet.learning.rounds import CampaignView
    from agentfleet.models import LearningRoundRecord, ModelVersion, PatternRecord


def campaign_table(view: CampaignView) -> Table:
    """One row per round of a campaign: its metric, loss, champion and who took part."""
    metric = view.primary or "metric"
    table = Table(
        "round",
        metric,
        "loss",
        "champion",
        "participants",
        "dropped",
        "excluded",
        "outcome",
        title=f"{view.task}: {len(view.rounds)} of {view.rounds_planned} rounds",
    )
    for summary in view.rounds:
        table.add_row(
            str(summary.round),
            "-" if summary.metric is None else f"{summary.metric:.4f}",
            "-" if summary.loss is None else f"{summary.loss:.4f}",
            summary.champion or "-",
            str(summary.participants),
            str(summary.dropped),
            str(summary.excluded),
            summary.status.value.replace("_", " "),
        )
    return table


def rounds_table(rows: Sequence[LearningRoundRecord]) -> Table:
    """Recorded rounds: who took part, who was dropped or excluded (and why), the champion."""
    table = Table("round", "task", "status", "participants", "dropped", "excluded", "champion")
    for row in rows:
        table.add_row(
            row.round_id,
            row.task,
            row.status.replace("_", " "),
            str(len(row.participants)),
            "; ".join(f"{d['participant']}: {d['reason']}" for d in row.dropped)[:60],
            "; ".join(f"{e['participant']}: {e['reason']}" for e in row.excluded)[:60],
            row.champion or "-",
        )
    return table


def versions_table(rows: Sequence[ModelVersion]) -> Table:
    """A task's model registry: each version, its status, lineage and metrics."""
    table = Table("version", "status", "parent", "round", "metrics", "participants", "artifact")
    for row in rows:
        metrics = ", ".join(
            f"{k} {v:.4f}" for k, v in row.metrics.items() if isinstance(v, int | float)
        )
        table.add_row(
            row.version_id,
            row.status,
            row.parent or "-",
            row.round_id or "-",
            metrics[:50],
            str(len(row.participants)),
            row.artifact[:19] + "…",
        )
    return table


def share_line(view: PatternView, source: str) -> str:
    """What a share found: the pattern, whether it held, for how many bots."""
    pattern = view.pattern
    said = f"{pattern.regime} on {pattern.symbol} ({pattern.confidence:.2f})" if pattern else "-"
    rate = "-" if view.success_rate is None else f"{view.success_rate:.0%}"
    return (
        f"{view.pattern_id}: {source} sees {said}; {view.status.value}: held for "
        f"{view.holds} of {view.asked} bots ({rate})"
        + (f"; not sent to {len(view.not_reached)}" if view.not_reached else "")
    )


def patterns_table(rows: Sequence[PatternRecord]) -> Table:
    """Shared patterns and how often they held."""
    table = Table("pattern", "source", "symbol", "regime", "confidence", "status", "held")
    for row in rows:
        rate = "-" if row.success_rate is None else f"{row.success_rate:.0%}"
        table.add_row(
            row.pattern_id,
            row.source,
            row.symbol,
            row.regime,
            f"{row.confidence:.2f}",
            row.status,
            f"{row.holds}/{row.asked} ({rate})",
        )
    return table
