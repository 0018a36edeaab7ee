"""``fleet learn plot``: a task's rounds as a PNG, the candidate's metrics per round and the
champion after each, promotions and the reigning champion marked.

Drawn with matplotlib's Agg canvas on a :class:`~matplotlib.figure.Figure` of its own (no
``pyplot``: no global backend or figure state, safe in any process). The picture depends only
on its inputs: the same rows give the same PNG.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from agentfleet.learning.registry import metrics_of
from agentfleet.learning.rounds import ModelStatus, RoundStatus
from agentfleet.learning.tasks.builtin import task_named
from agentfleet.models import LearningRoundRecord, ModelVersion

SECOND_METRICS = ("loss", "mae")
"""The lower panel: the first of these a task reports (digits ``loss``, forecast ``mae``)."""


def _primary(task: str, rounds: Sequence[LearningRoundRecord]) -> tuple[str, bool]:
    """The task's deciding metric and its direction; for a task this build does not know, the
    first numeric metric the rounds recorded (direction unknown: higher assumed)."""
    try:
        known = task_named(task)
    except ValueError:
        for row in rounds:
            for key in metrics_of(row.metrics):
                if not key.startswith("val_"):
                    return key, True
        return "metric", True
    return known.primary_metric, known.higher_is_better


def _value(metrics: dict[str, float], key: str) -> float:
    value = metrics.get(key, math.nan)
    return value if math.isfinite(value) else math.nan


def _panel(
    axes: Axes,
    metric: str,
    numbers: list[int],
    rounds: list[LearningRoundRecord],
    by_id: dict[str, ModelVersion],
) -> None:
    """One metric: the candidate per round (filled: promoted, hollow: rolled back), its mean on
    the participants' validation data, and the champion after each round (a step line)."""
    candidate = [_value(metrics_of(r.metrics), metric) for r in rounds]
    validation = [_value(metrics_of(r.metrics), f"val_{metric}") for r in rounds]
    champion = [
        _value(metrics_of(by_id[r.champion].metrics), metric) if r.champion in by_id else math.nan
        for r in rounds
    ]
    axes.step(numbers, champion, where="post", color="tab:green", lw=2, label="champion after")
    axes.plot(numbers, candidate, color="tab:blue", lw=1, alpha=0.5)
    promoted = [r.status == RoundStatus.PROMOTED.value for r in rounds]
    for wanted, face, label in ((True, "tab:blue", "promoted"), (False, "white", "rolled back")):
        points = [
            (number, value)
            for number, value, was in zip(numbers, candidate, promoted, strict=True)
            if was is wanted and not math.isnan(value)
        ]
        if points:
            xs, ys = zip(*points, strict=True)
            axes.plot(xs, ys, "o", color="tab:blue", mfc=face, label=f"candidate, {label}")
    if not all(math.isnan(v) for v in validation):
        axes.plot(numbers, validation, ":", color="tab:gray", label="candidate, bots' validation")
    failed = [n for n, r in zip(numbers, rounds, strict=True) if r.status == RoundStatus.FAILED]
    for index, number in enumerate(failed):
        axes.axvline(
            number, color="tab:red", ls=":", lw=1, label="_nolegend_" if index else "round failed"
        )
    axes.set_ylabel(metric)
    axes.grid(True, alpha=0.3)


def _mark_champion(
    axes: Axes,
    metric: str,
    numbers: list[int],
    rounds: list[LearningRoundRecord],
    versions: Sequence[ModelVersion],
) -> str:
    """A star on the round that produced the reigning champion (a dashed line when no plotted
    round did: the initial model, or a rollback to a round not shown); the legend's words."""
    reigning = next((v for v in versions if v.status == ModelStatus.CHAMPION.value), None)
    if reigning is None:
        return "no champion"
    value = _value(metrics_of(reigning.metrics), metric)
    label = f"champion {reigning.version_id}"
    origin = [n for n, r in zip(numbers, rounds, strict=True) if r.candidate == reigning.version_id]
    if origin and not math.isnan(value):
        axes.plot(origin[0], value, "*", ms=18, color="gold", mec="black", label=label)
        axes.annotate(
            f"{reigning.version_id}\n{value:.4f}",
            (origin[0], value),
            xytext=(-14, 0),
            textcoords="offset points",
            ha="right",
            va="center",
            fontsize=8,
        )
    elif not math.isnan(value):
        axes.axhline(value, color="gold", ls="--", lw=1.5, label=f"{label} (not from these)")
    return label


def rounds_figure(
    rounds: Sequence[LearningRoundRecord], versions: Sequence[ModelVersion], *, task: str
) -> Figure:
    """The figure :func:`render_rounds` saves (for callers that embed or inspect it).
    ValueError (one line) when there is no round of ``task`` to draw."""
    mine = sorted((r for r in rounds if r.task == task), key=lambda r: (r.round, r.round_id))
    mine = [r for r in mine if r.status != RoundStatus.RUNNING.value]
    if not mine:
        raise ValueError(f"no finished learning rounds of task {task} to plot")
    by_id = {v.version_id: v for v in versions if v.task == task}
    primary, higher = _primary(task, mine)
    seen = {key for r in mine for key in metrics_of(r.metrics)}
    second = next((m for m in SECOND_METRICS if m in seen and m != primary), None)
    numbers = [r.round for r in mine]

    figure = Figure(figsize=(9, 6.5 if second else 4.5), dpi=100, layout="constrained")
    FigureCanvasAgg(figure)
    panels: list[Axes] = list(
        figure.subplots(2 if second else 1, 1, sharex=True, squeeze=False)[:, 0]
    )
    _panel(panels[0], primary, numbers, mine, by_id)
    champion = _mark_champion(panels[0], primary, numbers, mine, list(by_id.values()))
    if second is not None:
        _panel(panels[1], second, numbers, mine, by_id)
    promoted = sum(r.status == RoundStatus.PROMOTED.value for r in mine)
    direction = "higher" if higher else "lower"
    panels[0].set_title(
        f"{task}: {len(mine)} rounds, {promoted} promoted; {champion} "
        f"({primary}, {direction} is better)"
    )
    panels[0].legend(loc="best", fontsize=8)
    panels[-1].set_xlabel("round")
    panels[-1].xaxis.set_major_locator(MaxNLocator(integer=True))
    return figure


def render_rounds(
    rounds: list[LearningRoundRecord],
    versions: list[ModelVersion],
    path: Path,
    *,
    task: str,
) -> Path:
    """Draw ``task``'s finished rounds (rows of other tasks are ignored) to the PNG ``path``
    (900 px wide) and return it.

    Upper panel: the task's primary metric (``accuracy``, ``rmse``) of each round's candidate
    on the held-out split, filled when promoted, hollow when rolled back, dotted its mean on the
    participants' validation data; the champion's after each round as a step line; the
    reigning champion (``versions``, status ``champion``) starred on the round that made it
    (a dashed line when no plotted round made it). Lower panel: ``loss`` (forecast: ``mae``)
    the same way. Failed rounds: red dotted lines.
    ValueError (one line, nothing written) when there is no finished round of ``task``,
    ``path`` does not end in ``.png`` or its folder does not exist.
    """
    figure = rounds_figure(rounds, versions, task=task)
    if path.suffix.lower() != ".png":
        raise ValueError(f"{path} is not a .png file name")
    if not path.parent.is_dir():
        raise ValueError(f"folder {path.parent} does not exist")
    figure.savefig(path, format="png", metadata={"Software": None})
    return path
