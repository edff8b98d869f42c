"""Calibration metrics and recalibration behave as their definitions say."""

from __future__ import annotations

import numpy as np
import pytest

from crystaloop.surrogates.calibration import fit_std_scale, miscalibration_area, regression_report


def _gaussian_data(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    mean = rng.normal(size=n)
    std = rng.uniform(0.1, 1.0, size=n)
    y = mean + std * rng.normal(size=n)
    return y, mean, std


def test_calibrated_predictions_have_small_miscalibration_area() -> None:
    y, mean, std = _gaussian_data(20000, 0)
    assert miscalibration_area(y, mean, std) < 0.01
    assert miscalibration_area(y, mean, std * 0.3) > 0.2  # overconfident
    assert miscalibration_area(y, mean, std * 3.0) > 0.2  # underconfident


def test_std_scale_recovers_a_known_miscalibration() -> None:
    y, mean, std = _gaussian_data(20000, 1)
    scale = fit_std_scale(y, mean, std / 2.5)
    assert scale == pytest.approx(2.5, rel=0.03)
    assert miscalibration_area(y, mean, scale * std / 2.5) < 0.01


def test_report_fields() -> None:
    y, mean, std = _gaussian_data(5000, 2)
    report = regression_report(y, mean, std)
    assert report["n"] == 5000
    assert report["mae"] == pytest.approx(np.mean(np.abs(y - mean)))
    assert report["rmse"] >= report["mae"]
    # errors are drawn with the given std, so |error| and std are positively rank-correlated
    assert report["spearman_abs_error_std"] > 0.3


def test_nan_rows_are_ignored_and_shapes_checked() -> None:
    report = regression_report(np.array([1.0, np.nan, 2.0]), np.array([1.5, 0.0, 2.5]), np.array([0.5, 0.5, 0.5]))
    assert report["n"] == 2 and report["mae"] == pytest.approx(0.5)
    with pytest.raises(ValueError, match="same length"):
        regression_report(np.zeros(3), np.zeros(2), np.ones(3))


def test_coverage_fit_survives_heavy_tails_where_the_likelihood_fit_fails() -> None:
    rng = np.random.default_rng(3)
    n = 4000
    std = np.full(n, 0.01)
    error = 0.01 * rng.normal(size=n)
    error[:80] = rng.normal(scale=3.0, size=80)  # 2 % wild misses (e.g. gaps predicted as metals)
    y, mean = error, np.zeros(n)
    coverage_scale = fit_std_scale(y, mean, std, method="coverage")
    nll_scale = fit_std_scale(y, mean, std, method="nll")
    assert miscalibration_area(y, mean, coverage_scale * std) < 0.05
    assert miscalibration_area(y, mean, nll_scale * std) > 0.3
    with pytest.raises(ValueError, match="allowed: coverage, nll"):
        fit_std_scale(y, mean, std, method="isotonic")  # type: ignore[arg-type]
