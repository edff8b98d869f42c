"""Competing phases of a chemical system, built offline from structure prototypes.

For every binary and ternary subsystem of a system (Ca-Co-O-F → Ca-O, Ca-F, Co-O, Co-F, Ca-Co,
Ca-Co-O, Ca-Co-F), :func:`phase_structures` fills the prototypes of :mod:`crystaloop.data.prototypes` with
charge-balanced compositions:

* **cation–anion binaries**: an element of :data:`ANION_STATES` that is more electronegative
  than its partner is the anion (its one anionic state); the partner takes each of its common
  and ICSD oxidation states (pymatgen), e.g. Co²⁺/Co³⁺/Co⁴⁺ → CoO, Co₂O₃, CoO₂ (and Co₃O₄ as a
  spinel), each in every prototype of that stoichiometry;
* **metal–metal binaries**: B2 (AB) and L1₂ (A₃B, AB₃);
* **two cations and one anion**: perovskite and ilmenite ABX₃, spinel AB₂X₄, α-NaFeO₂ and
  delafossite ABX₂, K₂NiF₄-type A₂BX₄, for charge-balanced pairs of states, the larger cation
  on the A site (both ways for the spinel). Two-anion ternaries (oxynitrides, oxyfluorides) are
  not built: their hull is the binaries'.

:class:`CompetingPhases` then screens, relaxes and records them: single points of every
structure (cheap), a full relaxation of the lowest ``relax_per_composition`` per composition
(with the oracle's own settings, so the relaxations land in its cache and in every later hull),
and a row per relaxed phase in the :class:`~.phase_registry.PhaseRegistry` (kind
``"prototype"``, label the prototype's name). A subsystem is built once per oracle setting
and shared by every system that contains it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from itertools import combinations

from pydantic import BaseModel, ConfigDict, Field

from crystaloop.data.crystal import Crystal
from crystaloop.data.prototypes import Prototype, aflow_binaries, ion_radius, prototypes_for, scaled_to_radii
from crystaloop.surrogates.oracles.base import ASEOracle
from crystaloop.surrogates.oracles.cache import chemical_system
from crystaloop.surrogates.phase_registry import PhaseRegistry, RegisteredPhase

__all__ = [
    "ANION_STATES",
    "PhaseConfig",
    "PhaseStructure",
    "BuildReport",
    "CompetingPhases",
    "phase_structures",
    "cation_states",
]

logger = logging.getLogger(__name__)

ANION_STATES: dict[str, int] = {
    "H": -1, "C": -4, "N": -3, "O": -2, "F": -1, "P": -3, "S": -2, "Cl": -1,
    "As": -3, "Se": -2, "Br": -1, "Sb": -3, "Te": -2, "I": -1,
}  # fmt: skip
"""Elements that can be the anion of a binary or ternary phase, with their anionic state."""
NEVER_CATIONS = frozenset({"H", "N", "O", "F", "Cl", "Br", "S", "Se"})
"""Elements never placed on a cation site (their positive-state compounds are molecular)."""


class PhaseConfig(BaseModel):
    """How competing phases are built for a hull (per oracle setting, once per subsystem).

    Attributes:
        enabled: build prototype phases at all (off → the hull holds elements, known phases
            and campaign structures only).
        max_structures_per_subsystem: most prototype structures screened per binary or ternary
            subsystem (the per-system budget; the cheapest, most common states come first).
        relax_per_composition: how many of the lowest single points of each composition get
            a full relaxation.
        ternaries: build the two-cation ternaries too (binaries only when off).
        workers: relaxations run in this many threads (each its own calculator).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = True
    max_structures_per_subsystem: int = Field(40, ge=1)
    relax_per_composition: int = Field(1, ge=1)
    ternaries: bool = True
    workers: int = Field(1, ge=1)


@dataclass(frozen=True)
class PhaseStructure:
    """One prototype structure of a subsystem: its prototype's name and the crystal."""

    label: str
    formula: str
    crystal: Crystal


@dataclass(frozen=True)
class BuildReport:
    """What :meth:`CompetingPhases.ensure` did: subsystems built now and before, structures
    screened and relaxed now, and the seconds it took."""

    built: tuple[str, ...]
    already_built: tuple[str, ...]
    screened: int
    relaxed: int
    seconds: float


@lru_cache(maxsize=256)
def cation_states(element: str) -> tuple[int, ...]:
    """Positive oxidation states of ``element``: pymatgen's common ones first, then the other
    ICSD-observed ones (ascending within each group)."""
    from pymatgen.core import Element

    el = Element(element)
    common = sorted(q for q in el.common_oxidation_states if q > 0)
    icsd = sorted(q for q in el.icsd_oxidation_states if q > 0 and q not in common)
    return tuple(common + icsd)


def _electronegativity(element: str) -> float:
    from pymatgen.core import Element

    x = Element(element).X
    return float(x) if x == x else 0.0  # noble gases have NaN


