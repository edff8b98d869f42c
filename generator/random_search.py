"""Random symmetric structure search (AIRSS-style): random crystals of a composition in random
space groups, with a sensible volume and minimum distances, no training.

Each sample draws a composition (the condition's, or a random charge-balanced one of its
chemical system within the atom limit), a space group at random among those whose Wyckoff
multiplicities can host the cell's counts, and then random Wyckoff positions and lattice
parameters from pyxtal (Fredericks et al., Comput. Phys. Commun. 261, 107810, 2021): the cell
volume is ``volume_factor`` times the sum of the atoms' volumes and no two atoms sit closer than
pyxtal's tolerance for their pair (a fraction of the sum of covalent radii). Every output passes
:func:`~crystaloop.data.crystal.check_plausible` and outputs are unique by canonical hash.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterable, Sequence
from functools import lru_cache
from typing import Literal

import numpy as np
from pydantic import Field, field_validator

from crystaloop import __version__
from crystaloop.data.crystal import Crystal, atomic_number, check_plausible
from crystaloop.data.errors import CrystaloopError, InvalidStructureError
from crystaloop.data.records import Candidate, Condition, Provenance
from crystaloop.generator.base import ElementSymbols, GeneratorSettings
from crystaloop.generator.chemistry import balanced_compositions

__all__ = ["RandomSearchGenerator", "RandomSearchChoice", "compatible_space_groups"]

logger = logging.getLogger(__name__)


@lru_cache(maxsize=230)
def _group(number: int):  # noqa: ANN202 - a pyxtal Group
    from pyxtal.symmetry import Group

    return Group(number)


@lru_cache(maxsize=1)
def _tolerances():  # noqa: ANN202 - pyxtal's Tol_matrix; building one costs ~20 ms, so it is shared
    from pyxtal.tolerance import Tol_matrix

    return Tol_matrix(prototype="atomic")


@lru_cache(maxsize=65536)
def _compatible(counts: tuple[int, ...], number: int) -> bool:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return bool(_group(number).check_compatible(list(counts))[0])


def compatible_space_groups(counts: tuple[int, ...], candidates: Sequence[int] = tuple(range(1, 231))) -> tuple[int, ...]:
    """Space groups (numbers, among ``candidates``) whose Wyckoff multiplicities can hold a
    conventional cell with these per-element ``counts``."""
    return tuple(number for number in candidates if _compatible(tuple(counts), number))


def _draw_space_group(counts: tuple[int, ...], candidates: tuple[int, ...], rng: np.random.Generator) -> int | None:
    """A space group drawn uniformly among the compatible ``candidates`` (rejection sampling,
    so the full compatibility list is only built when compatible groups are rare)."""
    for _ in range(64):
        number = int(candidates[int(rng.integers(len(candidates)))])
        if _compatible(counts, number):
            return number
    groups = compatible_space_groups(counts, candidates)
    return int(groups[int(rng.integers(len(groups)))]) if groups else None


def _separated(crystal: Crystal, factor: float) -> bool:
    """Every pair (periodic images included) at least ``factor`` × the sum of covalent radii apart."""
    from ase.data import covalent_radii

    from crystaloop.data.graphs import minimum_image_distances

    distances = minimum_image_distances(crystal)
    radii = covalent_radii[crystal.numbers]
    return bool(np.all(distances >= factor * (radii[:, None] + radii[None, :])))  # diagonal: own images


class RandomSearchGenerator:
    """Random crystals in random compatible space groups (see the module docstring).

    Args:
        max_atoms: most sites per cell (de novo compositions and their formula-unit multiples).
        exclude: elements never used.
        space_groups: space-group numbers to draw from (default all 230).
        volume_factor: cell volume over the sum of atomic volumes (pyxtal's ``factor``).
        min_distance_factor: every pair of atoms at least this fraction of the sum of their
            covalent radii apart (periodic images included).
        max_attempts: tries per sample (a space group or placement can fail) before giving up on it.
        charge_balance: de novo compositions must be charge-balanced (common oxidation states).
        name: component name written into provenance.
    """

    def __init__(self, *, max_atoms: int = 20, exclude: Iterable[str] = (), space_groups: Sequence[int] | None = None,
                 volume_factor: float = 1.0, min_distance_factor: float = 0.6, max_attempts: int = 10,
                 charge_balance: bool = True, name: str = "random_search") -> None:
        groups = tuple(sorted(set(space_groups))) if space_groups is not None else tuple(range(1, 231))
        bad = [g for g in groups if not 1 <= g <= 230]
        if bad or not groups:
            raise CrystaloopError(f"space groups must be numbers 1..230, got {list(space_groups or [])}")
        if max_atoms < 1 or volume_factor <= 0 or max_attempts < 1:
            raise CrystaloopError(f"need max_atoms ≥ 1, volume_factor > 0, max_attempts ≥ 1; got {max_atoms}, {volume_factor}, {max_attempts}")
        for symbol in exclude:
            atomic_number(symbol)
        self.max_atoms, self.exclude, self.space_groups = max_atoms, frozenset(exclude), groups
        self.min_distance_factor = min_distance_factor
        self.volume_factor, self.max_attempts, self.charge_balance, self.name = volume_factor, max_attempts, charge_balance, name
        self.last_shortfall = 0
        self.last_dropped = 0  # the CLI's count of collapsed samples; these generators drop none

    def compositions(self, condition: Condition | None) -> list[dict[str, int]]:
        """The cell compositions a sample may take for ``condition`` (formula units for de novo)."""
        if condition is None or (condition.composition is None and condition.chemical_system is None):
            raise CrystaloopError("random_search needs a condition with a composition or a chemical system")
        if condition.composition is not None:
            banned = sorted(set(condition.composition) & self.exclude)
            if banned:
                raise CrystaloopError(f"composition {condition.composition} uses excluded element(s) {banned}")
            return [dict(condition.composition)]
        system = sorted(set(condition.chemical_system or ()) - self.exclude)
        units = balanced_compositions(system, self.max_atoms, num_atoms=condition.num_atoms) if system else []
        if not self.charge_balance and system:
            units = units or [dict.fromkeys(system, 1)]
        if not units:
            raise CrystaloopError(
                f"chemical system {'-'.join(condition.chemical_system or ())} has no charge-balanced composition with at most "
                f"{condition.num_atoms or self.max_atoms} atoms{' excluding ' + ', '.join(sorted(self.exclude)) if self.exclude else ''}"
            )
        return units

    def _one(self, composition: dict[str, int], rng: np.random.Generator) -> tuple[Crystal, int] | None:
        from pyxtal import pyxtal

        species = list(composition)
        counts = tuple(composition[s] for s in species)
        for _ in range(self.max_attempts):
            number = _draw_space_group(counts, self.space_groups, rng)
            if number is None:
                return None
            crystal = pyxtal()
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    crystal.from_random(3, number, species, list(counts), factor=self.volume_factor, tm=_tolerances(),
                                        random_state=int(rng.integers(2**31 - 1)))
                if not crystal.valid:
                    continue
                out = Crystal.from_pymatgen(crystal.to_pymatgen())
                check_plausible(out)
                if not _separated(out, self.min_distance_factor):
                    continue
            except (InvalidStructureError, RuntimeError, ValueError, IndexError) as exc:
                logger.debug("space group %d failed for %s: %s", number, composition, exc)
                continue
            except Exception as exc:  # pyxtal raises its own error types (Comp_CompatibilityError, ...)
                logger.debug("pyxtal failed in space group %d for %s: %s", number, composition, exc)
                continue
            return out, number
        return None

    def sample(self, n: int, condition: Condition | None = None, *, seed: int) -> list[Candidate]:
        """``n`` random crystals (fewer when tries run out; ``last_shortfall`` says how many).

        Raises:
            CrystaloopError: no composition fits the condition, or no space group hosts it.
        """
        if n < 1:
            raise CrystaloopError(f"n must be ≥ 1, got {n}")
        units = self.compositions(condition)
        rng = np.random.default_rng(seed)
        seen: set[str] = set()
        out: list[Candidate] = []
        for _ in range(n):
            unit = units[int(rng.integers(len(units)))]
            if condition is not None and condition.composition is None and condition.num_atoms is None:
                z = int(rng.integers(1, max(1, self.max_atoms // sum(unit.values())) + 1))
                unit = {el: c * z for el, c in unit.items()}
            made = self._one(unit, rng)
            if made is None:
                continue
            crystal, number = made
            key = crystal.canonical_hash()
            if key in seen:
                continue
            seen.add(key)
            provenance = Provenance(component=self.name, version=__version__, seed=seed, source=f"random_search: space group {number}")
            out.append(Candidate(crystal=crystal, provenance=provenance, condition=condition))
        if not out:
            composition = condition.composition if condition is not None else None
            raise CrystaloopError(f"random_search made no valid structure for {composition or units[:3]} in "
                                  f"{n * self.max_attempts} tries (space groups {self.space_groups[0]}..{self.space_groups[-1]})")
        self.last_shortfall = n - len(out)
        return out


class RandomSearchChoice(GeneratorSettings):
    """A campaign's ``random_search`` generator (``generator: {kind: random_search, max_atoms: 12}``).

    Attributes:
        exclude: elements never used.
        max_atoms: most sites per cell (``None``: the generator's default, 20).
        space_groups: space-group numbers (1..230) to draw from (``None``: all).
        volume_factor: cell volume over the sum of atomic volumes (``None``: 1.0).
    """

    kind: Literal["random_search"] = "random_search"
    exclude: ElementSymbols = Field((), description="elements never used")
    max_atoms: int | None = Field(None, gt=0, description="most sites per cell")
    space_groups: tuple[int, ...] | None = Field(None, description="space-group numbers to draw from")
    volume_factor: float | None = Field(None, gt=0, description="volume over the sum of atomic volumes")

    @field_validator("space_groups")
    @classmethod
    def _space_groups(cls, value: tuple[int, ...] | None) -> tuple[int, ...] | None:
        if value is not None and (not value or not all(1 <= g <= 230 for g in value)):
            raise ValueError(f"space_groups must be numbers 1..230, got {list(value)}")
        return value

    def build(self) -> RandomSearchGenerator:
        settings = {k: v for k, v in {"max_atoms": self.max_atoms, "space_groups": self.space_groups,
                                      "volume_factor": self.volume_factor}.items() if v is not None}
        return RandomSearchGenerator(exclude=self.exclude, **settings)  # type: ignore[arg-type]
