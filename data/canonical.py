"""Canonical content hash of a crystal: one id per crystal, whatever way it is written down.

The hash must not change when the same crystal is written with

* its sites in another order (site permutation),
* another origin (every fractional coordinate shifted by the same vector, mod 1),
* another lattice basis (any unimodular integer change of basis), or
* rotated in Cartesian space.

Algorithm:

1. Reduce the lattice (Minkowski reduction, ASE) and make it right-handed (negate if needed: the
   metric does not change, and fixing handedness keeps a chiral crystal and its mirror image
   apart).
2. Among all bases ``K L`` with ``K`` an integer matrix of entries in {-1, 0, 1} and ``det K = 1``
   (these cover every reduced basis of the lattice), keep those whose metric
   ``(G11, G22, G33, G23, G13, G12)`` is lexicographically smallest *within a tolerance*
   (``metric_tol``, Å²). This is a Niggli-like choice (shortest vectors, then most obtuse
   angles); the tolerance makes it stable where reduction itself is numerically ambiguous,
   e.g. two lattice vectors of almost equal length, which a plain Niggli reduction resolves
   differently depending on the input basis. The kept set always contains every proper
   automorphism of the chosen metric.
3. For every kept basis and every choice of origin on a site of the rarest element, shift the
   coordinates, round them to ``decimals`` and sort the sites; keep the lexicographically
   smallest of these descriptions.
4. Hash the lattice parameters of that basis (lengths to ``decimals - 1`` decimals in Å, angles
   to ``decimals - 2`` in degrees), the atomic numbers and the smallest description.

Rounding makes the hash a discrete id: two structures that differ by less than the rounding step
normally collide (intended, for de-duplication), and a coordinate sitting exactly on a rounding
boundary can make two near-identical structures differ. Tolerance-based matching is the job of
``StructureMatcher``; this hash is the exact-duplicate key of the candidate store.

Supercells of the same crystal hash differently (the number of sites differs); reduce to the
primitive cell first where that matters.
"""

from __future__ import annotations

import hashlib
import itertools
from functools import cache
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from crystaloop.data.crystal import Crystal

__all__ = ["canonical_hash", "canonical_bases", "niggli_reduce", "reduced_basis"]

HASH_VERSION = "crystaloop-canonical-v1"  # bump when the algorithm changes: stored ids depend on it


@cache
def _unimodular_candidates() -> np.ndarray:
    """All 3×3 matrices with entries in {-1, 0, 1} and determinant +1, shape (M, 3, 3)."""
    mats = np.array(list(itertools.product((-1, 0, 1), repeat=9)), dtype=np.int64).reshape(-1, 3, 3)
    dets = np.round(np.linalg.det(mats.astype(np.float64))).astype(np.int64)
    return mats[dets == 1]


@cache
def _unimodular_candidates_float() -> np.ndarray:
    return _unimodular_candidates().astype(np.float64)


def reduced_basis(lattice: np.ndarray) -> np.ndarray:
    """Minkowski-reduced, right-handed basis of the lattice spanned by ``lattice`` rows (Å)."""
    from ase.geometry import minkowski_reduce

    reduced = np.asarray(minkowski_reduce(np.array(lattice, dtype=np.float64))[0], dtype=np.float64)
    if np.linalg.det(reduced) < 0:
        reduced = -reduced
    return reduced


def canonical_bases(lattice: np.ndarray, metric_tol: float = 0.05) -> np.ndarray:
    """The bases tied for the canonical choice (step 2 of the module docstring).

    Args:
        lattice: (3, 3) row-vector lattice in Å (any basis).
        metric_tol: two metric entries closer than this (Å²) count as equal.

    Returns:
        (T, 3, 3) bases in Å, all spanning the same lattice, the best first.
    """
    reduced = reduced_basis(lattice)
    transforms = _unimodular_candidates_float()
    metric = transforms @ (reduced @ reduced.T) @ transforms.transpose(0, 2, 1)  # K G Kᵀ, (M, 3, 3)
    keys = metric[:, [0, 1, 2, 1, 0, 0], [0, 1, 2, 2, 2, 1]]  # G11, G22, G33, G23, G13, G12
    keep = np.ones(len(keys), dtype=bool)
    for column in range(keys.shape[1]):
        best = keys[keep, column].min()
        keep &= keys[:, column] <= best + metric_tol
    tied = np.flatnonzero(keep)
    order = np.lexsort(keys[tied].T[::-1])
    return transforms[tied[order]] @ reduced


