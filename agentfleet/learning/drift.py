"""Drift correction with control variates (SCAFFOLD, Karimireddy et al., 2020, option II).

On non-IID data each participant's local steps pull the model towards its own optimum, and the
average of those drifted models lands short of the pooled one. Each participant keeps a control
``c_i`` (its recent mean gradient) and the fleet a control ``c`` (their mean); every local step
adds ``c - c_i`` to the gradient, so a participant follows the fleet's direction rather than its
own. After training, ``c_i+ = c_i - c + (start - trained) / (steps * learning_rate)`` and
``c+ = c + sum(c_i+ - c_i) / population`` over the updates that were aggregated.

Controls live in artifacts next to the weights they belong to, under names prefixed
``control.``: a participant's training artifact holds its new weights and its ``c_i+``, a
candidate's holds the aggregate and the fleet's ``c+``. Readers that serve or score a model
take :func:`model_part` and never see them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

from agentfleet.learning.tasks.interface import Weights

PREFIX = "control."
CHANGE = "control_change."
"""A participant's artifact also holds ``c_i+ - c_i``, so aggregation reads no older artifact."""


def model_part(arrays: Mapping[str, NDArray[Any]]) -> Weights:
    """The model's weights of an artifact (without its control)."""
    return {
        k: np.asarray(v, dtype=np.float64)
        for k, v in arrays.items()
        if not k.startswith((PREFIX, CHANGE))
    }


def control_part(arrays: Mapping[str, NDArray[Any]], prefix: str = PREFIX) -> Weights | None:
    """The control stored in an artifact (``prefix=CHANGE``: its change), or None."""
    control = {
        k.removeprefix(prefix): np.asarray(v, dtype=np.float64)
        for k, v in arrays.items()
        if k.startswith(prefix)
    }
    return control or None


def with_control(
    weights: Weights, control: Weights | None, change: Weights | None = None
) -> Weights:
    """One artifact's arrays: ``weights``, ``control`` under ``control.`` and ``change`` under
    ``control_change.`` (each when given)."""
    out = dict(weights)
    for prefix, part in ((PREFIX, control), (CHANGE, change)):
        if part is not None:
            out.update({prefix + k: v for k, v in part.items()})
    return out


def zeros_like(weights: Weights) -> Weights:
    return {k: np.zeros_like(v) for k, v in weights.items()}


def correction(fleet: Weights | None, own: Weights | None, like: Weights) -> Weights:
    """``c - c_i``: what every local step adds to its gradient (absent controls are zero)."""
    c = fleet if fleet is not None else zeros_like(like)
    ci = own if own is not None else zeros_like(like)
    return {k: c[k] - ci[k] for k in like}


def participant_control(
    start: Weights,
    trained: Weights,
    *,
    steps: int,
    learning_rate: float,
    fleet: Weights | None,
    own: Weights | None,
) -> Weights:
    """``c_i+ = c_i - c + (start - trained) / (steps * learning_rate)``."""
    c = fleet if fleet is not None else zeros_like(start)
    ci = own if own is not None else zeros_like(start)
    scale = 1.0 / (max(steps, 1) * learning_rate)
    return {k: ci[k] - c[k] + scale * (start[k] - trained[k]) for k in start}


def fleet_control(
    fleet: Weights | None, changes: Sequence[Weights], population: int, like: Weights
) -> Weights:
    """``c+ = c + sum(changes) / population`` (``changes``: each aggregated ``c_i+ - c_i``)."""
    c = fleet if fleet is not None else zeros_like(like)
    share = 1.0 / max(population, len(changes), 1)
    return {k: c[k] + share * sum((d[k] for d in changes), np.zeros_like(c[k])) for k in like}
