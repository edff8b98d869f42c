"""A crystal as its space group, the lattice parameters its crystal system leaves free and its
Wyckoff orbits (letter, element, representative coordinates): :class:`SymmetricCrystal`.

``from_structure(structure, symprec)`` finds the space group with spglib (Togo et al.) and
standardises the cell into the **conventional** cell of the ITA standard setting pyxtal's tables
use (:mod:`~crystaloop.generator.symmetry.wyckoff`), with symmetrised (idealised) lattice and
positions; every symmetry-equivalent set of sites becomes one :class:`Orbit`. The conventional
cell is the one the Wyckoff tables are written for, so the free coordinates mean the same thing
across crystals of one space group; ``to_crystal()`` gives it back, or the primitive cell
(spglib's centring matrices, the default), which is the cell the development sets store.

What is free: the lattice parameters of the crystal system (:data:`LATTICE_PARAMETERS`: cubic
``a``; tetragonal, trigonal and hexagonal ``a, c`` (hexagonal axes, γ = 120°); orthorhombic ``a,
b, c``; monoclinic ``a, b, c, β`` (unique axis b); triclinic all six), and per orbit the
coordinates its Wyckoff triplet leaves free (``x, 1/4, z`` → x and z). Lengths in Å, angles in
degrees. The symmetry is exact by construction: any parameters give a crystal of that group (or
a supergroup, for special values).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from crystaloop.data.crystal import Crystal, atomic_number, element_symbol
from crystaloop.data.errors import InvalidStructureError
from crystaloop.generator.symmetry.wyckoff import (
    alternatives,
    crystal_system,
    expand,
    group,
    hall_number,
    identify_orbit,
    metric_keeping_cosets,
    periodic_distance,
    wyckoff_position,
)

if TYPE_CHECKING:
    from pymatgen.core import Structure

__all__ = ["Orbit", "SymmetricCrystal", "from_structure", "describe", "describe_training", "LATTICE_PARAMETERS", "DEFAULT_SYMPREC",
           "SYMPREC_LADDER", "Template"]

DEFAULT_SYMPREC = 0.1
"""spglib's distance tolerance (Å) for finding symmetry; the project's default (``Crystal.spacegroup_number``)."""

SYMPREC_LADDER = (0.1, 0.03, 0.01, 1e-3, 1e-5)
"""Tolerances (Å) :func:`describe` tries, loosest first."""

LATTICE_PARAMETERS: dict[str, tuple[str, ...]] = {
    "triclinic": ("a", "b", "c", "alpha", "beta", "gamma"),
    "monoclinic": ("a", "b", "c", "beta"),
    "orthorhombic": ("a", "b", "c"),
    "tetragonal": ("a", "c"),
    "trigonal": ("a", "c"),
    "hexagonal": ("a", "c"),
    "cubic": ("a",),
}
"""The free lattice parameters of each crystal system (Å, degrees), in the order stored."""

Template = tuple[int, tuple[tuple[str, str], ...]]
"""(space group, sorted (Wyckoff letter, element) per orbit): the symmetry skeleton without free parameters."""

# spglib's centring matrices P (columns: primitive vectors in conventional coordinates)
_CENTRING: dict[str, np.ndarray] = {
    "P": np.eye(3),
    "A": np.array([[1, 0, 0], [0, 0.5, -0.5], [0, 0.5, 0.5]]),
    "C": np.array([[0.5, 0.5, 0], [-0.5, 0.5, 0], [0, 0, 1]]),
    "R": np.array([[2 / 3, -1 / 3, -1 / 3], [1 / 3, 1 / 3, -2 / 3], [1 / 3, 1 / 3, 1 / 3]]),
    "I": np.array([[-0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0.5, 0.5, -0.5]]),
    "F": np.array([[0, 0.5, 0.5], [0.5, 0, 0.5], [0.5, 0.5, 0]]),
}


@dataclass(frozen=True, eq=False)
class Orbit:
    """One Wyckoff orbit: ``multiplicity`` sites of ``element`` generated from ``representative``.

    Attributes:
        letter: Wyckoff letter in the space group's standard setting.
        multiplicity: sites of the orbit in the conventional cell.
        element: element symbol.
        representative: (3,) fractional coordinates (conventional cell) on the letter's
            coordinate triplet; only its free components carry information.
    """

    letter: str
    multiplicity: int
    element: str
    representative: np.ndarray

    def free_coordinates(self, space_group: int) -> np.ndarray:
        """(dof,) values of the triplet's free variables (x, y, z in that order, those present)."""
        rotation = np.asarray(wyckoff_position(space_group, self.letter).ops[0].rotation_matrix, dtype=np.float64)
        free = np.flatnonzero(np.abs(rotation).sum(axis=0) > 0)
        translation = np.asarray(wyckoff_position(space_group, self.letter).ops[0].translation_vector, dtype=np.float64)
        if free.size == 0:
            return np.zeros(0)
        solution, *_ = np.linalg.lstsq(rotation[:, free], self.representative - translation, rcond=None)
        return solution


