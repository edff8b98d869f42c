"""Space-group and Wyckoff tables (pyxtal's, ITA standard settings) and the two operations the
representation needs: expanding an orbit representative and recognising an orbit's Wyckoff position.

Settings: pyxtal's tables (Fredericks et al., Comput. Phys. Commun. 261, 107810, 2021) use one
setting per space group: unique axis b, cell choice 1 for monoclinic groups, origin choice 2
for the 24 groups with two origins, hexagonal axes for the rhombohedral ones.
:func:`hall_number` gives spglib's Hall number of that setting, so spglib standardises a cell
straight into the frame whose coordinates the tables describe.

Coordinates here are fractional in the conventional cell; ``ops`` of a Wyckoff position list
every site of the orbit in that cell (centring translations included), and its first operation
``ops[0]`` is the affine projection ``q ↦ R q + t`` onto the position's coordinate triplet
(``x, 1/4, z``): a point lies on the triplet exactly when that projection fixes it (mod 1).
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import numpy as np

from crystaloop.data.errors import CrystaloopError

__all__ = [
    "CRYSTAL_SYSTEMS",
    "crystal_system",
    "group",
    "hall_number",
    "wyckoff_position",
    "expand",
    "periodic_distance",
    "identify_orbit",
    "centring_points",
    "alternatives",
    "metric_keeping_cosets",
]

CRYSTAL_SYSTEMS: tuple[tuple[str, int, int], ...] = (
    ("triclinic", 1, 2),
    ("monoclinic", 3, 15),
    ("orthorhombic", 16, 74),
    ("tetragonal", 75, 142),
    ("trigonal", 143, 167),
    ("hexagonal", 168, 194),
    ("cubic", 195, 230),
)
"""(name, first, last space-group number) of each crystal system."""


def _check_number(number: int) -> int:
    if not 1 <= int(number) <= 230:
        raise CrystaloopError(f"space group number must be 1..230, got {number}")
    return int(number)


def crystal_system(number: int) -> str:
    """Crystal system of space group ``number`` (``"cubic"`` for 225)."""
    number = _check_number(number)
    return next(name for name, first, last in CRYSTAL_SYSTEMS if first <= number <= last)


@lru_cache(maxsize=230)
def group(number: int) -> Any:
    """pyxtal's ``Group`` of space group ``number`` (built once per process, ~10 ms each)."""
    from pyxtal.symmetry import Group

    return Group(_check_number(number))


def hall_number(number: int) -> int:
    """spglib's Hall number of the setting pyxtal's tables use for space group ``number``."""
    return int(group(number).hall_number)


@lru_cache(maxsize=4096)
def wyckoff_position(number: int, letter: str) -> Any:
    """pyxtal's Wyckoff position ``letter`` of space group ``number``.

    Raises:
        CrystaloopError: the group has no such letter (the message lists the ones it has).
    """
    for wp in group(number):
        if wp.letter == letter:
            return wp
    letters = "".join(sorted(wp.letter for wp in group(number)))
    raise CrystaloopError(f"space group {number} has no Wyckoff position {letter!r}; it has {letters}")


