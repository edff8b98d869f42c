"""The symmetric subspace of one template: every crystal with its space group and Wyckoff orbits,
as an affine map of the free parameters, and the projection of any cell of the same sites onto it.

For a template (:class:`~crystaloop.generator.symmetry.representation.SymmetricCrystal`) written
out in its primitive (or conventional) cell, site ``j`` of orbit ``o`` sits at

    f_j = A_j v_o + b_j   (mod 1)

with ``v_o`` the orbit's free coordinates (0–3 numbers, :meth:`Orbit.free_coordinates`), ``A_j``
(3, dof) and ``b_j`` (3,) fixed by the Wyckoff triplet, the group operation that carries the
representative to site ``j`` and, for a centred group, the primitive cell's basis. The lattice is
symmetric when its conventional metric has the form the crystal system allows
(:data:`~crystaloop.generator.symmetry.representation.LATTICE_PARAMETERS`).

:meth:`SymmetricSubspace.project_frac` maps fractional coordinates (N, 3) to the nearest point of
the subspace (least squares on the periodic residuals, per orbit, Gauss–Newton from the current
parameters); :meth:`SymmetricSubspace.project_lattice` maps a lattice to the nearest one of the
crystal system (lengths averaged where the system ties them, angles fixed where it fixes them,
read from the metric, so the frame's rotation does not matter). Both are idempotent. A
diffusion step followed by the projection is the step with its noise and score projected onto
the subspace (the coordinate part is affine; DiffCSP++, Jiao et al., ICLR 2024, constrains its
coordinates the same way), so every state of a projected trajectory has the template's symmetry.
"""

from __future__ import annotations

import itertools

import numpy as np

from crystaloop.data.crystal import Crystal, atomic_number
from crystaloop.generator.symmetry.representation import (
    _CENTRING,
    SymmetricCrystal,
    _free_parameters,
)
from crystaloop.generator.symmetry.wyckoff import group, periodic_distance, wyckoff_position

__all__ = ["SymmetricSubspace"]

_DEDUP_TOL = 1e-4  # fractional distance under which two images are the same site (as in to_crystal)


def _wrap(delta: np.ndarray) -> np.ndarray:
    """Periodic differences folded into [-0.5, 0.5)."""
    return delta - np.floor(delta + 0.5)


def _solve_periodic(matrix: np.ndarray, offset: np.ndarray, point: np.ndarray, iterations: int = 3) -> np.ndarray:
    """(dof,) ``v`` with ``matrix @ v + offset ≡ point`` (mod 1), least squares on folded residuals.

    A plain least-squares solve is wrong when the point was wrapped into [0, 1) component by
    component (the triplet ``x, 2x, 1/4`` at x = 0.6 is stored as 0.6, 0.2, 0.25).
    """
    if matrix.shape[1] == 0:
        return np.zeros(0)
    best, best_error = np.zeros(matrix.shape[1]), np.inf
    for lift in itertools.product((-2, -1, 0, 1, 2), repeat=3):  # which periodic image the stored point is
        values, *_ = np.linalg.lstsq(matrix, point - offset + np.array(lift), rcond=None)
        for _ in range(iterations):
            step, *_ = np.linalg.lstsq(matrix, _wrap(point - offset - matrix @ values), rcond=None)
            values = values + step
        error = float(np.abs(_wrap(point - offset - matrix @ values)).max())
        if error < best_error - 1e-12:
            best, best_error = values, error
    return best


