"""Objective values as utilities ("higher is better"), in numpy for ranking and torch for botorch.

For objective j with value v (its units):

* maximise: u = v;  minimise: u = −v;
* target window [lo, hi]: u = −(max(lo − v, 0) + max(v − hi, 0)), 0 inside the window.

A scalar score is Σ_j w_j u_j / s_j with per-objective scales s_j (> 0) that make units
comparable (the pool's spread of u_j, see :func:`utility_scales`).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from crystaloop.loop.config import Objective


__all__ = ["utilities", "utilities_torch", "utility_scales"]


def utilities(values: np.ndarray, objectives: Sequence[Objective]) -> np.ndarray:
    """(n, m) utilities of values (n, m), column j for ``objectives[j]``; NaN stays NaN."""
    values = np.atleast_2d(np.asarray(values, dtype=np.float64))
    out = np.empty_like(values)
    for j, objective in enumerate(objectives):
        v = values[:, j]
        if objective.goal == "maximise":
            out[:, j] = v
        elif objective.goal == "minimise":
            out[:, j] = -v
        else:
            low, high = objective.window or (-np.inf, np.inf)
            out[:, j] = -(np.maximum(low - v, 0.0) + np.maximum(v - high, 0.0))
    return out


def utilities_torch(values, objectives: Sequence[Objective]):  # noqa: ANN001, ANN201 - torch tensors (..., m)
    """Torch version of :func:`utilities` for values (..., m); differentiable, used in MC objectives."""
    import torch

    columns = []
    for j, objective in enumerate(objectives):
        v = values[..., j]
        if objective.goal == "maximise":
            columns.append(v)
        elif objective.goal == "minimise":
            columns.append(-v)
        else:
            low, high = objective.window or (float("-inf"), float("inf"))
            columns.append(-(torch.clamp(low - v, min=0.0) + torch.clamp(v - high, min=0.0)))
    return torch.stack(columns, dim=-1)


def utility_scales(values: np.ndarray, objectives: Sequence[Objective]) -> np.ndarray:
    """(m,) positive scales: the std of each column's utilities over ``values`` (n, m); 1 where
    that is zero or undefined."""
    u = utilities(values, objectives)
    with np.errstate(invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # an all-NaN column (nothing predicted) has no spread
        spread = np.nanstd(u, axis=0) if len(u) > 1 else np.ones(u.shape[1])
    return np.where(np.isfinite(spread) & (spread > 1e-12), spread, 1.0)

