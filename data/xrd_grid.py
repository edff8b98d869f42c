"""The one powder-pattern grid every XRD component shares (simulation, readers, encoders).

Patterns are intensities on ``N_POINTS`` equally spaced 2θ values from ``TWO_THETA_MIN`` to
``TWO_THETA_MAX`` (degrees, both included) for Cu Kα radiation (``CU_KALPHA_WAVELENGTH`` Å, the
Kα1/Kα2 weighted mean that pymatgen calls ``"CuKa"``), broadened by a pseudo-Voigt profile of
``DEFAULT_FWHM`` degrees and scaled so the highest point is 1.

Anything that produces or consumes patterns (the pymatgen simulator in
:mod:`crystaloop.multimodal.xrd`, the measured-pattern reader, the 1-D encoder, the
differentiable torch forward model in :mod:`crystaloop.data.xrd_forward` that the generator's
posterior sampler uses) imports these constants and :func:`two_theta_grid` from here, so a
pattern on another grid is refused rather than silently misread. It lives in ``data`` because
components on both sides of the layering (generator, multimodal) need it. Importing this module
needs numpy and pydantic only.
"""

from __future__ import annotations

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = [
    "TWO_THETA_MIN",
    "TWO_THETA_MAX",
    "TWO_THETA_STEP",
    "N_POINTS",
    "CU_KALPHA_WAVELENGTH",
    "DEFAULT_FWHM",
    "DEFAULT_ETA",
    "PatternGrid",
    "DEFAULT_GRID",
    "two_theta_grid",
    "pseudo_voigt",
]

TWO_THETA_MIN = 5.0
"""Lowest 2θ of the grid, degrees."""
TWO_THETA_MAX = 90.0
"""Highest 2θ of the grid, degrees."""
TWO_THETA_STEP = 0.05
"""Grid spacing, degrees 2θ."""
N_POINTS = int(round((TWO_THETA_MAX - TWO_THETA_MIN) / TWO_THETA_STEP)) + 1  # 1701
CU_KALPHA_WAVELENGTH = 1.54184
"""Cu Kα wavelength, Å (weighted mean of Kα1 1.54056 Å and Kα2 1.54439 Å)."""
DEFAULT_FWHM = 0.15
"""Full width at half maximum of every peak, degrees 2θ (a laboratory diffractometer's order)."""
DEFAULT_ETA = 0.5
"""Lorentzian fraction of the pseudo-Voigt profile (0 = Gaussian, 1 = Lorentzian)."""


class PatternGrid(BaseModel):
    """A 2θ grid and peak profile; travels inside checkpoints so a model knows what it was fed.

    The default instance is the crystaloop grid; other grids exist only to be refused clearly
    (and for tests).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    two_theta_min: float = Field(TWO_THETA_MIN, ge=0.0, lt=180.0, description="degrees 2θ")
    two_theta_max: float = Field(TWO_THETA_MAX, gt=0.0, le=180.0, description="degrees 2θ")
    n_points: int = Field(N_POINTS, ge=16, description="grid points, both ends included")
    wavelength: float = Field(CU_KALPHA_WAVELENGTH, gt=0.0, description="Å")
    fwhm: float = Field(DEFAULT_FWHM, gt=0.0, description="peak full width at half maximum, degrees 2θ")
    eta: float = Field(DEFAULT_ETA, ge=0.0, le=1.0, description="pseudo-Voigt Lorentzian fraction")

    @model_validator(mode="after")
    def _ordered(self) -> PatternGrid:
        if not self.two_theta_max > self.two_theta_min:
            raise ValueError(f"two_theta_max ({self.two_theta_max}°) must exceed two_theta_min ({self.two_theta_min}°)")
        return self

    @property
    def step(self) -> float:
        """Spacing of the grid, degrees 2θ."""
        return (self.two_theta_max - self.two_theta_min) / (self.n_points - 1)

    def two_theta(self) -> np.ndarray:
        """(n_points,) float64 grid, degrees 2θ."""
        return np.linspace(self.two_theta_min, self.two_theta_max, self.n_points)

    def same_sampling(self, other: PatternGrid) -> bool:
        """Whether ``other`` samples the same 2θ values at the same wavelength (profile may differ)."""
        return (
            self.n_points == other.n_points
            and abs(self.two_theta_min - other.two_theta_min) < 1e-9
            and abs(self.two_theta_max - other.two_theta_max) < 1e-9
            and abs(self.wavelength - other.wavelength) < 1e-9
        )


DEFAULT_GRID = PatternGrid()


def two_theta_grid() -> np.ndarray:
    """(N_POINTS,) float64 2θ values of the default grid, degrees."""
    return DEFAULT_GRID.two_theta()


def pseudo_voigt(x: np.ndarray, centres: np.ndarray, fwhm: float, eta: float) -> np.ndarray:
    """Unit-height pseudo-Voigt peaks ``(len(x), len(centres))``.

    ``eta · L + (1 − eta) · G`` with Lorentzian ``L = 1 / (1 + (2Δ/fwhm)²)`` and Gaussian
    ``G = exp(−4 ln2 (Δ/fwhm)²)``, ``Δ = x − centre`` in degrees 2θ.
    """
    delta = (np.asarray(x, dtype=np.float64)[:, None] - np.asarray(centres, dtype=np.float64)[None, :]) / fwhm
    lorentz = 1.0 / (1.0 + 4.0 * delta**2)
    gauss = np.exp(-4.0 * np.log(2.0) * delta**2)
    return eta * lorentz + (1.0 - eta) * gauss