class SymmetricSubspace:
    """The affine subspace of ``symmetric``'s sites in its primitive (default) or conventional cell.

    Attributes:
        symmetric: the template with the parameters the subspace was built at.
        primitive: which cell the sites are written in.
        crystal: ``symmetric.to_crystal(primitive=primitive)``, the sites in the order every
            method here uses.
        orbit_of: (N,) orbit index of each site.
    """

    def __init__(self, symmetric: SymmetricCrystal, *, primitive: bool = True) -> None:
        self.symmetric, self.primitive = symmetric, primitive
        centring = group(symmetric.space_group).symbol[0]
        self._centring = _CENTRING[centring] if primitive else np.eye(3)
        to_cell = np.linalg.inv(self._centring)  # conventional fractional → this cell's fractional
        maps: list[tuple[int, np.ndarray, np.ndarray]] = []
        initial: list[np.ndarray] = []
        positions: list[np.ndarray] = []
        for index, orbit in enumerate(symmetric.orbits):
            position = wyckoff_position(symmetric.space_group, orbit.letter)
            first = np.asarray(position.ops[0].rotation_matrix, dtype=np.float64)
            free = np.flatnonzero(np.abs(first).sum(axis=0) > 0)
            triplet, offset = first[:, free], np.asarray(position.ops[0].translation_vector, dtype=np.float64)
            parameters = _solve_periodic(triplet, offset, orbit.representative)
            initial.append(parameters)
            for op in position.ops:
                rotation = np.asarray(op.rotation_matrix, dtype=np.float64)
                matrix = to_cell @ rotation @ triplet
                shift = to_cell @ (rotation @ offset + np.asarray(op.translation_vector, dtype=np.float64))
                site = np.mod(matrix @ parameters + shift, 1.0)
                if primitive and centring != "P" and positions and (periodic_distance(np.array(positions), site) < _DEDUP_TOL).any():
                    continue
                positions.append(site)
                maps.append((index, matrix, shift))
        self.orbit_of = np.array([m[0] for m in maps])
        self._matrices = [m[1] for m in maps]
        self._shifts = np.array([m[2] for m in maps])
        self._parameters = initial
        numbers = np.array([atomic_number(symmetric.orbits[i].element) for i in self.orbit_of])
        lattice = symmetric.conventional_lattice
        if primitive:
            lattice = self._centring.T @ lattice
        self.crystal = Crystal(lattice, np.array(positions), numbers)

    @property
    def n_sites(self) -> int:
        return len(self.orbit_of)

    @property
    def n_free(self) -> int:
        """Free coordinates of all orbits together (the lattice's are on top)."""
        return sum(len(v) for v in self._parameters)

    # -- coordinates ---------------------------------------------------------------------------

    def sites(self, parameters: list[np.ndarray]) -> np.ndarray:
        """(N, 3) fractional coordinates in [0, 1) of the sites for per-orbit free ``parameters``."""
        return np.mod(np.stack([m @ parameters[o] + b for o, m, b in zip(self.orbit_of, self._matrices, self._shifts,
                                                                          strict=True)]), 1.0)

    def fit_parameters(self, frac: np.ndarray, iterations: int = 3) -> list[np.ndarray]:
        """Per-orbit free coordinates closest to ``frac`` (N, 3) (least squares on periodic residuals).

        Gauss–Newton from the parameters the subspace was built at (or the last fit): each
        iteration solves the linearised problem on residuals folded into [-0.5, 0.5), which is
        exact once every residual is below half a cell.
        """
        frac = np.asarray(frac, dtype=np.float64)
        if frac.shape != (self.n_sites, 3):
            raise ValueError(f"expected fractional coordinates of shape ({self.n_sites}, 3), got {frac.shape}")
        fitted = []
        for index, start in enumerate(self._parameters):
            members = np.flatnonzero(self.orbit_of == index)
            if start.size == 0:
                fitted.append(start)
                continue
            design = np.concatenate([self._matrices[j] for j in members])  # (3m, dof)
            values = start.copy()
            for _ in range(iterations):
                predicted = np.stack([self._matrices[j] @ values + self._shifts[j] for j in members])
                residual = _wrap(frac[members] - predicted).reshape(-1)
                step, *_ = np.linalg.lstsq(design, residual, rcond=None)
                values = values + step
            fitted.append(np.mod(values, 1.0))
        self._parameters = fitted
        return [v.copy() for v in fitted]

    def project_frac(self, frac: np.ndarray) -> np.ndarray:
        """(N, 3) the symmetric sites nearest ``frac`` (N, 3), in [0, 1)."""
        return self.sites(self.fit_parameters(frac))

    # -- lattice -------------------------------------------------------------------------------

    def lattice_parameters(self, lattice: np.ndarray) -> tuple[float, ...]:
        """The crystal system's free lattice parameters (Å, degrees) nearest ``lattice`` (3, 3), rows
        the cell's vectors in any Cartesian frame."""
        lattice = np.asarray(lattice, dtype=np.float64)
        to_conventional = np.linalg.inv(self._centring.T)  # L_conv = (Pᵀ)⁻¹ L
        metric = to_conventional @ (lattice @ lattice.T) @ to_conventional.T
        metric = (metric + metric.T) / 2
        values, vectors = np.linalg.eigh(metric)
        floor = 1e-6 * max(float(values.max()), 1e-12)
        metric = (vectors * np.clip(values, floor, None)) @ vectors.T
        return _free_parameters(np.linalg.cholesky(metric), self.symmetric.crystal_system)

    def lattice_from_parameters(self, parameters: tuple[float, ...]) -> np.ndarray:
        """(3, 3) this cell's lattice (rows, Å) in the standard orientation for crystal-system ``parameters``."""
        conventional = self.symmetric.with_parameters(parameters, [o.representative for o in self.symmetric.orbits])
        return self._centring.T @ conventional.conventional_lattice

    def project_lattice(self, lattice: np.ndarray) -> np.ndarray:
        """(3, 3) the lattice of the crystal system nearest ``lattice`` (rows, any frame), in the
        standard orientation; the same cell vectors, so fractional coordinates keep their meaning."""
        return self.lattice_from_parameters(self.lattice_parameters(lattice))

    def with_state(self, lattice: np.ndarray, frac: np.ndarray) -> SymmetricCrystal:
        """The template with the parameters of a (projected) state: lattice (3, 3) rows, frac (N, 3)."""
        parameters = self.fit_parameters(frac)
        representatives = []
        for orbit, values in zip(self.symmetric.orbits, parameters, strict=True):
            first = wyckoff_position(self.symmetric.space_group, orbit.letter).ops[0]
            rotation = np.asarray(first.rotation_matrix, dtype=np.float64)
            free = np.flatnonzero(np.abs(rotation).sum(axis=0) > 0)
            full = np.zeros(3)
            full[free] = values
            representatives.append(np.mod(rotation @ full + np.asarray(first.translation_vector, dtype=np.float64), 1.0))
        return self.symmetric.with_parameters(self.lattice_parameters(lattice), representatives)