@dataclass(frozen=True, eq=False)
class SymmetricCrystal:
    """A crystal in the symmetric representation (see the module docstring).

    Attributes:
        space_group: international number, 1..230.
        lattice: the free lattice parameters of the crystal system, in
            :data:`LATTICE_PARAMETERS` order (Å, degrees).
        orbits: the Wyckoff orbits, sorted by (letter, element).
    """

    space_group: int
    lattice: tuple[float, ...]
    orbits: tuple[Orbit, ...]

    def __post_init__(self) -> None:
        wanted = len(LATTICE_PARAMETERS[self.crystal_system])
        if len(self.lattice) != wanted:
            raise InvalidStructureError(
                f"a {self.crystal_system} lattice takes {wanted} parameters "
                f"({', '.join(LATTICE_PARAMETERS[self.crystal_system])}), got {len(self.lattice)}")
        if not self.orbits:
            raise InvalidStructureError("a symmetric crystal needs at least one orbit")

    @property
    def crystal_system(self) -> str:
        return crystal_system(self.space_group)

    @property
    def template(self) -> Template:
        """(space group, sorted (letter, element) pairs): what a template prior scores."""
        return self.space_group, tuple(sorted((o.letter, o.element) for o in self.orbits))

    @property
    def lattice_parameters(self) -> tuple[float, float, float, float, float, float]:
        """(a, b, c, α, β, γ) in Å and degrees, the fixed ones filled in by the crystal system."""
        values = dict(zip(LATTICE_PARAMETERS[self.crystal_system], self.lattice, strict=True))
        a = values["a"]
        b = values.get("b", a)
        c = values.get("c", a)
        gamma = 120.0 if self.crystal_system in ("trigonal", "hexagonal") else values.get("gamma", 90.0)
        return a, b, c, values.get("alpha", 90.0), values.get("beta", 90.0), gamma

    @property
    def conventional_lattice(self) -> np.ndarray:
        """(3, 3) conventional lattice, rows a, b, c (Å): a along x, b in the xy plane."""
        return _lattice_from_parameters(*self.lattice_parameters)

    @property
    def n_conventional_sites(self) -> int:
        return sum(o.multiplicity for o in self.orbits)

    def with_parameters(self, lattice: tuple[float, ...], representatives: list[np.ndarray]) -> SymmetricCrystal:
        """The same template with new lattice parameters and orbit representatives (one per orbit)."""
        if len(representatives) != len(self.orbits):
            raise InvalidStructureError(f"{len(representatives)} representatives for {len(self.orbits)} orbits")
        orbits = tuple(Orbit(o.letter, o.multiplicity, o.element, np.asarray(r, dtype=np.float64))
                       for o, r in zip(self.orbits, representatives, strict=True))
        return SymmetricCrystal(self.space_group, tuple(float(x) for x in lattice), orbits)

    def to_crystal(self, *, primitive: bool = True) -> Crystal:
        """The crystal: the primitive cell (default) or the conventional one (Å, fractional coordinates)."""
        frac, numbers = [], []
        for orbit in self.orbits:
            sites = expand(self.space_group, orbit.letter, orbit.representative)
            frac.append(sites)
            numbers += [atomic_number(orbit.element)] * len(sites)
        coords, z = np.concatenate(frac), np.array(numbers)
        lattice = self.conventional_lattice
        if primitive:
            lattice, coords, z = _to_primitive(lattice, coords, z, group(self.space_group).symbol[0])
        return Crystal(lattice, coords, z)

    def to_structure(self, *, primitive: bool = True) -> Structure:
        """:meth:`to_crystal` as a pymatgen ``Structure``."""
        return self.to_crystal(primitive=primitive).to_pymatgen()

    @classmethod
    def from_crystal(cls, crystal: Crystal, *, symprec: float = DEFAULT_SYMPREC, tol: float = 1e-3) -> SymmetricCrystal:
        """The symmetric representation of ``crystal`` (space group found within ``symprec`` Å).

        Raises:
            InvalidStructureError: spglib finds no symmetry dataset, or an orbit of the
                standardised cell fits no Wyckoff position of its group (the message names both).
        """
        import spglib

        # spglib's result at a loose tolerance depends on the site order (its reference atom):
        # a fixed order (element, then wrapped coordinates) makes the description order-free
        frac = np.mod(np.asarray(crystal.frac_coords, dtype=np.float64), 1.0)
        order = np.lexsort((np.round(frac[:, 2], 6), np.round(frac[:, 1], 6), np.round(frac[:, 0], 6), crystal.numbers))
        cell: Any = (np.asarray(crystal.lattice), frac[order], np.asarray(crystal.numbers)[order])  # spglib's stubs want lists
        dataset = spglib.get_symmetry_dataset(cell, symprec=symprec)
        if dataset is None:
            raise InvalidStructureError(f"spglib found no symmetry for {crystal!r} at symprec={symprec}")
        number = int(dataset.number)
        if int(dataset.hall_number) != hall_number(number):
            dataset = spglib.get_symmetry_dataset(cell, symprec=symprec, hall_number=hall_number(number))
            if dataset is None or int(dataset.number) != number:
                raise InvalidStructureError(f"spglib could not standardise {crystal!r} in space group {number}'s table setting")
        positions = np.mod(np.asarray(dataset.std_positions, dtype=np.float64), 1.0)
        types = np.asarray(dataset.std_types)
        lattice = _free_parameters(np.asarray(dataset.std_lattice, dtype=np.float64), crystal_system(number))
        std_lattice = np.asarray(dataset.std_lattice, dtype=np.float64)
        orbits = []
        for members in _orbits(number, positions, types, tol):
            found = identify_orbit(number, positions[members], tol=tol)
            if found is None:
                raise InvalidStructureError(
                    f"an orbit of {len(members)} {element_symbol(int(types[members[0]]))} sites of {crystal!r} "
                    f"fits no Wyckoff position of space group {number} (symprec={symprec})")
            orbits.append((found[0], members))
        rotation, translation = _canonical_frame(number, std_lattice, [(letter, int(types[m[0]])) for letter, m in orbits])
        described = []
        for _, members in orbits:
            moved = positions[members] @ rotation.T + translation
            found = identify_orbit(number, moved, tol=tol)
            if found is None:  # the normaliser maps orbits onto orbits; this is a bug if reached
                raise InvalidStructureError(f"space group {number}: an orbit left its Wyckoff set under a normaliser coset")
            described.append(Orbit(found[0], len(members), element_symbol(int(types[members[0]])), found[1]))
        described.sort(key=lambda o: (o.letter, o.element, tuple(np.round(o.representative, 6))))
        return cls(number, lattice, tuple(described))


