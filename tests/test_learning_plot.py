"""``render_rounds`` draws a task's finished rounds to a PNG: the primary metric and the loss per
round, the champion after each round, the reigning champion starred where it was made; no round
to draw, or a bad path, is one clear ValueError and no file."""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from matplotlib.lines import Line2D

from agentfleet.learning.plot import render_rounds, rounds_figure
from agentfleet.models import LearningRoundRecord, ModelVersion

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def round_row(
    number: int, status: str, champion: str, candidate: str | None = None, **metrics: Any
) -> LearningRoundRecord:
    return LearningRoundRecord(
        round_id=f"learning-digits-{number}",
        task="digits",
        round=number,
        status=status,
        strategy="fedavg",
        participants=["fc-a", "fc-b"],
        candidate=candidate,
        champion=champion,
        metrics=metrics,
    )


def version(number: int, status: str, accuracy: float, loss: float) -> ModelVersion:
    return ModelVersion(
        version_id=f"digits-v{number}",
        task="digits",
        version=number,
        round_id=f"learning-digits-{number - 1}" if number > 1 else "learning-digits-init",
        metrics={"accuracy": accuracy, "loss": loss},
        artifact=f"sha256:{number:064x}",
        status=status,
    )


def digits_history(champion: int = 5) -> tuple[list[LearningRoundRecord], list[ModelVersion]]:
    """Five finished rounds (promoted, promoted, rolled back, failed, promoted), one still
    running, a forecast round, and the versions they made; ``champion`` reigns."""
    rounds = [
        round_row(6, "running", "digits-v5"),
        round_row(1, "promoted", "digits-v2", "digits-v2", accuracy=0.89, loss=0.40),
        round_row(2, "promoted", "digits-v3", "digits-v3", accuracy=0.93, loss=0.25),
        round_row(3, "rolled_back", "digits-v3", "digits-v4", accuracy=0.92, loss=0.27),
        round_row(4, "failed", "digits-v3", reason="1 participants trained, 2 needed"),
        round_row(5, "promoted", "digits-v5", "digits-v5", accuracy=0.95, loss=0.18),
        LearningRoundRecord(
            round_id="learning-forecast-1",
            task="forecast",
            round=1,
            status="promoted",
            strategy="fedavg",
            metrics={"rmse": 0.5, "mae": 0.4},
        ),
    ]
    metrics = {1: (0.11, 2.30), 2: (0.89, 0.40), 3: (0.93, 0.25), 4: (0.92, 0.27), 5: (0.95, 0.18)}
    versions = [
        version(n, "champion" if n == champion else "retired", *values)
        for n, values in metrics.items()
    ]
    return rounds, versions


def xs(line: Line2D) -> list[float]:
    return [float(x) for x in np.asarray(line.get_xdata(), dtype=float)]


def ys(line: Line2D) -> list[float]:
    return [float(y) for y in np.asarray(line.get_ydata(), dtype=float)]


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == PNG_SIGNATURE and data[12:16] == b"IHDR", "not a PNG"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def test_rounds_render_to_the_same_png_every_time(tmp_path: Path) -> None:
    rounds, versions = digits_history()

    path = render_rounds(rounds, versions, tmp_path / "rounds.png", task="digits")

    assert path == tmp_path / "rounds.png"
    data = path.read_bytes()
    assert png_size(data) == (900, 650), "two panels, 9 x 6.5 inches at 100 dpi"
    again = render_rounds(rounds, versions, tmp_path / "again.png", task="digits")
    assert again.read_bytes() == data


def test_champion_is_starred_on_the_round_that_made_it_and_the_loss_drawn_below() -> None:
    rounds, versions = digits_history()

    figure = rounds_figure(rounds, versions, task="digits")

    upper, lower = figure.axes
    assert (upper.get_ylabel(), lower.get_ylabel()) == ("accuracy", "loss")
    assert "digits: 5 rounds, 3 promoted; champion digits-v5" in upper.get_title()
    lines = {line.get_label(): line for line in upper.get_lines()}
    star = lines["champion digits-v5"]
    assert (xs(star), ys(star)) == ([5], [0.95])
    champion_after = lines["champion after"]
    assert xs(champion_after) == [1, 2, 3, 4, 5], "the running round is left out"
    assert ys(champion_after) == [0.89, 0.93, 0.93, 0.93, 0.95]
    assert xs(lines["candidate, promoted"]) == [1, 2, 5]
    assert xs(lines["candidate, rolled back"]) == [3], "the failed round has none"
    loss = {line.get_label(): line for line in lower.get_lines()}["champion after"]
    assert ys(loss) == [0.40, 0.25, 0.25, 0.25, 0.18]


def test_champion_no_plotted_round_made_is_a_dashed_line_at_its_metric() -> None:
    rounds, versions = digits_history(champion=1)  # rolled back to the initial model

    figure = rounds_figure(rounds, versions, task="digits")

    lines = {line.get_label(): line for line in figure.axes[0].get_lines()}
    level = lines["champion digits-v1 (not from these)"]
    assert level.get_linestyle() == "--" and ys(level) == [0.11, 0.11]


def test_forecast_rounds_plot_rmse_lower_is_better_and_mae() -> None:
    rounds, _ = digits_history()

    figure = rounds_figure(rounds, [], task="forecast")

    upper, lower = figure.axes
    assert (upper.get_ylabel(), lower.get_ylabel()) == ("rmse", "mae")
    assert "forecast: 1 rounds" in upper.get_title() and "lower is better" in upper.get_title()


@pytest.mark.parametrize(
    ("rounds", "task", "file", "message"),
    [
        ([], "digits", "rounds.png", "no finished learning rounds of task digits to plot"),
        ("forecast only", "digits", "rounds.png", "no finished learning rounds of task digits"),
        ("running only", "digits", "rounds.png", "no finished learning rounds of task digits"),
        ("digits", "digits", "rounds.svg", "is not a .png file name"),
        ("digits", "digits", "missing/rounds.png", "does not exist"),
    ],
)
def test_nothing_to_draw_or_a_bad_path_is_one_line_and_no_file(
    tmp_path: Path, rounds: Any, task: str, file: str, message: str
) -> None:
    history, versions = digits_history()
    chosen = (
        {
            "forecast only": [r for r in history if r.task == "forecast"],
            "running only": [r for r in history if r.status == "running"],
            "digits": history,
        }.get(rounds, [])
        if isinstance(rounds, str)
        else rounds
    )

    with pytest.raises(ValueError, match=message) as raised:
        render_rounds(chosen, versions, tmp_path / file, task=task)

    assert "\n" not in str(raised.value)
    assert list(tmp_path.rglob("*")) == []