def niggli_reduce(crystal: Crystal) -> tuple[np.ndarray, np.ndarray]:
    """The canonical reduced basis of ``crystal`` and the sites' fractional coordinates in it.

    Returns:
        (lattice (3, 3) in Å, frac_coords (N, 3) in [0, 1)).
    """
    from crystaloop.data.crystal import wrap_fractional

    basis = canonical_bases(crystal.lattice)[0]
    frac = np.linalg.solve(basis.T, crystal.cart_coords.T).T
    return basis, wrap_fractional(frac)


def canonical_hash(crystal: Crystal, *, decimals: int = 3) -> str:
    """Hex sha256 that identifies ``crystal`` up to permutation, origin, basis and rotation.

    Args:
        crystal: the structure.
        decimals: fractional coordinates are rounded to this many decimals, lattice lengths to
            one fewer (Å), angles to two fewer (degrees).
    """
    from crystaloop.data.crystal import lattice_parameters

    bases = canonical_bases(crystal.lattice)
    cart = crystal.cart_coords
    frac_per_basis = [np.linalg.solve(basis.T, cart.T).T for basis in bases]
    description = _smallest_description(frac_per_basis, crystal.numbers, decimals)

    a, b, c, alpha, beta, gamma = lattice_parameters(bases[0])
    length_decimals, angle_decimals = max(decimals - 1, 0), max(decimals - 2, 0)
    lengths = np.round(np.array([a, b, c]), length_decimals) + 0.0
    angles = np.round(np.array([alpha, beta, gamma]), angle_decimals) + 0.0
    digest = hashlib.sha256()
    digest.update(HASH_VERSION.encode())
    digest.update(f"|{decimals}|".encode())
    digest.update(" ".join(f"{x:.{length_decimals}f}" for x in lengths).encode())
    digest.update(" ".join(f"{x:.{angle_decimals}f}" for x in angles).encode())
    digest.update(description.tobytes())
    return digest.hexdigest()


def _smallest_description(frac_per_basis: list[np.ndarray], numbers: np.ndarray, decimals: int) -> np.ndarray:
    """Lexicographically smallest (Z, ix, iy, iz) site table over bases and origins.

    Coordinates are integers ``round(x * 10**decimals) mod 10**decimals``.
    """
    grid = 10**decimals
    counts = {z: int((numbers == z).sum()) for z in np.unique(numbers).tolist()}
    anchor_z = min(counts, key=lambda z: (counts[z], z))
    anchors = np.flatnonzero(numbers == anchor_z)

    best: np.ndarray | None = None
    for frac in frac_per_basis:
        shifted = frac[None, :, :] - frac[anchors][:, None, :]  # every origin at once: (A, N, 3)
        ints = np.mod(np.round(shifted * grid).astype(np.int64), grid)
        for coords in ints:
            table = np.column_stack([numbers, coords])
            table = table[np.lexsort(table.T[::-1])]
            if best is None or _lex_less(table, best):
                best = table
    if best is None:
        raise ValueError("canonical description needs at least one site and one basis")
    return best


def _lex_less(a: np.ndarray, b: np.ndarray) -> bool:
    flat_a, flat_b = a.ravel(), b.ravel()
    diff = np.flatnonzero(flat_a != flat_b)
    return bool(diff.size) and bool(flat_a[diff[0]] < flat_b[diff[0]])