def from_structure(structure: Crystal | Structure, symprec: float = DEFAULT_SYMPREC) -> SymmetricCrystal:
    """:meth:`SymmetricCrystal.from_crystal` for a :class:`Crystal` or a pymatgen ``Structure``."""
    crystal = structure if isinstance(structure, Crystal) else Crystal.from_pymatgen(structure)
    return SymmetricCrystal.from_crystal(crystal, symprec=symprec)


def describe(crystal: Crystal, symprecs: tuple[float, ...] = SYMPREC_LADDER) -> tuple[SymmetricCrystal, float]:
    """The most symmetric description of ``crystal`` that keeps its atom count, and its symprec (Å).

    A loose tolerance can idealise a distorted cell into a smaller one (carbon_24: a 6-atom
    AIRSS cell within 0.1 Å of a 2-atom one); the first tolerance of ``symprecs`` whose
    primitive reconstruction has ``crystal.n_sites`` sites wins. A cell that is a supercell even
    at the tightest tolerance gets the tightest description (its primitive cell is smaller).

    Raises:
        InvalidStructureError: no tolerance gives a description.
    """
    found: tuple[SymmetricCrystal, float] | None = None
    errors = []
    for symprec in symprecs:
        try:
            symmetric = SymmetricCrystal.from_crystal(crystal, symprec=symprec)
        except InvalidStructureError as exc:
            errors.append(str(exc))
            continue
        found = symmetric, symprec
        if symmetric.to_crystal().n_sites == crystal.n_sites:
            return found
    if found is None:
        raise InvalidStructureError(f"no symmetric description of {crystal!r} at symprec {symprecs}: {'; '.join(errors)}")
    return found