def periodic_distance(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Largest per-axis fractional distance between ``a`` (..., 3) and ``b`` (..., 3) modulo 1."""
    d = np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)
    return np.abs(d - np.round(d)).max(axis=-1)


def _ops_arrays(wp: Any) -> tuple[np.ndarray, np.ndarray]:
    """(rotations (m, 3, 3), translations (m, 3)) of a Wyckoff position's operations."""
    return (np.array([op.rotation_matrix for op in wp.ops], dtype=np.float64),
            np.array([op.translation_vector for op in wp.ops], dtype=np.float64))


@lru_cache(maxsize=4096)
def _cached_ops(number: int, letter: str) -> tuple[np.ndarray, np.ndarray]:
    return _ops_arrays(wyckoff_position(number, letter))


def expand(number: int, letter: str, representative: np.ndarray) -> np.ndarray:
    """(multiplicity, 3) fractional coordinates in [0, 1) of the orbit of ``representative`` (3,)
    under Wyckoff position ``letter`` of space group ``number`` (conventional cell)."""
    rotations, translations = _cached_ops(number, letter)
    points = np.einsum("mij,j->mi", rotations, np.asarray(representative, dtype=np.float64)) + translations
    return np.mod(points, 1.0)


@lru_cache(maxsize=230)
def alternatives(number: int) -> tuple[tuple[np.ndarray, np.ndarray, dict[str, str]], ...]:
    """The equivalent descriptions of a crystal of space group ``number`` in the same setting.

    One ``(rotation (3, 3), translation (3,), letter map)`` per coset of the group in its
    Euclidean normaliser (pyxtal's Wyckoff-set table, from the Bilbao server): the coordinates
    ``x ↦ R x + t`` describe the same crystal (when ``R`` keeps the lattice metric: an axis
    permutation only for a lattice with those axes equal), an orbit on position ``L`` then on
    ``letter_map[L]`` (the table's rows read new → old; this map is turned to old → new).
    The identity comes first.
    """
    from pymatgen.core.operations import SymmOp

    table = group(number).get_alternatives()
    base = table["Transformed WP"][0].split()
    out = []
    for xyz, letters in zip(table["Coset Representative"], table["Transformed WP"], strict=True):
        op = SymmOp.from_xyz_str(xyz)
        out.append((np.asarray(op.rotation_matrix, dtype=np.float64), np.asarray(op.translation_vector, dtype=np.float64),
                    dict(zip(letters.split(), base, strict=True))))
    return tuple(out)


def metric_keeping_cosets(number: int, lattice: np.ndarray, rtol: float = 1e-3) -> tuple[int, ...]:
    """Indices into :func:`alternatives` whose rotation keeps the metric of ``lattice`` (3, 3),
    rows in Å (within ``rtol`` of its largest entry): the re-descriptions valid for that cell."""
    metric = lattice @ lattice.T
    scale = float(np.abs(metric).max())
    keep = []
    for index, (rotation, _, _) in enumerate(alternatives(number)):
        moved = np.linalg.inv(rotation.T) @ lattice
        if np.abs(moved @ moved.T - metric).max() <= rtol * scale:
            keep.append(index)
    return tuple(keep)


def centring_points(number: int) -> int:
    """Lattice points per conventional cell (P 1, A/B/C/I 2, R in hexagonal axes 3, F 4)."""
    return {"P": 1, "A": 2, "B": 2, "C": 2, "I": 2, "R": 3, "F": 4}[group(number).symbol[0]]


def identify_orbit(number: int, positions: np.ndarray, *, tol: float = 1e-3) -> tuple[str, np.ndarray] | None:
    """The Wyckoff letter and representative of the orbit whose sites are ``positions`` (m, 3).

    ``positions`` are the fractional coordinates (conventional cell, standard setting) of every
    site of one orbit. Tries the positions of multiplicity ``m``, most special first; a letter
    fits when some image of the first site under the group lies on its coordinate triplet and
    expanding that image reproduces every site within ``tol`` (fractional, per axis). Returns
    ``(letter, representative (3,) in [0, 1))`` or ``None`` when no position fits.
    """
    positions = np.asarray(positions, dtype=np.float64).reshape(-1, 3)
    general = group(number)[0]
    g_rot, g_trans = _ops_arrays(general)
    images = np.einsum("mij,j->mi", g_rot, positions[0]) + g_trans  # (order, 3)
    for wp in reversed(list(group(number))):
        if wp.multiplicity != len(positions):
            continue
        rotation, translation = _cached_ops(number, wp.letter)
        projected = images @ rotation[0].T + translation[0]
        on_triplet = periodic_distance(projected, images) < tol
        for candidate in projected[on_triplet]:
            orbit = expand(number, wp.letter, candidate)
            distances = periodic_distance(orbit[:, None, :], positions[None, :, :])
            if (distances.min(axis=0) < tol).all() and (distances.min(axis=1) < tol).all():
                return wp.letter, np.mod(candidate, 1.0)
    return None
