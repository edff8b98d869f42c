"""Generic diagnostics of a posterior sampler, on plain numpy arrays.

Nothing here knows what a sample is: the callers turn samples into the arrays these functions
take (labels of the mode each sample fell in, distances of samples to the truth, a spread and an
error per measurement, one score per measurement). The toy problem of
:mod:`crystaloop.benchmarks.posterior_toy` uses Euclidean vectors; a crystal sampler can pass
StructureMatcher RMS distances (``inf`` for no match) to the same functions.

* :func:`mode_weight_report`: mode weights of samples against reference weights, total variation
  and hallucination rate (samples in modes whose reference weight is negligible);
* :func:`coverage_curve`: how often the truth is within radius r of at least one of the first k
  samples, for every k and r;
* :func:`spread_error_spearman`: rank correlation of per-measurement sample spread and error;
* :func:`spread_calibration`: both of the above for samples that are plain vectors;
* :func:`roc_auc`: separation of in-domain and out-of-domain scores (out-of-domain = positive);
* :func:`sliced_wasserstein1`, :func:`total_variation`, :func:`outlier_rate`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats

from crystaloop.data.errors import CrystaloopError

__all__ = [
    "ModeWeightReport",
    "CoverageCurve",
    "total_variation",
    "mode_weights",
    "mode_weight_report",
    "outlier_rate",
    "sliced_wasserstein1",
    "coverage_curve",
    "sample_spread",
    "spread_error_spearman",
    "SpreadCalibration",
    "spread_calibration",
    "roc_auc",
]


def _vector(values: np.ndarray, name: str) -> np.ndarray:
    array = np.asarray(values, dtype=float)
    if array.ndim != 1 or array.size == 0:
        raise CrystaloopError(f"{name} must be a non-empty 1-D array, got shape {array.shape}")
    return array


def total_variation(p: np.ndarray, q: np.ndarray) -> float:
    """½ Σ |p_k − q_k| of two probability vectors of the same length (0 = equal, 1 = disjoint)."""
    p, q = _vector(p, "p"), _vector(q, "q")
    if p.shape != q.shape:
        raise CrystaloopError(f"probability vectors differ in length: {p.shape} vs {q.shape}")
    return 0.5 * float(np.abs(p - q).sum())


def mode_weights(labels: np.ndarray, n_modes: int) -> np.ndarray:
    """Fraction of samples per mode, shape (n_modes,), from integer labels in [0, n_modes)."""
    labels = np.asarray(labels)
    if labels.ndim != 1 or labels.size == 0:
        raise CrystaloopError(f"labels must be a non-empty 1-D array, got shape {labels.shape}")
    if labels.min() < 0 or labels.max() >= n_modes:
        raise CrystaloopError(f"labels must lie in [0, {n_modes}), got range [{labels.min()}, {labels.max()}]")
    return np.bincount(labels, minlength=n_modes) / labels.size


@dataclass(frozen=True)
class ModeWeightReport:
    """Sampler mode weights against reference (exact) weights.

    Attributes:
        weights: (K,) fraction of samples assigned to each mode.
        reference: (K,) reference weights.
        tv: total variation distance between the two.
        hallucination_rate: fraction of samples in modes whose reference weight is below
            ``negligible`` (modes the measurement rules out).
        negligible: the threshold used.
    """

    weights: np.ndarray
    reference: np.ndarray
    tv: float
    hallucination_rate: float
    negligible: float


def mode_weight_report(labels: np.ndarray, reference: np.ndarray, *, negligible: float = 1e-3) -> ModeWeightReport:
    """Compare the modes samples fell in (``labels``, (n,)) with ``reference`` weights (K,)."""
    reference = _vector(reference, "reference")
    weights = mode_weights(labels, reference.size)
    ruled_out = reference < negligible
    return ModeWeightReport(
        weights=weights,
        reference=reference,
        tv=total_variation(weights, reference),
        hallucination_rate=float(weights[ruled_out].sum()),
        negligible=negligible,
    )


def outlier_rate(log_density: np.ndarray, reference_log_density: np.ndarray, *, quantile: float = 1e-3) -> float:
    """Fraction of samples whose log density (under the exact posterior) is below the ``quantile``
    of the same density evaluated on exact posterior samples: samples off every mode."""
    log_density = _vector(log_density, "log_density")
    cut = np.quantile(_vector(reference_log_density, "reference_log_density"), quantile)
    return float(np.mean(log_density < cut))


def sliced_wasserstein1(a: np.ndarray, b: np.ndarray, *, projections: int = 128, seed: int = 0) -> float:
    """Sliced Wasserstein-1 distance between point clouds ``a`` (n, d) and ``b`` (m, d).

    Mean over ``projections`` random unit directions of the 1-D Wasserstein-1 distance of the
    projected samples (same units as the points). Sizes may differ.
    """
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
        raise CrystaloopError(f"point clouds must be (n, d) and (m, d) with the same d, got {a.shape} and {b.shape}")
    directions = np.random.default_rng(seed).standard_normal((projections, a.shape[1]))
    directions /= np.linalg.norm(directions, axis=1, keepdims=True)
    pa, pb = a @ directions.T, b @ directions.T
    return float(np.mean([stats.wasserstein_distance(pa[:, j], pb[:, j]) for j in range(projections)]))


@dataclass(frozen=True)
class CoverageCurve:
    """Coverage of the truth among the first k samples.

    Attributes:
        radii: (R,) distance thresholds.
        coverage: (k_max, R); ``coverage[j, r]`` = fraction of measurements with at least one of
            their first ``j + 1`` samples within ``radii[r]`` of the truth.
    """

    radii: np.ndarray
    coverage: np.ndarray

    def at(self, k: int, radius_index: int = 0) -> float:
        """Coverage with ``k`` samples at ``radii[radius_index]``."""
        return float(self.coverage[k - 1, radius_index])


def coverage_curve(distances: np.ndarray, radii: np.ndarray | list[float]) -> CoverageCurve:
    """Coverage curve from ``distances`` (B, k) of each measurement's k samples to its truth.

    Non-finite distances (a failed sample, no structural match) never count as covered.
    """
    distances = np.asarray(distances, dtype=float)
    if distances.ndim != 2 or distances.size == 0:
        raise CrystaloopError(f"distances must be a non-empty (measurements, samples) array, got shape {distances.shape}")
    radii = _vector(np.asarray(radii), "radii")
    clean = np.where(np.isfinite(distances), distances, np.inf)
    best = np.minimum.accumulate(clean, axis=1)  # (B, k): closest among the first j + 1
    coverage = (best[:, :, None] <= radii[None, None, :]).mean(axis=0)
    return CoverageCurve(radii=radii, coverage=coverage)


def sample_spread(samples: np.ndarray) -> np.ndarray:
    """Mean Euclidean distance of each measurement's samples to their mean: (B, k, d) → (B,)."""
    samples = np.asarray(samples, dtype=float)
    if samples.ndim != 3:
        raise CrystaloopError(f"samples must be (measurements, samples, dim), got shape {samples.shape}")
    return np.linalg.norm(samples - samples.mean(axis=1, keepdims=True), axis=2).mean(axis=1)


