"""How desirable a candidate is, read from its predicted (or measured) objective values, in [0, 1].

The rl strategy's reward and the condition search's outcome (:mod:`.condition_bo`) both score
what a generation condition produced with :func:`desirability`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
from scipy.special import ndtr

from crystaloop.data.errors import CrystaloopError

if TYPE_CHECKING:
    from crystaloop.loop.config import Objective

__all__ = ["desirability"]


def _above(mean: np.ndarray, std: np.ndarray, x: float) -> np.ndarray:
    """P(v ≥ x) for v ~ N(mean, std²); a step where std is 0."""
    with np.errstate(divide="ignore", invalid="ignore"):
        smooth = ndtr((mean - x) / std)
    return np.where(std > 0, smooth, (mean >= x).astype(np.float64))


def _below(mean: np.ndarray, std: np.ndarray, x: float) -> np.ndarray:
    """P(v ≤ x) for v ~ N(mean, std²); a step where std is 0."""
    with np.errstate(divide="ignore", invalid="ignore"):
        smooth = ndtr((x - mean) / std)
    return np.where(std > 0, smooth, (mean <= x).astype(np.float64))


def desirability(predictions: np.ndarray, objectives: Sequence[Objective], incumbent: np.ndarray | None = None) -> np.ndarray:
    """(n,) desirability in [0, 1] of candidates from predictions (n, m, 2) (mean, std per objective).

    Per objective, reading a prediction as a Gaussian: the probability of landing in the window
    (``target``), of reaching the threshold (maximise/minimise with one), else of improving on
    ``incumbent[j]`` (the best measured value; NaN or ``None`` → the pool's median predicted
    mean). Objectives without a prediction (NaN mean) are left out; the rest combine as a
    weighted geometric mean (1 when none is predicted).
    """
    predictions = np.asarray(predictions, dtype=np.float64)
    if predictions.ndim != 3 or predictions.shape[1:] != (len(objectives), 2):
        raise CrystaloopError(f"predictions must have shape (n, {len(objectives)}, 2), got {predictions.shape}")
    n = predictions.shape[0]
    log_sum, weight_sum = np.zeros(n), np.zeros(n)
    for j, objective in enumerate(objectives):
        mean = predictions[:, j, 0]
        known = np.isfinite(mean)
        if not known.any():
            continue
        mean = np.nan_to_num(mean)
        std = np.clip(np.nan_to_num(predictions[:, j, 1]), 0.0, None)
        if objective.window is not None:
            low, high = objective.window
            p = _above(mean, std, low) + _below(mean, std, high) - 1.0
        else:
            reference = objective.threshold
            if reference is None:
                best = np.nan if incumbent is None else float(incumbent[j])
                reference = best if np.isfinite(best) else float(np.median(mean[known]))
            p = _above(mean, std, reference) if objective.goal == "maximise" else _below(mean, std, reference)
        p = np.clip(p, 0.0, 1.0)
        with np.errstate(divide="ignore"):
            log_sum += np.where(known, objective.weight * np.log(p), 0.0)
        weight_sum += np.where(known, objective.weight, 0.0)
    return np.where(weight_sum > 0, np.exp(log_sum / np.where(weight_sum > 0, weight_sum, 1.0)), 1.0)
