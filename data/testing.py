"""Invariance checks for crystal models, shipped with the library (as e3nn ships ``assert_equivariant``).

A crystal can be written down in many ways that describe the same solid; a model must not care
which one it is given. This module makes those rewrites and checks a function against them:

* **transformations** of a :class:`Crystal`, each seeded by a ``numpy.random.Generator``:
  :func:`random_rotation` (``L → L Rᵀ``, fractional coordinates unchanged), :func:`translate` /
  :func:`random_translation` (fractional shift mod 1), :func:`permute_sites`,
  :func:`change_basis` (unimodular integer ``M``: ``L → M L``, ``frac → frac M⁻¹``),
  :func:`make_supercell`, and :func:`random_crystal` for property tests;
* **assertions**: :func:`assert_invariant` (graph-level output unchanged),
  :func:`assert_equivariant_sites` (per-site output permutes with the sites and, for Cartesian
  vectors, rotates with the lattice), :func:`assert_supercell` (intensive stays, extensive
  scales) and :func:`check_all` (deviation per transformation, for reports).

A model test is then three lines::

    rng = np.random.default_rng(0)
    crystal = random_crystal(rng, n_sites=6)
    assert_invariant(lambda c: model.predict([c]).mean, crystal, rng=rng)

Checks run in float64 by default (``precision="float64"``: torch's default dtype is float64
while ``fn`` runs, and :data:`FLOAT64_TOLERANCE` applies); pass ``precision="float32"`` for a
model that computes in float32 (:data:`FLOAT32_TOLERANCE`). A failure raises ``AssertionError``
naming each transformation that broke the property and its max deviation.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from crystaloop.data.crystal import Crystal, atomic_number

__all__ = [
    "Tolerance",
    "FLOAT64_TOLERANCE",
    "FLOAT32_TOLERANCE",
    "TRANSFORMS",
    "random_rotation_matrix",
    "rotate",
    "random_rotation",
    "translate",
    "random_translation",
    "permute_sites",
    "random_unimodular",
    "apply_basis_change",
    "change_basis",
    "make_supercell",
    "random_crystal",
    "assert_invariant",
    "assert_equivariant_sites",
    "assert_supercell",
    "check_all",
]

Transform = Literal["rotation", "translation", "permutation", "basis"]
Precision = Literal["float64", "float32"]
TRANSFORMS: tuple[Transform, ...] = ("rotation", "translation", "permutation", "basis")


@dataclass(frozen=True)
class Tolerance:
    """Allowed deviation ``atol + rtol * max|reference|`` (units of the checked output)."""

    atol: float
    rtol: float

    def bound(self, reference: np.ndarray) -> float:
        scale = float(np.max(np.abs(reference))) if reference.size else 0.0
        return self.atol + self.rtol * scale


FLOAT64_TOLERANCE = Tolerance(atol=1e-8, rtol=1e-8)
FLOAT32_TOLERANCE = Tolerance(atol=1e-4, rtol=1e-4)
_TOLERANCES: dict[str, Tolerance] = {"float64": FLOAT64_TOLERANCE, "float32": FLOAT32_TOLERANCE}


# ---------------------------------------------------------------------------- transformations
def random_rotation_matrix(rng: np.random.Generator) -> np.ndarray:
    """(3, 3) proper rotation (det +1), uniform over SO(3) (QR of a Gaussian matrix)."""
    q, r = np.linalg.qr(rng.standard_normal((3, 3)))
    q = q * np.sign(np.diag(r))
    if np.linalg.det(q) < 0:
        q[:, 0] = -q[:, 0]
    return q


def rotate(crystal: Crystal, rotation: np.ndarray) -> Crystal:
    """Rotate in Cartesian space: lattice rows ``L → L Rᵀ`` (so ``cart → cart Rᵀ``); frac unchanged."""
    return Crystal(crystal.lattice @ np.asarray(rotation, dtype=np.float64).T, crystal.frac_coords, crystal.numbers)


def random_rotation(crystal: Crystal, rng: np.random.Generator) -> Crystal:
    """:func:`rotate` by a :func:`random_rotation_matrix`."""
    return rotate(crystal, random_rotation_matrix(rng))


def translate(crystal: Crystal, shift: Sequence[float] | np.ndarray) -> Crystal:
    """Shift every site by the same fractional vector ``shift`` (3,), wrapped back into [0, 1)."""
    return Crystal(crystal.lattice, crystal.frac_coords + np.asarray(shift, dtype=np.float64), crystal.numbers)


def random_translation(crystal: Crystal, rng: np.random.Generator) -> Crystal:
    """:func:`translate` by a uniform random fractional shift in [0, 1)^3."""
    return translate(crystal, rng.random(3))


def permute_sites(crystal: Crystal, rng: np.random.Generator) -> tuple[Crystal, np.ndarray]:
    """The sites in a random order: site ``k`` of the result is site ``permutation[k]`` of ``crystal``.

    Every site moves (no fixed points when there are two or more), so a check that looks at one
    site cannot pass by luck.
    """
    permutation = rng.permutation(crystal.n_sites)
    while crystal.n_sites > 1 and (permutation == np.arange(crystal.n_sites)).any():
        permutation = rng.permutation(crystal.n_sites)
    return Crystal(crystal.lattice, crystal.frac_coords[permutation], crystal.numbers[permutation]), permutation


def random_unimodular(rng: np.random.Generator, max_entry: int = 2) -> np.ndarray:
    """(3, 3) int64 matrix with ``|det| = 1``, entries in [-max_entry, max_entry], not the identity.

    A product of two integer shears, a sign flip and an axis permutation.
    """
    while True:
        matrix = np.eye(3, dtype=np.int64)
        for _ in range(2):
            i, j = rng.choice(3, size=2, replace=False)
            shear = np.eye(3, dtype=np.int64)
            shear[i, j] = rng.choice((-1, 1))
            matrix = shear @ matrix
        matrix = np.diag(rng.choice((-1, 1), size=3)) @ matrix[rng.permutation(3)]
        if np.abs(matrix).max() <= max_entry and not np.array_equal(matrix, np.eye(3, dtype=np.int64)):
            return matrix


def apply_basis_change(crystal: Crystal, matrix: np.ndarray) -> Crystal:
    """The same crystal in the lattice basis ``M L``: fractional coordinates ``frac M⁻¹`` (wrapped).

    ``matrix`` must be an integer matrix with determinant ±1 (it then spans the same lattice).
    """
    matrix = np.asarray(matrix)
    if matrix.shape != (3, 3) or not np.array_equal(matrix, np.round(matrix)) or round(abs(np.linalg.det(matrix))) != 1:
        raise ValueError(f"a basis change must be a 3×3 integer matrix with determinant ±1, got {matrix.tolist()}")
    inverse = np.round(np.linalg.inv(matrix))
    return Crystal(matrix.astype(np.float64) @ crystal.lattice, crystal.frac_coords @ inverse, crystal.numbers)


def change_basis(crystal: Crystal, rng: np.random.Generator) -> Crystal:
    """:func:`apply_basis_change` with a :func:`random_unimodular` matrix."""
    return apply_basis_change(crystal, random_unimodular(rng))


def make_supercell(crystal: Crystal, reps: Sequence[int]) -> tuple[Crystal, np.ndarray]:
    """The ``nx × ny × nz`` supercell and, per supercell site, the index of its original site.

    Sites are cell image after cell image (x slowest), each image holding the original sites in
    order, so ``site_map = tile(arange(N), nx * ny * nz)``.
    """
    reps_array = np.asarray(reps, dtype=np.int64)
    if reps_array.shape != (3,) or (reps_array < 1).any():
        raise ValueError(f"reps must be three positive integers, got {list(reps)}")
    cells = np.array(np.meshgrid(*[np.arange(n) for n in reps_array], indexing="ij")).reshape(3, -1).T
    frac = (crystal.frac_coords[None, :, :] + cells[:, None, :]) / reps_array
    n_cells = len(cells)
    supercell = Crystal(reps_array[:, None] * crystal.lattice, frac.reshape(-1, 3), np.tile(crystal.numbers, n_cells))
    return supercell, np.tile(np.arange(crystal.n_sites), n_cells)


def random_crystal(
    rng: np.random.Generator,
    n_sites: int = 6,
    elements: Sequence[str] = ("Li", "C", "O", "Si", "Ti"),
    *,
    volume_per_site: float = 15.0,
    min_distance: float = 1.2,
    max_tries: int = 200,
) -> Crystal:
    """A plausible random crystal for property tests (not a physical structure).

    Lattice: lengths within a factor 1.5 of each other, angles in 65°–115°, scaled to
    ``n_sites * volume_per_site`` Å³. Sites: placed one by one, each at least ``min_distance``
    Å from every site and periodic image placed before (and the cell's own translations longer
    than that); species drawn uniformly from ``elements``. Raises ``RuntimeError`` when no
    arrangement is found in ``max_tries`` lattices (density too high).
    """
    from crystaloop.data.graphs import minimum_image_distances

    numbers = np.array([atomic_number(e) for e in elements], dtype=np.int64)[rng.integers(len(elements), size=n_sites)]
    for _ in range(max_tries):
        lattice = _random_lattice(rng, n_sites * volume_per_site)
        frac = np.empty((0, 3))
        for _site in range(n_sites):
            for _attempt in range(100):
                trial = np.vstack([frac, rng.random((1, 3))])
                distances = minimum_image_distances(Crystal(lattice, trial, numbers[: len(trial)]))
                if distances.min() > min_distance:
                    frac = trial
                    break
            else:
                break
        if len(frac) == n_sites:
            return Crystal(lattice, frac, numbers)
    raise RuntimeError(
        f"no random crystal with {n_sites} sites, {volume_per_site} Å³/site and min distance {min_distance} Å "
        f"in {max_tries} tries; lower min_distance or raise volume_per_site"
    )


def _random_lattice(rng: np.random.Generator, volume: float) -> np.ndarray:
    """Row-vector lattice with random lengths and angles, scaled to ``volume`` Å³."""
    lengths = rng.uniform(1.0, 1.5, size=3)
    while True:  # angle triples that close a cell with some height left
        alpha, beta, gamma = np.radians(rng.uniform(65.0, 115.0, size=3))
        cx = np.cos(beta)
        cy = (np.cos(alpha) - np.cos(beta) * np.cos(gamma)) / np.sin(gamma)
        if 1.0 - cx**2 - cy**2 > 0.1:
            break
    lattice = np.array(
        [
            [lengths[0], 0.0, 0.0],
            lengths[1] * np.array([np.cos(gamma), np.sin(gamma), 0.0]),
            lengths[2] * np.array([cx, cy, np.sqrt(1.0 - cx**2 - cy**2)]),
        ]
    )
    return lattice * (volume / abs(np.linalg.det(lattice))) ** (1.0 / 3.0)


# ---------------------------------------------------------------------------- assertions
def assert_invariant(
    fn: Callable[[Crystal], Any],
    crystal: Crystal,
    *,
    rng: np.random.Generator,
    transforms: Sequence[Transform] = TRANSFORMS,
    precision: Precision = "float64",
    atol: float | None = None,
    rtol: float | None = None,
) -> None:
    """Assert that a graph-level output ``fn(crystal)`` (array or float) ignores each transformation.

    Raises:
        AssertionError: naming every transformation whose output deviates by more than
            ``atol + rtol * max|fn(crystal)|``, with the max deviation.
    """
    reference = _evaluate(fn, crystal, precision)
    deviations = _invariance_deviations(fn, crystal, reference, rng, transforms, precision)
    _raise_if_broken("invariant", deviations, _tolerance(precision, atol, rtol), reference)


def assert_equivariant_sites(
    fn: Callable[[Crystal], Any],
    crystal: Crystal,
    *,
    rng: np.random.Generator,
    vector: bool = False,
    transforms: Sequence[Transform] = TRANSFORMS,
    precision: Precision = "float64",
    atol: float | None = None,
    rtol: float | None = None,
) -> None:
    """Assert that a per-site output ``fn(crystal)`` of shape (N, ...) follows the sites.

    Under a permutation, row ``k`` must become row ``permutation[k]``; under translation and
    basis change (same Cartesian crystal, same site order) nothing may change. Under rotation a
    scalar output is unchanged and, with ``vector=True``, a Cartesian vector output (last axis
    of size 3, e.g. forces in eV/Å) must rotate as ``v → v Rᵀ``.
    """
    reference = _evaluate(fn, crystal, precision)
    if reference.ndim < 1 or reference.shape[0] != crystal.n_sites:
        raise AssertionError(f"per-site output must have shape ({crystal.n_sites}, ...), got {reference.shape}")
    if vector and reference.shape[-1] != 3:
        raise AssertionError(f"vector output must end in an axis of size 3, got shape {reference.shape}")
    deviations: dict[str, float] = {}
    for name in transforms:
        expected = reference
        if name == "rotation":
            rotation = random_rotation_matrix(rng)
            transformed = rotate(crystal, rotation)
            expected = reference @ rotation.T if vector else reference
        elif name == "permutation":
            transformed, permutation = permute_sites(crystal, rng)
            expected = reference[permutation]
        else:
            transformed = _apply(name, crystal, rng)
        deviations[name] = _deviation(expected, _evaluate(fn, transformed, precision))
    _raise_if_broken("equivariant per site", deviations, _tolerance(precision, atol, rtol), reference)


def assert_supercell(
    fn: Callable[[Crystal], Any],
    crystal: Crystal,
    reps: Sequence[int] = (2, 1, 1),
    *,
    kind: Literal["intensive", "extensive"] = "intensive",
    precision: Precision = "float64",
    atol: float | None = None,
    rtol: float | None = None,
) -> None:
    """Assert that a graph-level output stays (intensive) or scales by the cell count (extensive)."""
    if kind not in ("intensive", "extensive"):
        raise ValueError(f"kind must be 'intensive' or 'extensive', got {kind!r}")
    reference = _evaluate(fn, crystal, precision)
    supercell, _ = make_supercell(crystal, reps)
    expected = reference * (int(np.prod(reps)) if kind == "extensive" else 1)
    deviations = {
        f"supercell {tuple(int(n) for n in reps)} ({kind})": _deviation(expected, _evaluate(fn, supercell, precision))
    }
    _raise_if_broken(kind, deviations, _tolerance(precision, atol, rtol), expected)


def check_all(
    fn: Callable[[Crystal], Any],
    crystal: Crystal,
    rng: np.random.Generator,
    *,
    transforms: Sequence[Transform] = TRANSFORMS,
    precision: Precision = "float64",
) -> dict[str, float]:
    """Max deviation of a graph-level ``fn`` under each transformation, for reports (never raises)."""
    return _invariance_deviations(fn, crystal, _evaluate(fn, crystal, precision), rng, transforms, precision)


# ---------------------------------------------------------------------------- internals
def _apply(name: str, crystal: Crystal, rng: np.random.Generator) -> Crystal:
    moves = {"rotation": random_rotation, "translation": random_translation, "basis": change_basis}
    if name == "permutation":
        return permute_sites(crystal, rng)[0]
    if name not in moves:
        raise ValueError(f"unknown transformation {name!r}; allowed: {', '.join(TRANSFORMS)}")
    return moves[name](crystal, rng)


def _invariance_deviations(
    fn: Callable[[Crystal], Any],
    crystal: Crystal,
    reference: np.ndarray,
    rng: np.random.Generator,
    transforms: Sequence[Transform],
    precision: Precision,
) -> dict[str, float]:
    return {name: _deviation(reference, _evaluate(fn, _apply(name, crystal, rng), precision)) for name in transforms}


@contextmanager
def _default_dtype(precision: Precision) -> Iterator[None]:
    """Torch's default dtype set to ``precision`` while ``fn`` runs (restored afterwards)."""
    import torch

    _tolerance(precision, None, None)  # refuses an unknown precision

    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64 if precision == "float64" else torch.float32)
    try:
        yield
    finally:
        torch.set_default_dtype(previous)