def spread_error_spearman(spread: np.ndarray, error: np.ndarray) -> float:
    """Spearman rank correlation of per-measurement sample spread and error ((B,) each).

    Positive and large when the sampler's spread tells which answers to distrust; NaN for fewer
    than three measurements.
    """
    spread, error = _vector(spread, "spread"), _vector(error, "error")
    if spread.shape != error.shape:
        raise CrystaloopError(f"spread and error differ in length: {spread.shape} vs {error.shape}")
    if spread.size < 3:
        return float("nan")
    return float(stats.spearmanr(spread, error).statistic)


@dataclass(frozen=True)
class SpreadCalibration:
    """Calibration of a sampler's spread over B measurements with known truth.

    Attributes:
        coverage: the :class:`CoverageCurve` of the truth among the samples.
        spearman: Spearman(sample spread, error of the sample mean) over measurements.
        mean_spread: mean over measurements of :func:`sample_spread`.
        mean_error: mean over measurements of ‖sample mean − truth‖.
    """

    coverage: CoverageCurve
    spearman: float
    mean_spread: float
    mean_error: float


def spread_calibration(samples: np.ndarray, truth: np.ndarray, radii: np.ndarray | list[float]) -> SpreadCalibration:
    """Coverage and spread-versus-error of vector samples (B, k, d) around ``truth`` (B, d),
    Euclidean distances in the units of the vectors."""
    samples, truth = np.asarray(samples, dtype=float), np.asarray(truth, dtype=float)
    if samples.ndim != 3 or truth.shape != (samples.shape[0], samples.shape[2]):
        raise CrystaloopError(f"samples must be (B, k, d) and truth (B, d), got {samples.shape} and {truth.shape}")
    spread = sample_spread(samples)
    error = np.linalg.norm(samples.mean(axis=1) - truth, axis=1)
    return SpreadCalibration(
        coverage=coverage_curve(np.linalg.norm(samples - truth[:, None, :], axis=2), radii),
        spearman=spread_error_spearman(spread, error),
        mean_spread=float(spread.mean()),
        mean_error=float(error.mean()),
    )


def _rank_auc(in_domain: np.ndarray, out_of_domain: np.ndarray) -> float:
    """Mann–Whitney form of the ROC-AUC: P(score_out > score_in) + ½ P(tie)."""
    ranks = stats.rankdata(np.concatenate([in_domain, out_of_domain]))
    n_in, n_out = in_domain.size, out_of_domain.size
    return float((ranks[n_in:].sum() - n_out * (n_out + 1) / 2) / (n_in * n_out))


def roc_auc(in_domain: np.ndarray, out_of_domain: np.ndarray) -> float:
    """ROC-AUC of a score that should be larger out of domain (out-of-domain = positive class).

    ``sklearn.metrics.roc_auc_score`` when scikit-learn is installed, else the rank formula
    (identical values). 0.5 = no separation, 1 = perfect.
    """
    in_domain, out_of_domain = _vector(in_domain, "in_domain"), _vector(out_of_domain, "out_of_domain")
    try:
        from sklearn.metrics import roc_auc_score
    except ImportError:  # pragma: no cover - scikit-learn is a dependency of the dev environment
        return _rank_auc(in_domain, out_of_domain)
    labels = np.concatenate([np.zeros(in_domain.size), np.ones(out_of_domain.size)])
    return float(roc_auc_score(labels, np.concatenate([in_domain, out_of_domain])))
