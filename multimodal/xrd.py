"""Simulated powder X-ray diffraction patterns on the shared grid, and measurement-like augmentation.

* :func:`simulate_pattern` / :func:`simulate_patterns`: pymatgen's ``XRDCalculator`` (kinematic
  intensities with atomic scattering factors, Lorentz-polarisation factor, multiplicities) for the
  grid's wavelength, each peak broadened by the grid's pseudo-Voigt profile, summed on the 2θ
  grid of :mod:`crystaloop.data.xrd_grid` and scaled to a maximum of 1. A pattern depends on the
  crystal only, not on how it is written (rotation, origin, site order, lattice basis): the peak
  list is a function of the set of d-spacings and structure factors. The differentiable torch
  twin of this simulator is :mod:`crystaloop.data.xrd_forward`.
* :func:`augment_patterns`: what a measurement does to a clean pattern: isotropic lattice strain
  and sample-displacement (zero) shifts of the peaks, smooth intensity jitter (texture, preferred
  orientation), a smooth background with an amorphous hump, and counting noise. Seeded by a
  ``numpy.random.Generator``; the clean input is never modified.

Shapes: a pattern is ``(P,)`` float32 with ``P = grid.n_points``, a batch ``(B, P)``.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from crystaloop.data.crystal import Crystal
from crystaloop.data.errors import InvalidStructureError
from crystaloop.data.progress import progress_bar
from crystaloop.data.xrd_grid import DEFAULT_GRID, PatternGrid, pseudo_voigt

if TYPE_CHECKING:
    from pymatgen.analysis.diffraction.xrd import XRDCalculator

__all__ = ["AugmentConfig", "peak_list", "simulate_pattern", "simulate_patterns", "augment_patterns", "normalise"]

logger = logging.getLogger(__name__)

_TAIL_MARGIN = 5.0  # degrees 2θ: peaks this far outside the grid still leak their tails into it


class AugmentConfig(BaseModel):
    """How strongly :func:`augment_patterns` perturbs a clean pattern (all ranges symmetric or from 0)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_strain: float = Field(0.01, ge=0.0, lt=0.2, description="isotropic strain ε ~ U(−max, max); d → d(1+ε)")
    max_zero_shift: float = Field(0.1, ge=0.0, le=2.0, description="zero shift δ ~ U(−max, max), degrees 2θ")
    intensity_jitter: float = Field(0.2, ge=0.0, le=2.0, description="std of the smooth log-intensity field")
    max_background: float = Field(0.1, ge=0.0, le=2.0, description="background amplitude ~ U(0, max), of the max peak")
    noise: float = Field(0.02, ge=0.0, le=1.0, description="counting noise: std noise·√I (I scaled to max 1)")


def _calculator(grid: PatternGrid) -> XRDCalculator:
    from pymatgen.analysis.diffraction.xrd import XRDCalculator

    return XRDCalculator(wavelength=grid.wavelength)