def _evaluate(fn: Callable[[Crystal], Any], crystal: Crystal, precision: Precision) -> np.ndarray:
    with _default_dtype(precision):
        value = fn(crystal)
    if hasattr(value, "detach"):  # a torch tensor
        value = value.detach().cpu().numpy()
    return np.asarray(value, dtype=np.float64)


def _deviation(expected: np.ndarray, actual: np.ndarray) -> float:
    """Max absolute difference; inf when shapes differ or any value is not finite."""
    if expected.shape != actual.shape or expected.size == 0:
        return 0.0 if expected.shape == actual.shape else float("inf")
    difference = np.abs(expected - actual)
    return float(difference.max()) if np.all(np.isfinite(difference)) else float("inf")


def _tolerance(precision: Precision, atol: float | None, rtol: float | None) -> Tolerance:
    if precision not in _TOLERANCES:
        raise ValueError(f"precision must be one of {sorted(_TOLERANCES)}, got {precision!r}")
    default = _TOLERANCES[precision]
    return Tolerance(default.atol if atol is None else atol, default.rtol if rtol is None else rtol)


def _raise_if_broken(
    property_name: str, deviations: dict[str, float], tolerance: Tolerance, reference: np.ndarray
) -> None:
    bound = tolerance.bound(reference)
    broken = {name: value for name, value in deviations.items() if not value <= bound}
    if broken:
        details = "; ".join(f"{name}: max deviation {value:.3g}" for name, value in broken.items())
        raise AssertionError(
            f"output is not {property_name} under {', '.join(broken)} ({details}; allowed {bound:.3g} = "
            f"atol {tolerance.atol:g} + rtol {tolerance.rtol:g} × max|reference|)"
        )
