"""Energy above the convex hull, with every energy from one oracle, and a verdict that names its basis.

Mixing energies of different models (or of a model and DFT) makes a hull meaningless, so
:class:`EnergyAboveHull` builds its hull from one oracle only, out of four kinds of phases:

1. **elements**: one relaxed reference per element (:meth:`EnergyAboveHull.reference`):

   * a structure passed in ``extra_references`` for that element, if any;
   * else ASE's reference state, ``ase.build.bulk(symbol)`` (fcc Cu, diamond Si, hcp Ti...);
   * else, for the molecular elements H, N, O, F, Cl, Br, I, the lower of a dimer (ASE's bond
     length) in a periodic cubic box of ``box_size`` Å (positions relax, the box stays fixed)
     and the element's molecular crystal from ASE's Δ-test collection (cell relaxes;
     ``benchmarks/RESULTS.md`` 'Elemental references' shows the crystals lower under CHGNet);
     for sulfur the crown S₈ ring of α-sulfur (Rettig & Trotter, Acta Cryst. C43, 2260, 1987) in
     that box; for He and Rn a single atom in the box;
   * else the element's crystal from the Δ-test collection that ships with ASE
     (``ase.collections.dcdft``; Lejaeghere et al., Science 351, aad3000, 2016): α-B₁₂, black P,
     trigonal Se and Te, α-Ga, a two-atom stand-in for α-Mn (so Mn hulls are approximate);
   * else (Pm, At, Fr, Ra, Pa and the actinides from Pu on) ``missing_reference="fail"`` (the
     default) fails the candidates containing the element, unless the oracle has relaxed some
     structure of the pure element; ``"trial_lattices"`` uses the lowest of simple trial cells,
     an upper bound of the true elemental energy (its compounds' e_above_hull comes out low);
2. **prototype** phases: the binary and ternary competing phases of the candidate's system,
   built from structure prototypes and relaxed by the oracle once per subsystem
   (:mod:`crystaloop.surrogates.phases`; ``phases=PhaseConfig(enabled=False)`` turns it off);
3. **known** phases a user added (:meth:`EnergyAboveHull.add_known`, ``crystaloop hull add``);
4. **campaign** structures: everything else this oracle relaxed (its cache), and the
   candidates of the same call.

Every Measurement records its basis in ``details``: ``basis`` (number of phases of each kind
in the candidate's system), ``coverage`` (the strongest kind present: ``known`` >
``prototype`` > ``campaign`` > ``elements``; ``unary`` for one-element systems),
``decomposition`` (the competing phases the candidate decomposes into, with fractions and their
sources), ``hull_distance`` (signed, eV/atom: negative when the candidate lies below the hull
of every other phase) and ``hull_energy_per_atom``.

**A hull of elements alone is not a stability verdict.** With coverage ``elements`` the
Measurement's property is ``formation_energy_vs_elements`` (eV/atom, signed), never
``e_above_hull``, so no guard, objective or hit count reads it as stability.

Candidates are points of their own hull, so ``e_above_hull`` is never negative: a candidate on
or below the hull of the other phases gets 0 and becomes a vertex of the hull for every later
call. Relaxations that are not ``ok`` (failed, unconverged) never enter a hull.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from crystaloop.data.crystal import Crystal
from crystaloop.data.records import Measurement
from crystaloop.surrogates.oracles.base import ASEOracle, Relaxation
from crystaloop.surrogates.oracles.cache import OracleCache, chemical_system
from crystaloop.surrogates.phase_registry import PhaseRegistry, RegisteredPhase
from crystaloop.surrogates.phases import CompetingPhases, PhaseConfig, subsystems
from crystaloop.surrogates.references import (
    ATOMIC_ELEMENTS,
    MOLECULAR_ELEMENTS,
    delta_test_crystal,
    reference_structure,
    trial_structures,
)

if TYPE_CHECKING:
    from pymatgen.analysis.phase_diagram import PDEntry, PhaseDiagram

__all__ = [
    "EnergyAboveHull",
    "HullPhase",
    "Coverage",
    "COVERAGE_CLASSES",
    "PROPERTY",
    "FORMATION_PROPERTY",
    "decomposition_text",
    "reference_structure",
    "trial_structures",
    "delta_test_crystal",
    "MOLECULAR_ELEMENTS",
    "ATOMIC_ELEMENTS",
]

logger = logging.getLogger(__name__)

PROPERTY = "e_above_hull"
FORMATION_PROPERTY = "formation_energy_vs_elements"
UNITS = "eV/atom"
Coverage = Literal["unary", "elements", "campaign", "prototype", "known"]
COVERAGE_CLASSES: tuple[str, ...] = ("elements", "campaign", "prototype", "known", "unary")
"""Coverage classes; every class but ``elements`` is a stability verdict."""
_ON_HULL = 1e-8  # eV/atom


@dataclass(frozen=True)
class HullPhase:
    """One phase of a hull: formula, energy (eV/atom), formation energy vs the elements
    (eV/atom), kind (elements, prototype, known, campaign), a label (reference source,
    prototype name, file) and whether it is a vertex of the hull."""

    formula: str
    energy_per_atom: float
    formation_energy_per_atom: float
    kind: str
    label: str
    on_hull: bool


@dataclass
class _Known:
    """The entries of a system's hull and where each came from (entry attribute → kind, label)."""

    entries: list[PDEntry]
    sources: dict[str, tuple[str, str]] = field(default_factory=dict)
    missing: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class _Candidate:
    index: int
    key: str
    composition: dict[str, int]
    energy_per_atom: float

    @property
    def system(self) -> tuple[str, ...]:
        return tuple(sorted(self.composition))