def peak_list(
    crystal: Crystal, grid: PatternGrid = DEFAULT_GRID, *, calculator: XRDCalculator | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Peak positions (degrees 2θ) and relative intensities (max 100) that reach the grid.

    Includes peaks up to ``_TAIL_MARGIN`` degrees outside the grid, whose tails reach into it.

    Returns:
        ``(two_theta (K,), intensity (K,))`` float64; both empty if no reflection is in range.
    """
    calculator = calculator or _calculator(grid)
    low = max(grid.two_theta_min - _TAIL_MARGIN, 0.0)
    high = min(grid.two_theta_max + _TAIL_MARGIN, 179.9)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            pattern = calculator.get_pattern(crystal.to_pymatgen(), scaled=True, two_theta_range=(low, high))
    except (ValueError, ZeroDivisionError, IndexError) as exc:
        raise InvalidStructureError(f"cannot compute a powder pattern of {crystal.reduced_formula}: {exc}") from exc
    return np.asarray(pattern.x, dtype=np.float64), np.asarray(pattern.y, dtype=np.float64)


def simulate_pattern(
    crystal: Crystal, grid: PatternGrid = DEFAULT_GRID, *, calculator: XRDCalculator | None = None
) -> np.ndarray:
    """(P,) float32 broadened powder pattern of ``crystal`` on ``grid``, max 1 (all zero if no peak)."""
    positions, heights = peak_list(crystal, grid, calculator=calculator)
    if positions.size == 0:
        return np.zeros(grid.n_points, dtype=np.float32)
    profile = pseudo_voigt(grid.two_theta(), positions, grid.fwhm, grid.eta) @ heights
    return normalise(profile).astype(np.float32)


def simulate_patterns(
    crystals: Sequence[Crystal], grid: PatternGrid = DEFAULT_GRID, *, progress: bool = False
) -> np.ndarray:
    """(B, P) float32 patterns of many crystals (about 1–3 ms each for ≤ 24 sites), with a progress bar."""
    calculator = _calculator(grid)
    out = np.zeros((len(crystals), grid.n_points), dtype=np.float32)
    with progress_bar(progress) as bar:
        task = bar.add_task("simulating XRD patterns", total=len(crystals))
        for i, crystal in enumerate(crystals):
            out[i] = simulate_pattern(crystal, grid, calculator=calculator)
            bar.advance(task)
    return out


def normalise(patterns: np.ndarray) -> np.ndarray:
    """Scale each pattern (last axis) to a maximum of 1; an all-zero pattern stays zero."""
    patterns = np.asarray(patterns, dtype=np.float64)
    top = patterns.max(axis=-1, keepdims=True)
    return np.where(top > 0, patterns / np.where(top > 0, top, 1.0), 0.0)


def augment_patterns(
    patterns: np.ndarray,
    rng: np.random.Generator,
    config: AugmentConfig | None = None,
    grid: PatternGrid = DEFAULT_GRID,
) -> np.ndarray:
    """Measurement-like copies of clean patterns (the input is not modified).

    Per pattern, in order: peaks move as for an isotropic strain ε (``sin θ' = sin θ / (1+ε)``)
    and a zero shift δ (``2θ' = 2θ + δ``), by resampling; intensities are multiplied by
    ``exp(σ g(2θ))`` with ``g`` a smooth random field of unit variance; a background (decaying
    exponential plus a broad amorphous hump) is added; the result is scaled to max 1, counting
    noise ``N(0, noise² · I)`` is added, negatives are clipped and the result is scaled to max 1.

    Args:
        patterns: (B, P) or (P,) patterns on ``grid``.
        rng: the only source of randomness.
        config: augmentation strengths (default :class:`AugmentConfig`).

    Returns:
        Array of the input's shape, float32.
    """
    config = config or AugmentConfig()
    clean = np.asarray(patterns, dtype=np.float64)
    single = clean.ndim == 1
    batch = clean[None] if single else clean
    if batch.ndim != 2 or batch.shape[1] != grid.n_points:
        raise ValueError(f"patterns must have shape (B, {grid.n_points}) or ({grid.n_points},), got {clean.shape}")
    x = grid.two_theta()
    out = np.empty_like(batch)
    for i, row in enumerate(batch):
        strain = rng.uniform(-config.max_strain, config.max_strain)
        shift = rng.uniform(-config.max_zero_shift, config.max_zero_shift)
        # observed x came from true 2θ = x − δ of the strained crystal; unstrained source:
        strained = np.radians(x - shift) / 2.0
        source = np.degrees(2.0 * np.arcsin(np.clip(np.sin(strained) * (1.0 + strain), -1.0, 1.0)))
        moved = np.interp(source, x, row, left=0.0, right=0.0)
        moved *= np.exp(config.intensity_jitter * _smooth_field(x, rng))
        out[i] = moved + _background(x, rng, config.max_background * moved.max())
    out = normalise(out)
    if config.noise > 0:
        out = out + config.noise * np.sqrt(out) * rng.standard_normal(out.shape)
    out = normalise(np.clip(out, 0.0, None)).astype(np.float32)
    return out[0] if single else out


def _smooth_field(x: np.ndarray, rng: np.random.Generator, n_terms: int = 6) -> np.ndarray:
    """(P,) smooth random function of unit standard deviation (a few random cosines, 1–8 periods)."""
    span = x[-1] - x[0]
    frequencies = rng.uniform(1.0, 8.0, size=n_terms) / span
    phases = rng.uniform(0.0, 2.0 * np.pi, size=n_terms)
    field = np.cos(2.0 * np.pi * frequencies[:, None] * (x[None, :] - x[0]) + phases[:, None]).sum(axis=0)
    return field / np.sqrt(n_terms / 2.0)


def _background(x: np.ndarray, rng: np.random.Generator, amplitude: float) -> np.ndarray:
    """(P,) non-negative smooth background of height ≈ ``amplitude``: decay plus an amorphous hump."""
    if amplitude <= 0:
        return np.zeros_like(x)
    decay = np.exp(-(x - x[0]) / rng.uniform(10.0, 40.0))
    hump = np.exp(-0.5 * ((x - rng.uniform(15.0, 35.0)) / rng.uniform(3.0, 10.0)) ** 2)
    weights = rng.dirichlet((1.0, 1.0))
    return rng.uniform(0.0, amplitude) * (weights[0] * decay + weights[1] * hump)
