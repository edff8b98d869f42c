"""Powder-fit figures as a Rietveld user reads them: measured and calculated patterns, their
difference, and tick marks at the calculated reflections (matplotlib's Agg canvas, a bare
``Figure``, nothing at import time).

* :func:`reflection_positions` — 2θ (degrees) of a crystal's reflections on a pattern grid,
  from pymatgen's ``XRDCalculator`` at the grid's wavelength (Cu Kα unless the grid says
  otherwise), reflections closer than 1e-5° merged as pymatgen merges them;
* :func:`fitted_scale` — the least-squares scale of a calculated pattern onto a measured one;
* :func:`powder_fit_figure` — the figure: the upper panel shows the measured pattern (black),
  the calculated one scaled onto it (red), the difference measured − calculated (blue, shifted
  below zero) and a row of reflection ticks (green) between them; an optional lower panel
  stacks other calculated patterns under the measured one for comparison.

Patterns are (P,) arrays on the same (P,) 2θ grid; intensities in the measured pattern's units
(crystaloop's readers scale it to a maximum of 1).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from crystaloop.data.crystal import Crystal
from crystaloop.data.xrd_grid import DEFAULT_GRID, PatternGrid

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["reflection_positions", "fitted_scale", "powder_fit_figure", "DIFFERENCE_LABEL"]

DIFFERENCE_LABEL = "difference (measured − calculated)"
"""Label of the difference curve in :func:`powder_fit_figure` (tests and readers find it by it)."""


def reflection_positions(crystal: Crystal, grid: PatternGrid = DEFAULT_GRID) -> np.ndarray:
    """(K,) sorted 2θ in degrees of ``crystal``'s reflections with non-zero intensity inside the
    grid's range, at the grid's wavelength (pymatgen ``XRDCalculator``)."""
    from pymatgen.analysis.diffraction.xrd import XRDCalculator

    pattern = XRDCalculator(wavelength=grid.wavelength).get_pattern(
        crystal.to_pymatgen(), scaled=True, two_theta_range=(grid.two_theta_min, grid.two_theta_max))
    return np.sort(np.asarray(pattern.x, dtype=np.float64))


def fitted_scale(measured: np.ndarray, calculated: np.ndarray) -> float:
    """``s`` minimising ``Σ (measured − s · calculated)²`` (0 for an all-zero calculated pattern)."""
    measured, calculated = np.asarray(measured, dtype=np.float64), np.asarray(calculated, dtype=np.float64)
    if measured.shape != calculated.shape:
        raise ValueError(f"measured pattern has shape {measured.shape} but the calculated one {calculated.shape}")
    norm = float(calculated @ calculated)
    return float(measured @ calculated) / norm if norm > 0 else 0.0


def powder_fit_figure(two_theta: np.ndarray, measured: np.ndarray, calculated: np.ndarray, reflections: np.ndarray, *,
                      label: str = "calculated", compared: Sequence[tuple[str, np.ndarray]] = (),
                      title: str | None = None) -> Figure:
    """A Rietveld-style figure of ``calculated`` (scaled by :func:`fitted_scale`) against
    ``measured`` on ``two_theta`` (degrees), with the difference curve (:data:`DIFFERENCE_LABEL`)
    and ``reflections`` (2θ, degrees) as ticks; ``compared`` — (label, pattern) pairs — adds a
    lower panel stacking those patterns, each offset below the measured one."""
    from matplotlib.figure import Figure

    two_theta = np.asarray(two_theta, dtype=np.float64)
    measured = np.asarray(measured, dtype=np.float64)
    if two_theta.shape != measured.shape:
        raise ValueError(f"2θ grid has shape {two_theta.shape} but the measured pattern {measured.shape}")
    fit = fitted_scale(measured, calculated) * np.asarray(calculated, dtype=np.float64)
    difference = measured - fit
    height = max(float(np.max(np.abs(measured))), 1e-12)
    tick_level = -0.06 * height
    shift = -0.12 * height - float(np.max(difference))  # the difference curve's maximum sits below the ticks

    rows = 2 if compared else 1
    figure = Figure(figsize=(9, 4.6 + (0.8 + 0.6 * len(compared) if compared else 0.0)), dpi=100)
    grid_spec = figure.add_gridspec(rows, 1, height_ratios=[3.0, 0.8 + 0.5 * len(compared)] if compared else [1.0])
    ax = figure.add_subplot(grid_spec[0])
    ax.plot(two_theta, measured, color="black", lw=0.9, label="measured")
    ax.plot(two_theta, fit, color="tab:red", lw=0.9, label=label)
    ax.plot(two_theta, difference + shift, color="tab:blue", lw=0.8, label=DIFFERENCE_LABEL)
    inside = reflections[(reflections >= two_theta.min()) & (reflections <= two_theta.max())]
    ax.plot(inside, np.full(inside.shape, tick_level), linestyle="", marker="|", markersize=9, color="tab:green",
            label=f"reflections ({len(inside)})")
    ax.axhline(shift, color="0.7", lw=0.5)
    ax.set_xlim(two_theta.min(), two_theta.max())
    ax.set_ylabel("intensity")
    ax.legend(loc="upper right", fontsize=8, frameon=False)
    if title:
        ax.set_title(title, fontsize=10)
    if compared:
        lower = figure.add_subplot(grid_spec[1], sharex=ax)
        lower.plot(two_theta, measured / height, color="black", lw=0.9, label="measured")
        for rank, (name, pattern) in enumerate(compared, start=1):
            pattern = np.asarray(pattern, dtype=np.float64)
            peak = max(float(np.max(np.abs(pattern))), 1e-12)
            lower.plot(two_theta, pattern / peak - 1.15 * rank, lw=0.8, label=name)
        lower.set_yticks([])
        lower.set_ylabel("max 1, offset")
        lower.legend(loc="upper right", fontsize=7, frameon=False)
        lower.set_xlabel("2θ (degrees)")
    else:
        ax.set_xlabel("2θ (degrees)")
    figure.tight_layout()
    return figure