class EnergyAboveHull:
    """Energies above the hull (eV/atom) of one oracle, with their basis; see the module docstring.

    Args:
        oracle: gives every energy (candidates without energies, references, phases).
        cache: where the structures this oracle relaxed are read from; ``None`` → the oracle's
            cache (without any cache the hull holds references and candidates only).
        phases: how prototype competing phases are built; ``None`` → :class:`PhaseConfig`
            defaults (on). Needs a cache (they persist there).
        extra_references: element → structure to use as its reference instead of ASE's.
        box_size: edge of the cubic box for molecular and atomic references, Å.
        missing_reference: ``"fail"`` candidates with an element without any reference, or use
            ``"trial_lattices"`` (see the module docstring).
        require_same_structure: when the oracle relaxes a candidate (or its relaxation is
            passed), the relaxed structure must still match the input (the project's
            StructureMatcher, :mod:`crystaloop.data.matching`); one that turned into something
            else (molecules split off, a different framework) is not a local minimum of the
            oracle, so its e_above_hull is ``failed`` with the reason, the relaxed structure's
            value kept in ``details["relaxed_e_above_hull"]``.
    """

    def __init__(
        self,
        oracle: ASEOracle,
        cache: OracleCache | None = None,
        *,
        phases: PhaseConfig | None = None,
        extra_references: Mapping[str, Crystal] | None = None,
        box_size: float = 12.0,
        missing_reference: Literal["fail", "trial_lattices"] = "fail",
        require_same_structure: bool = True,
    ) -> None:
        self.require_same_structure = require_same_structure
        if missing_reference not in ("fail", "trial_lattices"):
            raise ValueError(f"missing_reference must be 'fail' or 'trial_lattices', got {missing_reference!r}")
        self.missing_reference = missing_reference
        self.oracle = oracle
        self.cache = cache if cache is not None else oracle.cache
        self.registry = PhaseRegistry(self.cache) if self.cache is not None else None
        self.phase_config = phases or PhaseConfig()
        self.competing = (
            CompetingPhases(oracle, self.registry, self.phase_config)
            if self.registry is not None and self.phase_config.enabled
            else None
        )
        self.extra_references = dict(extra_references or {})
        for element, crystal in self.extra_references.items():
            if set(crystal.composition) != {element}:
                raise ValueError(f"extra reference for {element} must hold only {element}, got {crystal.reduced_formula}")
        self.box_size = box_size
        self._references: dict[str, tuple[Relaxation, str]] = {}

    # ------------------------------------------------------------------ references
    def reference(self, element: str) -> Relaxation:
        """The relaxed reference of ``element`` (a failed Relaxation, with the reason, when
        there is none or it failed); computed once per instance, cached by the oracle."""
        return self._reference(element)[0]

    def reference_source(self, element: str) -> str:
        """What ``element``'s reference was built from (``"O2 dimer in a 12.0 Å box"``)."""
        return self._reference(element)[1]

    def _reference(self, element: str) -> tuple[Relaxation, str]:
        if element not in self._references:
            self._references[element] = self._build_reference(element)
        return self._references[element]

    def _build_reference(self, element: str) -> tuple[Relaxation, str]:
        if element in self.extra_references:
            options = [(self.extra_references[element], "extra_references", False)]
        else:
            options = [reference_structure(element, box_size=self.box_size)]
            if element in MOLECULAR_ELEMENTS and options[0][0] is not None and options[0][2]:
                crystal = delta_test_crystal(element)
                if crystal is not None:
                    options.append((crystal, f"ase.collections.dcdft[{element!r}] (molecular crystal)", False))
        if options[0][0] is None:
            if self.missing_reference == "trial_lattices":
                return self._best_trial_reference(element), "trial lattices"
            reason = (
                f"no elemental reference for {element}: {options[0][1]}; pass "
                f"extra_references={{{element!r}: crystal}} or missing_reference='trial_lattices'"
            )
            return Relaxation(initial_hash="", final=None, energy_per_atom=None, status="failed", reason=reason), ""
        results = [(self.relax_reference(crystal, fixed), source) for crystal, source, fixed in options]
        ok = [(r, s) for r, s in results if r.status == "ok" and r.energy_per_atom is not None]
        if not ok:
            reasons = "; ".join(f"{s}: {r.reason}" for r, s in results)
            return Relaxation(results[0][0].initial_hash, None, None, "failed", f"reference for {element} failed ({reasons})"), ""
        best, source = min(ok, key=lambda item: item[0].energy_per_atom)
        logger.info("%s reference for %s (%s): %.4f eV/atom", self.oracle.name, element, source, best.energy_per_atom)
        return best, source

    def relax_reference(self, crystal: Crystal, fixed_cell: bool) -> Relaxation:
        """Relax a pure-element structure as references are relaxed: the oracle's settings,
        with the cell held fixed for molecules and atoms in a box."""
        config = self.oracle.relax_config
        if fixed_cell:
            config = config.model_copy(update={"relax_cell": False})
        return self.oracle.relax([crystal], config=config)[0]

    def trial_references(self, element: str) -> list[tuple[str, Relaxation]]:
        """(label, relaxation) of each of :func:`trial_structures` for ``element``."""
        trials = trial_structures(element, box_size=self.box_size)
        return [(label, self.relax_reference(crystal, fixed)) for label, crystal, fixed in trials]

    def _best_trial_reference(self, element: str) -> Relaxation:
        results = self.trial_references(element)
        ok = [(label, r) for label, r in results if r.status == "ok" and r.energy_per_atom is not None]
        if not ok:
            reasons = "; ".join(f"{label}: {r.reason}" for label, r in results)
            return Relaxation("", None, None, "failed", f"every trial reference for {element} failed ({reasons})")
        label, best = min(ok, key=lambda item: item[1].energy_per_atom)
        logger.warning(
            "%s reference for %s from trial lattices (%s, %.4f eV/atom) is only an upper bound of the true "
            "elemental energy; e_above_hull of its compounds is biased low",
            self.oracle.name, element, label, best.energy_per_atom,
        )  # fmt: skip
        return best

    # ------------------------------------------------------------------ known phases
    def add_known(self, crystals: Sequence[Crystal], labels: Sequence[str]) -> list[Relaxation]:
        """Relax known structures (e.g. a system's Materials Project entries) with the oracle and
        add the successful ones to every later hull as kind ``known`` with their ``labels``.

        Raises:
            ValueError: no cache to keep them in, or ``labels`` does not match ``crystals``.
        """
        if self.registry is None:
            raise ValueError(f"oracle {self.oracle.name!r} has no cache: known phases need one to persist")
        if len(labels) != len(crystals):
            raise ValueError(f"got {len(labels)} labels for {len(crystals)} known structures")
        relaxations = self.oracle.relax(list(crystals))
        phases = [
            RegisteredPhase(c.canonical_hash(), "known", label, c.reduced_formula)
            for c, label, r in zip(crystals, labels, relaxations, strict=True)
            if r.status == "ok"
        ]
        self.registry.add(self.oracle.cache_key(), phases)
        return relaxations

    def build_phases(self, elements: Sequence[str]):
        """Build the prototype competing phases of a system now (a no-op for built subsystems);
        returns the :class:`~crystaloop.surrogates.phases.BuildReport`, ``None`` when off."""
        return self.competing.ensure(elements) if self.competing is not None else None

    # ------------------------------------------------------------------ hull
    def phase_diagram(self, elements: Sequence[str]) -> PhaseDiagram:
        """The current hull of a chemical system (building its prototype phases if needed).

        Raises:
            ValueError: an element has neither a reference nor any cached pure-element entry.
        """
        system = tuple(sorted(set(elements)))
        self.build_phases(system)
        known = self._known_entries(system)
        if known.missing:
            raise ValueError("; ".join(known.missing.values()))
        from pymatgen.analysis.phase_diagram import PhaseDiagram

        return PhaseDiagram(known.entries)

    def hull_phases(self, elements: Sequence[str]) -> list[HullPhase]:
        """Every phase of a system's hull with its kind and label, the stable ones first."""
        system = tuple(sorted(set(elements)))
        self.build_phases(system)
        known = self._known_entries(system)
        if known.missing:
            raise ValueError("; ".join(known.missing.values()))
        from pymatgen.analysis.phase_diagram import PhaseDiagram

        diagram = PhaseDiagram(known.entries)
        stable = {id(e) for e in diagram.stable_entries}
        out = []
        for entry in known.entries:
            kind, label = known.sources.get(entry.attribute, ("campaign", entry.attribute[:12]))
            out.append(
                HullPhase(
                    formula=entry.composition.reduced_formula,
                    energy_per_atom=entry.energy_per_atom,
                    formation_energy_per_atom=float(diagram.get_form_energy_per_atom(entry)),
                    kind=kind,
                    label=label,
                    on_hull=id(entry) in stable,
                )
            )
        return sorted(out, key=lambda p: (not p.on_hull, p.formation_energy_per_atom))

    def e_above_hull(
        self,
        crystals: Sequence[Crystal],
        energies_per_atom: Sequence[float | None] | None = None,
        *,
        relaxations: Sequence[Relaxation] | None = None,
    ) -> list[Measurement]:
        """Energy above the hull (eV/atom, ≥ 0) of each crystal, in order, with its basis.

        Args:
            crystals: the candidates (only their compositions matter when energies are given).
            energies_per_atom: their energies from this same oracle (eV/atom); ``None`` entries
                give failed Measurements.
            relaxations: their relaxations by this oracle instead of energies: only ``ok`` ones
                count, an ``unconverged`` one gives an ``unconverged`` Measurement without value.
            When neither is given, the oracle relaxes the crystals (and caches them).
        """
        crystals = list(crystals)
        failures: dict[int, tuple[str, str]] = {}
        if energies_per_atom is not None and relaxations is not None:
            raise ValueError("pass energies_per_atom or relaxations, not both")
        if energies_per_atom is None:
            relaxations = list(relaxations) if relaxations is not None else self.oracle.relax(crystals)
            if len(relaxations) != len(crystals):
                raise ValueError(f"got {len(relaxations)} relaxations for {len(crystals)} crystals")
            energies: list[float | None] = [r.energy_per_atom if r.status == "ok" else None for r in relaxations]
            for i, r in enumerate(relaxations):
                if r.status != "ok":
                    status = "unconverged" if r.status == "unconverged" else "failed"
                    failures[i] = (status, f"relaxation {r.status}: {r.reason}")
        else:
            energies = list(energies_per_atom)
            if len(energies) != len(crystals):
                raise ValueError(f"got {len(energies)} energies for {len(crystals)} crystals")
        candidates = []
        for i, (crystal, energy) in enumerate(zip(crystals, energies, strict=True)):
            if i in failures:
                continue
            if energy is None or not math.isfinite(energy):
                failures[i] = ("failed", f"no finite energy per atom for this candidate (got {energy})")
                continue
            candidates.append(_Candidate(i, crystal.canonical_hash(), dict(crystal.composition), float(energy)))

        results: dict[int, Measurement] = {}
        for system in sorted({c.system for c in candidates}):
            members = [c for c in candidates if set(c.system) <= set(system)]
            group = [c for c in candidates if c.system == system]
            results.update(self._evaluate_group(system, members, group))
        if relaxations is not None and self.require_same_structure:
            for i, r in enumerate(relaxations):
                if i in results and results[i].status == "ok" and r.final is not None and not _same_structure(crystals[i], r.final):
                    results[i] = _structure_changed(results[i])
        out = []
        for i in range(len(crystals)):
            if i in results:
                out.append(results[i])
            else:
                status, reason = failures[i]
                out.append(
                    Measurement(
                        oracle=self.oracle.name, property=PROPERTY, value=None, units=UNITS, status=status, reason=reason
                    )
                )
        return out

    # ------------------------------------------------------------------ internals
    def _known_entries(self, system: tuple[str, ...]) -> _Known:
        """Entries of references, registered phases and cached results within ``system``."""
        from pymatgen.analysis.phase_diagram import PDEntry
        from pymatgen.core import Composition

        known = _Known(entries=[])
        references = {element: self._reference(element) for element in system}
        if self.cache is not None:
            key = self.oracle.cache_key()
            reference_hashes = {r.initial_hash for r, _ in references.values()}
            rows = [row for row in self.cache.entries_within(key, system) if row[0] not in reference_hashes]
            registered = self.registry.kinds(key, [h for h, _, _ in rows]) if self.registry is not None else {}
            for structure_hash, composition, energy in rows:
                known.entries.append(_entry(composition, energy, structure_hash, Composition, PDEntry))
                phase = registered.get(structure_hash)
                if phase is not None:
                    known.sources[structure_hash] = (phase.kind, phase.label)
                elif len(composition) == 1:
                    known.sources[structure_hash] = ("elements", "relaxed by this oracle")
                else:
                    known.sources[structure_hash] = ("campaign", structure_hash[:12])
        for element, (reference, source) in references.items():
            if reference.status == "ok" and reference.final is not None and reference.energy_per_atom is not None:
                attribute = f"element:{element}"
                known.entries.append(_entry({element: reference.final.n_sites}, reference.energy_per_atom, attribute, Composition, PDEntry))
                known.sources[attribute] = ("elements", source)
            elif not any(set(e.composition.as_dict()) == {element} for e in known.entries):
                known.missing[element] = reference.reason
        return known

    def _coverage(self, system: tuple[str, ...], known: _Known, exclude: set[str]) -> tuple[dict[str, int], Coverage]:
        basis = {"elements": 0, "prototype": 0, "known": 0, "campaign": 0}
        for entry in known.entries:
            if entry.attribute in exclude:
                continue
            kind = known.sources.get(entry.attribute, ("campaign", ""))[0]
            basis[kind] += 1
        if len(system) == 1:
            return basis, "unary"
        if basis["known"]:
            return basis, "known"
        built = self.registry.built_systems(self.oracle.cache_key()) if self.registry is not None else set()
        needed = {chemical_system(s) for s in subsystems(system, largest=3 if self.phase_config.ternaries else 2)}
        if self.competing is not None and needed and needed <= built:
            return basis, "prototype"
        if basis["campaign"] or basis["prototype"]:
            return basis, "campaign"
        return basis, "elements"

    def _evaluate_group(self, system: tuple[str, ...], members: list[_Candidate], group: list[_Candidate]) -> dict[int, Measurement]:
        from pymatgen.analysis.phase_diagram import PDEntry, PhaseDiagram
        from pymatgen.core import Composition

        self.build_phases(system)
        known = self._known_entries(system)
        name = self.oracle.name
        if known.missing:
            reason = f"cannot build the {chemical_system(system)} hull: " + "; ".join(known.missing.values())
            return {c.index: Measurement(oracle=name, property=PROPERTY, value=None, units=UNITS, status="failed", reason=reason) for c in group}
        member_keys = {c.key for c in members}
        others = [e for e in known.entries if e.attribute not in member_keys]
        entries = {c.index: _entry(c.composition, c.energy_per_atom, c.key, Composition, PDEntry) for c in members}
        with_batch = PhaseDiagram(others + list(entries.values()))
        without_batch = PhaseDiagram(others)
        basis, coverage = self._coverage(system, known, member_keys)
        sources = dict(known.sources) | {c.key: ("campaign", "this batch") for c in members}
        results = {}
        for c in group:
            entry = entries[c.index]
            decomposition, e_hull = with_batch.get_decomp_and_e_above_hull(entry, allow_negative=True)
            if e_hull is None or not math.isfinite(e_hull):
                reason = f"pymatgen could not place the {chemical_system(system)} candidate on the hull"
                results[c.index] = Measurement(oracle=name, property=PROPERTY, value=None, units=UNITS, status="failed", reason=reason)
                continue
            distance = float(e_hull)
            if distance <= _ON_HULL:  # on the hull: what it would otherwise decompose into
                decomposition, below = without_batch.get_decomp_and_e_above_hull(entry, allow_negative=True)
                distance = min(0.0, float(below))
            details: dict[str, Any] = {
                "basis": basis,
                "coverage": coverage,
                "decomposition": _decomposition(decomposition, sources),
                "hull_distance": distance,
                "hull_energy_per_atom": c.energy_per_atom - distance,
            }
            if coverage == "elements":
                formation = float(without_batch.get_form_energy_per_atom(entry))
                note = "formation energy vs the elements only: no competing phase is known, so this is not a stability verdict"
                results[c.index] = Measurement(oracle=name, property=FORMATION_PROPERTY, value=formation, units=UNITS, reason=note, details=details)
                continue
            value = max(0.0, distance)
            note = _note(value, distance, details["decomposition"], coverage)
            results[c.index] = Measurement(oracle=name, property=PROPERTY, value=value, units=UNITS, reason=note, details=details)
        return results


