"""Figures a person would rather see than read: parity and calibration of a surrogate."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from crystaloop.surrogates.calibration import coverage_curve

__all__ = ["parity_and_calibration_plot"]


def parity_and_calibration_plot(
    y: np.ndarray, mean: np.ndarray, std: np.ndarray, *, target: str, units: str, out: Path, title: str = ""
) -> Path:
    """Save a two-panel PNG: predicted vs true (error bars = std) and interval coverage."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keep = np.isfinite(y) & np.isfinite(mean)
    y, mean, std = y[keep], mean[keep], std[keep]
    fig, (parity, calibration) = plt.subplots(1, 2, figsize=(10, 4.5))
    low, high = float(min(y.min(), mean.min())), float(max(y.max(), mean.max()))
    parity.errorbar(y, mean, yerr=std, fmt="o", ms=2.5, alpha=0.4, elinewidth=0.5)
    parity.plot([low, high], [low, high], "k--", lw=1)
    parity.set_xlabel(f"true {target} ({units})")
    parity.set_ylabel(f"predicted {target} ({units})")
    parity.set_title(f"parity, MAE {np.mean(np.abs(y - mean)):.3f} {units}")
    expected, observed = coverage_curve(y, mean, std)
    calibration.plot(expected, observed, label="model")
    calibration.plot([0, 1], [0, 1], "k--", lw=1, label="ideal")
    calibration.fill_between(expected, expected, observed, alpha=0.2)
    calibration.set_xlabel("expected coverage of central interval")
    calibration.set_ylabel("observed coverage")
    calibration.set_title("calibration")
    calibration.legend()
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out