def _anion_of(a: str, b: str) -> str | None:
    """The anion of the pair, or ``None`` for two metals (or a pair with no cation)."""
    more, less = sorted((a, b), key=_electronegativity, reverse=True)
    if more in ANION_STATES and less not in NEVER_CATIONS:
        return more
    return None


def _gcd_ratio(n_cation: int, n_anion: int) -> tuple[int, int]:
    from math import gcd

    g = gcd(n_cation, n_anion)
    return n_cation // g, n_anion // g


def _fill(prototype: Prototype, species: dict[str, str], states: dict[str, int | None]) -> PhaseStructure | None:
    radii = {role: ion_radius(species[role], states[role]) for role in prototype.roles}
    try:
        crystal = prototype.build(species, radii)
    except ValueError as exc:  # a prototype that does not expand (a library bug): skip, say so
        logger.warning("prototype %s with %s not built: %s", prototype.name, species, exc)
        return None
    return PhaseStructure(prototype.name, crystal.reduced_formula, crystal)


def _binary_structures(a: str, b: str) -> list[PhaseStructure]:
    anion = _anion_of(a, b)
    out: list[PhaseStructure] = []
    if anion is None:
        if a in NEVER_CATIONS or b in NEVER_CATIONS or a in ANION_STATES or b in ANION_STATES:
            return out
        for first, second in ((a, b), (b, a)):
            for stoichiometry in ({"A": 1, "B": 1}, {"A": 3, "B": 1}):
                if first == b and stoichiometry == {"A": 1, "B": 1}:
                    continue  # AB once
                for prototype in prototypes_for(stoichiometry):
                    built = _fill(prototype, {"A": first, "B": second}, {"A": None, "B": None})
                    if built:
                        out.append(built)
        return out
    cation = b if anion == a else a
    q_anion = -ANION_STATES[anion]
    seen: set[tuple[int, int]] = set()
    for q in cation_states(cation):
        ratio = _gcd_ratio(q_anion, q)
        if ratio in seen:
            continue
        seen.add(ratio)
        library = prototypes_for({"A": ratio[0], "X": ratio[1]})
        for prototype in library:
            built = _fill(prototype, {"A": cation, "X": anion}, {"A": q, "X": -q_anion})
            if built:
                out.append(built)
        if not library:
            out += _aflow_fill(ratio, cation, q, anion, -q_anion)
    if 2 in cation_states(cation) and 3 in cation_states(cation) and q_anion == 2:
        for prototype in prototypes_for({"A": 3, "X": 4}):  # mixed-valence spinel, Co3O4
            built = _fill(prototype, {"A": cation, "X": anion}, {"A": 3, "X": -q_anion})
            if built:
                out.append(built)
    return out


def _aflow_fill(ratio: tuple[int, int], cation: str, q: int, anion: str, q_anion: int) -> list[PhaseStructure]:
    species = {"A": cation, "X": anion}
    radii = {"A": ion_radius(cation, q), "X": ion_radius(anion, q_anion)}
    out = []
    for label, placeholder in aflow_binaries(*ratio):
        filled = placeholder.copy()
        filled.replace_species({"Li": cation, "Cl": anion})
        if filled.num_sites > 24:
            continue
        crystal = scaled_to_radii(filled, species, radii)
        out.append(PhaseStructure(f"aflow:{label}", crystal.reduced_formula, crystal))
    return out


_TERNARY_RULES: tuple[tuple[dict[str, int], bool], ...] = (
    ({"A": 1, "B": 1, "X": 3}, False),
    ({"A": 1, "B": 2, "X": 4}, True),
    ({"A": 1, "B": 1, "X": 2}, False),
    ({"A": 2, "B": 1, "X": 4}, False),
)
"""(stoichiometry, try both cation orders) of the ternary types; otherwise A is the larger ion."""


def _ternary_structures(elements: tuple[str, str, str]) -> list[PhaseStructure]:
    anions = [x for x in elements if all(_anion_of(x, y) == x for y in elements if y != x)]
    if len(anions) != 1:
        return []
    anion = anions[0]
    cations = [e for e in elements if e != anion]
    if any(c in NEVER_CATIONS or c in ANION_STATES and _electronegativity(c) >= _electronegativity(anion) for c in cations):
        return []
    q_anion = -ANION_STATES[anion]
    out: list[PhaseStructure] = []
    seen: set[tuple[str, str, str]] = set()
    for stoichiometry, both_orders in _TERNARY_RULES:
        charge = stoichiometry["X"] * q_anion
        for qa in cation_states(cations[0]):
            for qb in cation_states(cations[1]):
                orders = [(cations[0], qa, cations[1], qb), (cations[1], qb, cations[0], qa)]
                for a, q_a, b, q_b in orders:
                    if stoichiometry["A"] * q_a + stoichiometry["B"] * q_b != charge:
                        continue
                    if not both_orders and ion_radius(a, q_a) < ion_radius(b, q_b):
                        continue
                    for prototype in prototypes_for(stoichiometry):
                        key = (prototype.name, a, b)
                        if key in seen:
                            continue
                        seen.add(key)
                        built = _fill(prototype, {"A": a, "B": b, "X": anion}, {"A": q_a, "B": q_b, "X": -q_anion})
                        if built:
                            out.append(built)
    return out


