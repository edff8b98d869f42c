"""`Crystal`: the one structure record every crystaloop component speaks.

A crystal is a lattice (3×3, rows are the lattice vectors, Å), fractional coordinates
(N×3, wrapped to [0, 1)) and atomic numbers (N). It converts losslessly to and from
``pymatgen.core.Structure`` and ``ase.Atoms`` and has a canonical content hash
(:mod:`crystaloop.data.canonical`) that is the same for the same crystal written with permuted
sites, a translated origin or another lattice basis.

Construction checks what every consumer relies on (shapes, finite numbers, known elements, a
non-degenerate cell). Physical plausibility (overlapping atoms, absurd cell sizes) is a separate
check, :func:`check_plausible` (defined with every validity threshold in
:mod:`crystaloop.data.validity`), because generated candidates may legitimately be implausible and
are then rejected by a guard with a stored reason rather than refused at construction.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any

import numpy as np
from ase.data import atomic_masses, chemical_symbols

from crystaloop.data.errors import InvalidStructureError
from crystaloop.data.validity import PlausibilityLimits, check_plausible  # re-exported: the thresholds live there

if TYPE_CHECKING:
    import ase
    from pymatgen.core import Structure

__all__ = [
    "Crystal",
    "PlausibilityLimits",
    "check_plausible",
    "element_symbol",
    "atomic_number",
    "wrap_fractional",
    "MAX_ATOMIC_NUMBER",
]

MAX_ATOMIC_NUMBER = 118
DEFAULT_HASH_DECIMALS = 3
_AVOGADRO = 6.02214076e23


def element_symbol(z: int) -> str:
    """Chemical symbol of atomic number ``z`` (1..118)."""
    if not 1 <= int(z) <= MAX_ATOMIC_NUMBER:
        raise InvalidStructureError(f"atomic number {z} is not an element; allowed 1..{MAX_ATOMIC_NUMBER}")
    return chemical_symbols[int(z)]


def atomic_number(symbol: str) -> int:
    """Atomic number of an element symbol such as ``"Sr"`` (case as in the periodic table)."""
    try:
        z = chemical_symbols.index(symbol)
    except ValueError:
        z = 0
    if not 1 <= z <= MAX_ATOMIC_NUMBER:
        raise InvalidStructureError(f"unknown element {symbol!r}; allowed: element symbols H..Og")
    return z


def wrap_fractional(frac: np.ndarray) -> np.ndarray:
    """Wrap fractional coordinates into [0, 1), mapping values that round to 1.0 onto 0.0."""
    wrapped = frac - np.floor(frac)
    wrapped[wrapped >= 1.0] = 0.0
    return wrapped


@dataclass(frozen=True, eq=False)
class Crystal:
    """A periodic crystal: lattice rows (Å), fractional coordinates in [0, 1), atomic numbers.

    Attributes:
        lattice: (3, 3) float64, row ``i`` is lattice vector ``a_i`` in Å.
        frac_coords: (N, 3) float64 fractional coordinates, wrapped into [0, 1) on construction.
        numbers: (N,) int64 atomic numbers, 1..118.

    Arrays are copied and made read-only, so a Crystal can be shared and hashed safely.
    Equality is by canonical hash (:meth:`canonical_hash`): two descriptions of the same
    crystal compare equal.
    """

    lattice: np.ndarray
    frac_coords: np.ndarray
    numbers: np.ndarray
    _hash_cache: dict[str, str] = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        lattice = _as_float_array(self.lattice, "lattice")
        frac = _as_float_array(self.frac_coords, "frac_coords")
        numbers = np.asarray(self.numbers)
        if lattice.shape != (3, 3):
            raise InvalidStructureError(f"lattice must have shape (3, 3), got {lattice.shape}")
        if frac.ndim != 2 or frac.shape[1] != 3:
            raise InvalidStructureError(f"frac_coords must have shape (N, 3), got {frac.shape}")
        if numbers.ndim != 1 or numbers.shape[0] != frac.shape[0]:
            raise InvalidStructureError(
                f"numbers must have shape ({frac.shape[0]},) to match frac_coords, got {numbers.shape}"
            )
        if frac.shape[0] == 0:
            raise InvalidStructureError("a crystal needs at least one site, got 0")
        if numbers.dtype.kind not in "iu":
            if numbers.dtype.kind == "f" and np.all(np.isfinite(numbers)) and np.all(numbers == np.round(numbers)):
                numbers = numbers.astype(np.int64)
            else:
                raise InvalidStructureError(f"numbers must be integers, got dtype {numbers.dtype}")
        numbers = numbers.astype(np.int64)
        bad = numbers[(numbers < 1) | (numbers > MAX_ATOMIC_NUMBER)]
        if bad.size:
            raise InvalidStructureError(
                f"atomic number {int(bad[0])} is not an element; allowed 1..{MAX_ATOMIC_NUMBER}"
            )
        volume = float(np.linalg.det(lattice))
        if not abs(volume) > 1e-6:
            raise InvalidStructureError(f"lattice is degenerate (volume {volume:.3g} Å³); rows must be independent")
        for name, value in (("lattice", lattice), ("frac_coords", wrap_fractional(frac)), ("numbers", numbers)):
            value = np.ascontiguousarray(value)
            value.setflags(write=False)
            object.__setattr__(self, name, value)

    # ------------------------------------------------------------------ constructors
    @classmethod
    def from_cartesian(cls, lattice: Any, cart_coords: Any, numbers: Any) -> Crystal:
        """Build from Cartesian positions (N×3, Å) instead of fractional ones."""
        lattice = _as_float_array(lattice, "lattice")
        cart = _as_float_array(cart_coords, "cart_coords")
        if lattice.shape != (3, 3):
            raise InvalidStructureError(f"lattice must have shape (3, 3), got {lattice.shape}")
        frac = np.linalg.solve(lattice.T, cart.T).T
        return cls(lattice, frac, numbers)

    @classmethod
    def from_symbols(cls, lattice: Any, frac_coords: Any, symbols: list[str]) -> Crystal:
        """Build from element symbols (``["Sr", "Ti", "O", "O", "O"]``)."""
        return cls(lattice, frac_coords, np.array([atomic_number(s) for s in symbols], dtype=np.int64))

    @classmethod
    def from_pymatgen(cls, structure: Structure) -> Crystal:
        """Convert an ordered pymatgen ``Structure``; disordered (partial-occupancy) sites are refused."""
        if not structure.is_ordered:
            raise InvalidStructureError(
                "partial occupancy or mixed species on a site is not supported; "
                "every site must hold exactly one element with occupancy 1"
            )
        numbers = []
        for site in structure:
            specie = site.specie
            z = getattr(specie, "Z", None)
            if z is None or not 1 <= int(z) <= MAX_ATOMIC_NUMBER:
                raise InvalidStructureError(f"unknown element {str(specie)!r}; allowed: element symbols H..Og")
            numbers.append(int(z))
        return cls(structure.lattice.matrix, structure.frac_coords, np.array(numbers, dtype=np.int64))

    @classmethod
    def from_ase(cls, atoms: ase.Atoms) -> Crystal:
        """Convert periodic ``ase.Atoms`` (pbc must be True along all three axes)."""
        if not all(atoms.pbc):
            raise InvalidStructureError(f"ase.Atoms must be periodic along all axes, got pbc={list(atoms.pbc)}")
        cell = np.asarray(atoms.cell.array, dtype=np.float64)
        return cls.from_cartesian(cell, atoms.get_positions(), atoms.get_atomic_numbers())

    # ------------------------------------------------------------------ conversions
    def to_pymatgen(self) -> Structure:
        """A pymatgen ``Structure`` with the same lattice, fractional coordinates and species."""
        from pymatgen.core import Lattice, Structure

        return Structure(Lattice(np.array(self.lattice)), list(self.numbers.tolist()), np.array(self.frac_coords))

    def to_ase(self) -> ase.Atoms:
        """Periodic ``ase.Atoms`` with the same cell and scaled positions."""
        import ase

        return ase.Atoms(
            numbers=self.numbers.tolist(),
            cell=np.array(self.lattice),
            scaled_positions=np.array(self.frac_coords),
            pbc=True,
        )

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict (lists of floats and ints); inverse of :meth:`from_dict`."""
        return {
            "lattice": self.lattice.tolist(),
            "frac_coords": self.frac_coords.tolist(),
            "numbers": self.numbers.tolist(),
        }

    @classmethod
    def from_dict(cls, payload: dict[str, Any], *, known_hash: str | None = None) -> Crystal:
        """Inverse of :meth:`to_dict`.

        ``known_hash`` is a canonical hash (default rounding) already computed for this crystal,
        e.g. the id under which a store holds it; it saves recomputing the hash on read-back.
        """
        missing = {"lattice", "frac_coords", "numbers"} - set(payload)
        if missing:
            raise InvalidStructureError(f"crystal dict is missing keys {sorted(missing)}")
        crystal = cls(payload["lattice"], payload["frac_coords"], payload["numbers"])
        if known_hash is not None:
            crystal._hash_cache[str(DEFAULT_HASH_DECIMALS)] = known_hash
        return crystal

    def right_handed(self) -> Crystal:
        """This crystal with a right-handed basis (``det L > 0``): ``self`` when it already is,
        else lattice ``-L`` and fractional coordinates ``-f`` (mod 1), the same atoms at the same
        Cartesian positions. The readers apply it to every structure they import."""
        if np.linalg.det(self.lattice) > 0:
            return self
        return Crystal(-np.array(self.lattice), -np.array(self.frac_coords), np.array(self.numbers))

    # ------------------------------------------------------------------ derived quantities
    @property
    def n_sites(self) -> int:
        return int(self.numbers.shape[0])

    @property
    def cart_coords(self) -> np.ndarray:
        """(N, 3) Cartesian positions in Å."""
        return self.frac_coords @ self.lattice

    @property
    def volume(self) -> float:
        """Cell volume in Å³ (positive whatever the handedness of the basis)."""
        return float(abs(np.linalg.det(self.lattice)))

    @property
    def density(self) -> float:
        """Mass density in g/cm³."""
        mass_amu = float(atomic_masses[self.numbers].sum())
        return mass_amu / _AVOGADRO / (self.volume * 1e-24)

    @property
    def lattice_parameters(self) -> tuple[float, float, float, float, float, float]:
        """(a, b, c) in Å and (alpha, beta, gamma) in degrees."""
        return lattice_parameters(self.lattice)

    @property
    def symbols(self) -> list[str]:
        return [chemical_symbols[z] for z in self.numbers.tolist()]

    @cached_property
    def composition(self) -> dict[str, int]:
        """Element symbol → number of sites, in order of atomic number."""
        counts = Counter(self.numbers.tolist())
        return {chemical_symbols[z]: counts[z] for z in sorted(counts)}

    @property
    def elements(self) -> list[str]:
        """Distinct element symbols, sorted alphabetically (the OPTIMADE convention)."""
        return sorted(self.composition)

    @cached_property
    def reduced_formula(self) -> str:
        """Reduced formula as pymatgen writes it (``"SrTiO3"``)."""
        from pymatgen.core import Composition

        return Composition(self.composition).reduced_formula

    def spacegroup_number(self, symprec: float = 0.1) -> int | None:
        """International space-group number from spglib, or ``None`` if spglib cannot tell."""
        import spglib

        try:
            dataset = spglib.get_symmetry_dataset(
                (np.array(self.lattice), np.array(self.frac_coords), self.numbers.tolist()), symprec=symprec
            )
        except Exception:  # spglib raises its own error types on pathological cells
            return None
        return None if dataset is None else int(dataset.number)

    def canonical_hash(self, *, decimals: int = DEFAULT_HASH_DECIMALS) -> str:
        """Canonical content hash (hex sha256), see :mod:`crystaloop.data.canonical`."""
        key = str(decimals)
        if key not in self._hash_cache:
            from crystaloop.data.canonical import canonical_hash

            self._hash_cache[key] = canonical_hash(self, decimals=decimals)
        return self._hash_cache[key]

    def min_pair_distance(self) -> float:
        """Shortest distance in Å between two sites, periodic images included (inf for one site
        in a cell whose shortest lattice vector is long)."""
        from crystaloop.data.graphs import minimum_image_distances

        distances = minimum_image_distances(self)
        return float(distances.min()) if distances.size else float("inf")

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Crystal):
            return NotImplemented
        return self.canonical_hash() == other.canonical_hash()

    def __hash__(self) -> int:
        return hash(self.canonical_hash())

    def __repr__(self) -> str:
        a, b, c, alpha, beta, gamma = self.lattice_parameters
        return (
            f"Crystal({self.reduced_formula}, n_sites={self.n_sites}, "
            f"abc=({a:.3f}, {b:.3f}, {c:.3f}) Å, angles=({alpha:.1f}, {beta:.1f}, {gamma:.1f})°)"
        )


def lattice_parameters(lattice: np.ndarray) -> tuple[float, float, float, float, float, float]:
    """(a, b, c) in Å and (alpha, beta, gamma) in degrees of a (3, 3) row-vector lattice."""
    lengths = np.linalg.norm(lattice, axis=1)
    cos = lambda i, j: float(np.clip(lattice[i] @ lattice[j] / (lengths[i] * lengths[j]), -1.0, 1.0))  # noqa: E731
    alpha, beta, gamma = (float(np.degrees(np.arccos(cos(i, j)))) for i, j in ((1, 2), (0, 2), (0, 1)))
    return float(lengths[0]), float(lengths[1]), float(lengths[2]), alpha, beta, gamma


def _as_float_array(value: Any, name: str) -> np.ndarray:
    try:
        array = np.array(value, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise InvalidStructureError(f"{name} must be numeric: {exc}") from None
    if not np.all(np.isfinite(array)):
        raise InvalidStructureError(f"{name} contains NaN or infinite values; all entries must be finite")
    return array