def _canonical_frame(number: int, lattice: np.ndarray, orbits: list[tuple[str, int]]) -> tuple[np.ndarray, np.ndarray]:
    """The normaliser coset ``(R, t)`` giving the smallest sorted (letter, atomic number) list.

    Equivalent origins (and, for a lattice with equal axes, axis permutations) describe one
    crystal with different Wyckoff letters (a perovskite's A on 1a or on 1b); taking the
    smallest description makes the template independent of where the input put its origin.
    Only cosets that keep the lattice metric (relative 1e-3) are candidates.
    """
    table = alternatives(number)
    best: tuple[tuple[tuple[str, int], ...], np.ndarray, np.ndarray] | None = None
    for index in metric_keeping_cosets(number, lattice):
        rotation, translation, letters = table[index]
        key = tuple(sorted((letters[letter], z) for letter, z in orbits))
        if best is None or key < best[0]:
            best = (key, rotation, translation)
    if best is None:  # the identity always keeps the metric
        return np.eye(3), np.zeros(3)
    return best[1], best[2]


def _orbits(number: int, positions: np.ndarray, types: np.ndarray, tol: float) -> list[np.ndarray]:
    """Indices of each orbit of the standardised cell under the group's general position."""
    general = group(number)[0]
    rotations = np.array([op.rotation_matrix for op in general.ops], dtype=np.float64)
    translations = np.array([op.translation_vector for op in general.ops], dtype=np.float64)
    unassigned = np.ones(len(positions), dtype=bool)
    orbits = []
    for i in range(len(positions)):
        if not unassigned[i]:
            continue
        images = np.einsum("mij,j->mi", rotations, positions[i]) + translations
        close = periodic_distance(positions[:, None, :], images[None, :, :]).min(axis=1) < tol
        members = np.flatnonzero(close & (types == types[i]) & unassigned)
        unassigned[members] = False
        orbits.append(members)
    return orbits


def _free_parameters(lattice: np.ndarray, system: str) -> tuple[float, ...]:
    lengths = np.linalg.norm(lattice, axis=1)
    a, b, c = lengths
    angle = lambda u, v: math.degrees(math.acos(float(np.clip(u @ v / (np.linalg.norm(u) * np.linalg.norm(v)), -1, 1))))  # noqa: E731
    alpha, beta, gamma = angle(lattice[1], lattice[2]), angle(lattice[0], lattice[2]), angle(lattice[0], lattice[1])
    values = {"a": a, "b": b, "c": c, "alpha": alpha, "beta": beta, "gamma": gamma}
    if system == "cubic":
        values["a"] = float(lengths.mean())
    elif system in ("tetragonal", "trigonal", "hexagonal"):
        values["a"] = (a + b) / 2
    return tuple(float(values[name]) for name in LATTICE_PARAMETERS[system])


def _lattice_from_parameters(a: float, b: float, c: float, alpha: float, beta: float, gamma: float) -> np.ndarray:
    """(3, 3) rows a, b, c (Å) from lengths and angles (degrees): a along x, b in the xy plane."""
    ca, cb, cg = (math.cos(math.radians(x)) for x in (alpha, beta, gamma))
    sg = math.sin(math.radians(gamma))
    cx = cb
    cy = (ca - cb * cg) / sg
    cz_squared = 1.0 - cx * cx - cy * cy
    if cz_squared <= 0:
        raise InvalidStructureError(f"lattice angles α={alpha}, β={beta}, γ={gamma} (degrees) make no cell")
    return np.array([[a, 0.0, 0.0], [b * cg, b * sg, 0.0], [c * cx, c * cy, c * math.sqrt(cz_squared)]])


def _to_primitive(lattice: np.ndarray, frac: np.ndarray, numbers: np.ndarray, centring: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The primitive cell of a centred conventional cell (duplicate sites dropped)."""
    matrix = _CENTRING[centring]
    if centring == "P":
        return lattice, frac, numbers
    primitive_lattice = matrix.T @ lattice
    coords = np.mod(frac @ np.linalg.inv(matrix).T, 1.0)
    keep: list[int] = []
    for i in range(len(coords)):
        if not keep or not (periodic_distance(coords[keep], coords[i]) < 1e-4).any():
            keep.append(i)
    return primitive_lattice, coords[keep], numbers[keep]


def describe_training(crystals: Sequence[Crystal], *, user: str) -> list[SymmetricCrystal]:
    """:func:`describe` of every crystal a model learns from; one spglib cannot describe at any
    tolerance is skipped with a warning naming ``user`` (``"template prior"``)."""
    described = []
    for crystal in crystals:
        try:
            described.append(describe(crystal)[0])
        except InvalidStructureError as exc:
            logging.getLogger(__name__).warning("%s: skipping a training crystal: %s", user, exc)
    return described