def phase_structures(elements: Sequence[str], *, ternaries: bool = True) -> list[PhaseStructure]:
    """Prototype structures of exactly the subsystem ``elements`` (2 or 3 elements; others give
    nothing), in a fixed order (common oxidation states first)."""
    symbols = tuple(sorted(set(elements)))
    if len(symbols) == 2:
        return _binary_structures(*symbols)
    if len(symbols) == 3 and ternaries:
        return _ternary_structures(symbols)  # type: ignore[arg-type]
    return []


def subsystems(elements: Iterable[str], *, largest: int = 3) -> list[tuple[str, ...]]:
    """Binary to ``largest``-element subsystems of a system, sorted."""
    symbols = sorted(set(elements))
    return [c for k in range(2, min(largest, len(symbols)) + 1) for c in combinations(symbols, k)]


class CompetingPhases:
    """Builds and records the prototype phases of chemical systems for one oracle.

    Args:
        oracle: relaxes every phase (and its cache keeps the results).
        registry: where built subsystems and their phases are recorded; ``None`` → a registry
            in the oracle's cache database.
        config: budgets and switches.

    Raises:
        ValueError: no registry was given and the oracle has no cache (phases must persist).
    """

    def __init__(self, oracle: ASEOracle, registry: PhaseRegistry | None = None, config: PhaseConfig | None = None) -> None:
        self.oracle = oracle
        self.config = config or PhaseConfig()
        if registry is None:
            if oracle.cache is None:
                raise ValueError(f"oracle {oracle.name!r} has no cache: pass a PhaseRegistry to keep competing phases")
            registry = PhaseRegistry(oracle.cache)
        self.registry = registry

    def ensure(self, elements: Iterable[str]) -> BuildReport:
        """Build every binary and ternary subsystem of ``elements`` not built yet for this
        oracle setting; return what was done."""
        started = time.perf_counter()
        key = self.oracle.cache_key()
        built, before, screened, relaxed = [], [], 0, 0
        if not self.config.enabled:
            return BuildReport((), (), 0, 0, 0.0)
        for system in subsystems(elements, largest=3 if self.config.ternaries else 2):
            name = chemical_system(system)
            if self.registry.is_built(key, name):
                before.append(name)
                continue
            n_screened, n_relaxed = self._build(system, key)
            built.append(name)
            screened += n_screened
            relaxed += n_relaxed
        seconds = time.perf_counter() - started
        if built:
            logger.info(
                "%s competing phases: built %s (%d screened, %d relaxed) in %.1f s",
                self.oracle.name, ", ".join(built), screened, relaxed, seconds,
            )  # fmt: skip
        return BuildReport(tuple(built), tuple(before), screened, relaxed, seconds)

    def _build(self, system: tuple[str, ...], key: str) -> tuple[int, int]:
        started = time.perf_counter()
        structures = phase_structures(system, ternaries=self.config.ternaries)
        structures = _unique(structures)[: self.config.max_structures_per_subsystem]
        if not structures:
            self.registry.mark_built(key, chemical_system(system), 0, time.perf_counter() - started)
            return 0, 0
        energies = self.oracle.single_point([s.crystal for s in structures])
        by_formula: dict[str, list[tuple[float, PhaseStructure]]] = {}
        for structure, measurement in zip(structures, energies, strict=True):
            if measurement.status == "ok" and measurement.value is not None:
                by_formula.setdefault(structure.formula, []).append((measurement.value, structure))
        chosen = [
            s for options in by_formula.values() for _, s in sorted(options, key=lambda item: item[0])[: self.config.relax_per_composition]
        ]
        relaxations = self._relax([s.crystal for s in chosen])
        phases = [
            RegisteredPhase(s.crystal.canonical_hash(), "prototype", s.label, s.formula)
            for s, r in zip(chosen, relaxations, strict=True)
            if r.status == "ok"
        ]
        self.registry.add(key, phases)
        self.registry.mark_built(key, chemical_system(system), len(phases), time.perf_counter() - started)
        return len(structures), len(chosen)

    def _relax(self, crystals: list[Crystal]):
        workers = min(self.config.workers, len(crystals))
        if workers <= 1:
            return self.oracle.relax(crystals)
        from concurrent.futures import ThreadPoolExecutor

        chunks = [crystals[i::workers] for i in range(workers)]
        with ThreadPoolExecutor(max_workers=workers) as pool:
            results = list(pool.map(self.oracle.relax, chunks))
        out = [None] * len(crystals)
        for w, chunk_results in enumerate(results):
            for j, result in enumerate(chunk_results):
                out[w + j * workers] = result
        return out


def _unique(structures: list[PhaseStructure]) -> list[PhaseStructure]:
    seen: set[str] = set()
    out = []
    for s in structures:
        h = s.crystal.canonical_hash()
        if h not in seen:
            seen.add(h)
            out.append(s)
    return out