def _same_structure(initial: Crystal, final: Crystal) -> bool:
    """Whether a relaxation kept the structure: the project's StructureMatcher fits them."""
    from crystaloop.data.matching import structure_matcher

    return bool(structure_matcher("same_structure").fit(initial.to_pymatgen(), final.to_pymatgen()))


def _structure_changed(measurement: Measurement) -> Measurement:
    """``measurement`` of a relaxed structure that no longer matches its input, as a failure."""
    details = dict(measurement.details) | {"structure_changed": True, "relaxed_e_above_hull": measurement.value, "relaxed_property": measurement.property}
    reason = (
        "the relaxation changed the structure (its result no longer matches the input under the StructureMatcher): "
        f"the candidate is not a local minimum of this oracle; the relaxed structure's {measurement.property} is "
        f"{measurement.value:.4g} eV/atom"
    )
    return Measurement(oracle=measurement.oracle, property=PROPERTY, value=None, units=UNITS, status="failed", reason=reason, details=details)


def _decomposition(decomposition: Mapping[Any, float], sources: Mapping[str, tuple[str, str]]) -> list[dict[str, Any]]:
    out = []
    for entry, fraction in sorted(decomposition.items(), key=lambda item: -item[1]):
        kind, label = sources.get(entry.attribute, ("campaign", ""))
        out.append({"formula": entry.composition.reduced_formula, "fraction": round(float(fraction), 6), "source": f"{kind}:{label}" if label else kind})
    return out


def decomposition_text(decomposition: Sequence[Mapping[str, Any]]) -> str:
    """``"0.5 CaO + 0.5 CoF2"`` from a Measurement's ``details["decomposition"]``."""
    return " + ".join(f"{d['fraction']:.3g} {d['formula']}" for d in decomposition)


def _note(value: float, distance: float, decomposition: list[dict[str, Any]], coverage: str) -> str:
    products = decomposition_text(decomposition)
    if value > 0:
        return f"{value:.4g} eV/atom above the hull ({coverage} coverage); decomposes into {products}"
    return f"on the hull ({coverage} coverage); {-distance:.4g} eV/atom below the hull of the other known structures ({products})"


def _entry(composition: Mapping[str, int], energy_per_atom: float, key: str, composition_cls, entry_cls):
    comp = composition_cls(dict(composition))
    return entry_cls(comp, energy_per_atom * comp.num_atoms, name=comp.reduced_formula, attribute=key)
