"""Energy above the convex hull, with every energy from one oracle.

Mixing energies of different models (or of a model and DFT) makes a hull meaningless, so
:class:`EnergyAboveHull` builds its hull from one oracle only, out of

1. **elemental references**, relaxed by the oracle and cached (:meth:`EnergyAboveHull.reference`):

   * a structure passed in ``extra_references`` for that element, if any;
   * else ASE's reference state, ``ase.build.bulk(symbol)`` (fcc Cu, diamond Si, hcp Ti, bcc Fe,
     fcc Ar...), relaxed with the oracle's settings;
   * else, for the molecular elements H, N, O, F, Cl, Br, I, a dimer (ASE's bond length, or
     twice the covalent radius) in a periodic cubic box of ``box_size`` Å, for sulfur the
     crown S₈ ring of α-sulfur (S–S 2.05 Å, S–S–S 108°, the α-S molecule, Rettig & Trotter,
     Acta Cryst. C43, 2260, 1987) in that box, and for He and Rn a
     single atom in that box; positions relax, the box stays fixed (MLIP energies of an
     isolated molecule are what the model learned for gas-phase-like environments, so treat
     hulls of oxides, nitrides and halides as approximate);
   * else the element's crystal from the Δ-test collection that ships with ASE
     (``ase.collections.dcdft``; Lejaeghere et al., Science 351, aad3000, 2016), relaxed with
     the oracle's settings: α-B₁₂, black P, trigonal Se and Te, α-Ga, and the two-atom
     tetragonal cell that benchmark uses in place of α-Mn (58 atoms; so Mn compounds' hulls
     are approximate too);
   * else (Pm, At, Fr, Ra, Pa and the actinides from Pu on: elements in none of the above), with
     ``missing_reference="fail"`` (the default), no reference is built: candidates containing
     the element get a failed Measurement naming it, unless the oracle has evaluated some
     structure of the pure element (then that counts). With ``"trial_lattices"`` the lowest of
     simple cubic, bcc, fcc and diamond cells (nearest-neighbour distance twice the covalent
     radius) and a dimer in a box, each relaxed, stands in. That is only an upper bound on the
     true elemental energy (ground states are often far more complex), so e_above_hull of
     compounds with such elements comes out too low;
2. **every structure this oracle relaxed**, read from the cache (all chemical subsystems of the
   candidate's system), so the hull grows with the campaign;
3. **the candidates themselves**.

Candidates are points of their own hull, so the value is never negative: a candidate above
the hull gets its distance (> 0, eV/atom); one on or below the previous hull gets **0** and
becomes a vertex of the hull (for its batch-mates here, and for every later call once the oracle
has relaxed it, through the cache). For such a candidate the Measurement's reason says how far
below the hull of the other known structures it lies (eV/atom).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import numpy as np

from crystaloop.data.crystal import Crystal, atomic_number
from crystaloop.data.records import Measurement
from crystaloop.surrogates.oracles.base import ASEOracle, Relaxation
from crystaloop.surrogates.oracles.cache import OracleCache, chemical_system

if TYPE_CHECKING:
    from pymatgen.analysis.phase_diagram import PDEntry, PhaseDiagram

__all__ = ["EnergyAboveHull", "reference_structure", "trial_structures", "delta_test_crystal", "MOLECULAR_ELEMENTS", "ATOMIC_ELEMENTS"]

logger = logging.getLogger(__name__)

MOLECULAR_ELEMENTS = frozenset({"H", "N", "O", "F", "Cl", "Br", "I"})
"""Elements whose reference is a dimer in a box (when ASE has no bulk reference state)."""
SULFUR_RING = (8, 2.05, 108.0)
"""Crown S₈ ring of α-sulfur, sulfur's reference: atoms, S–S bond (Å), S–S–S angle (degrees)."""
ATOMIC_ELEMENTS = frozenset({"He", "Ne", "Ar", "Kr", "Xe", "Rn"})
"""Elements whose reference is a single atom in a box (when ASE has no bulk reference state)."""
PROPERTY = "e_above_hull"
UNITS = "eV/atom"
_ON_HULL = 1e-8  # eV/atom


@dataclass(frozen=True)
class _Candidate:
    index: int
    key: str
    composition: dict[str, int]
    energy_per_atom: float

    @property
    def system(self) -> tuple[str, ...]:
        return tuple(sorted(self.composition))


def reference_structure(element: str, *, box_size: float = 12.0) -> tuple[Crystal | None, str, bool]:
    """The unrelaxed reference structure ASE gives for ``element``.

    Returns:
        (crystal or ``None``, a description of its source, whether the cell must stay fixed).
    """
    from ase import Atoms
    from ase.build import bulk
    from ase.data import covalent_radii, reference_states

    z = atomic_number(element)
    state = reference_states[z] or {}
    try:
        atoms = bulk(element)
    except (ValueError, RuntimeError, KeyError):  # no (usable) crystal reference state
        atoms = None
    if atoms is not None:
        return Crystal.from_ase(atoms), f"ase.build.bulk({element!r}), {state.get('symmetry')}", False
    centre = box_size / 2.0
    if element in MOLECULAR_ELEMENTS:
        bond = float(state.get("d") or 2.0 * covalent_radii[z])
        positions = [(centre - bond / 2, centre, centre), (centre + bond / 2, centre, centre)]
        atoms = Atoms([element, element], positions=positions, cell=[box_size] * 3, pbc=True)
        return Crystal.from_ase(atoms), f"{element}2 dimer in a {box_size} Å box", True
    if element == "S":
        atoms = Atoms("S8", positions=_crown_ring(*SULFUR_RING) + centre, cell=[box_size] * 3, pbc=True)
        return Crystal.from_ase(atoms), f"crown S8 ring in a {box_size} Å box", True
    if element in ATOMIC_ELEMENTS:
        atoms = Atoms([element], positions=[(centre, centre, centre)], cell=[box_size] * 3, pbc=True)
        return Crystal.from_ase(atoms), f"{element} atom in a {box_size} Å box", True
    delta_test = delta_test_crystal(element)
    if delta_test is not None:
        return delta_test, f"ase.collections.dcdft[{element!r}] (Δ-test crystal, {delta_test.n_sites} atoms)", False
    return None, f"ASE has neither a buildable reference state nor a Δ-test crystal for {element}", False


def _crown_ring(n_atoms: int, bond: float, angle_degrees: float) -> np.ndarray:
    """(n, 3) Cartesian positions (Å, centred on 0) of a crown ring: atoms alternate between two
    parallel regular n/2-gons, rotated by half a step, with the given bond length and angle."""
    step = 2.0 * np.pi / n_atoms
    radius = bond * np.sqrt((1.0 - np.cos(np.radians(angle_degrees))) / (1.0 - np.cos(2.0 * step)))
    height = np.sqrt(bond**2 - 2.0 * radius**2 * (1.0 - np.cos(step)))
    k = np.arange(n_atoms)
    return np.column_stack([radius * np.cos(k * step), radius * np.sin(k * step), np.where(k % 2, 0.5, -0.5) * height])


def delta_test_crystal(element: str) -> Crystal | None:
    """The element's crystal in ASE's Δ-test collection, or ``None`` if it has none."""
    from ase.collections import dcdft

    if element not in dcdft.names:
        return None
    return Crystal.from_ase(dcdft[element])


def trial_structures(element: str, *, box_size: float = 12.0) -> list[tuple[str, Crystal, bool]]:
    """(label, structure, fixed cell) of the trial references for ``element``: sc, bcc, fcc and
    diamond cells with a nearest-neighbour distance of twice the covalent radius, and a dimer in
    a cubic box of ``box_size`` Å."""
    from ase import Atoms
    from ase.build import bulk
    from ase.data import covalent_radii

    d = 2.0 * float(covalent_radii[atomic_number(element)])
    lattices = {"sc": d, "bcc": 2.0 * d / np.sqrt(3.0), "fcc": np.sqrt(2.0) * d, "diamond": 4.0 * d / np.sqrt(3.0)}
    trials = [(name, Crystal.from_ase(bulk(element, name, a=a)), False) for name, a in lattices.items()]
    centre = box_size / 2.0
    dimer = Atoms(
        [element, element],
        positions=[(centre - d / 2, centre, centre), (centre + d / 2, centre, centre)],
        cell=[box_size] * 3,
        pbc=True,
    )
    trials.append(("dimer", Crystal.from_ase(dimer), True))
    return trials


class EnergyAboveHull:
    """Energies above the hull (eV/atom) of one oracle; see the module docstring.

    Args:
        oracle: gives every energy (candidates without energies, references).
        cache: where the structures this oracle evaluated are read from; ``None`` → the
            oracle's cache (and without any cache the hull holds references and candidates only).
        extra_references: element → structure to use as its reference instead of ASE's
            (relaxed by the oracle), e.g. α-Mn, for which the Δ-test cell is too crude.
        box_size: edge of the cubic box for molecular and atomic references, Å.
        missing_reference: what to do for an element without any ASE reference structure:
            ``"fail"`` its candidates, or use ``"trial_lattices"`` (see the module docstring).
    """

    def __init__(
        self,
        oracle: ASEOracle,
        cache: OracleCache | None = None,
        *,
        extra_references: Mapping[str, Crystal] | None = None,
        box_size: float = 12.0,
        missing_reference: Literal["fail", "trial_lattices"] = "fail",
    ) -> None:
        if missing_reference not in ("fail", "trial_lattices"):
            raise ValueError(f"missing_reference must be 'fail' or 'trial_lattices', got {missing_reference!r}")
        self.missing_reference = missing_reference
        self.oracle = oracle
        self.cache = cache if cache is not None else oracle.cache
        self.extra_references = dict(extra_references or {})
        for element, crystal in self.extra_references.items():
            if set(crystal.composition) != {element}:
                raise ValueError(
                    f"extra reference for {element} must hold only {element}, got {crystal.reduced_formula}"
                )
        self.box_size = box_size
        self._references: dict[str, Relaxation] = {}

    # ------------------------------------------------------------------ references
    def reference(self, element: str) -> Relaxation:
        """The relaxed reference of ``element`` (a failed Relaxation, with the reason, when
        there is none or it failed); computed once per instance, cached by the oracle."""
        if element not in self._references:
            self._references[element] = self._build_reference(element)
        return self._references[element]

    def _build_reference(self, element: str) -> Relaxation:
        if element in self.extra_references:
            crystal, source, fixed_cell = self.extra_references[element], "extra_references", False
        else:
            crystal, source, fixed_cell = reference_structure(element, box_size=self.box_size)
        if crystal is None and self.missing_reference == "trial_lattices":
            return self._best_trial_reference(element)
        if crystal is None:
            reason = (
                f"no elemental reference for {element}: {source}; pass extra_references={{{element!r}: crystal}} "
                "or missing_reference='trial_lattices'"
            )
            return Relaxation(initial_hash="", final=None, energy_per_atom=None, status="failed", reason=reason)
        result = self.relax_reference(crystal, fixed_cell)
        if result.status != "ok":
            reason = f"reference for {element} ({source}) failed: {result.reason}"
            return Relaxation(result.initial_hash, None, None, "failed", reason, result.steps)
        logger.info("%s reference for %s (%s): %.4f eV/atom", self.oracle.name, element, source, result.energy_per_atom)
        return result

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
        """Lowest relaxed energy of simple trial structures (an upper bound, see the module)."""
        results = self.trial_references(element)
        ok = [(label, r) for label, r in results if r.status == "ok" and r.energy_per_atom is not None]
        if not ok:
            reasons = "; ".join(f"{label}: {r.reason}" for label, r in results)
            return Relaxation("", None, None, "failed", f"every trial reference for {element} failed ({reasons})")
        label, best = min(ok, key=lambda item: item[1].energy_per_atom)
        logger.warning(
            "%s reference for %s from trial lattices (%s, %.4f eV/atom) is only an upper bound of the true "
            "elemental energy; e_above_hull of its compounds is biased low",
            self.oracle.name,
            element,
            label,
            best.energy_per_atom,
        )
        return best

    # ------------------------------------------------------------------ hull
    def phase_diagram(self, elements: Sequence[str]) -> PhaseDiagram:
        """The current hull of a chemical system: references plus the oracle's cached results.

        Raises:
            ValueError: an element has neither a reference nor any cached pure-element entry.
        """
        entries, missing = self._known_entries(tuple(sorted(set(elements))))
        if missing:
            raise ValueError("; ".join(missing.values()))
        from pymatgen.analysis.phase_diagram import PhaseDiagram

        return PhaseDiagram(entries)

    def e_above_hull(
        self, crystals: Sequence[Crystal], energies_per_atom: Sequence[float | None] | None = None
    ) -> list[Measurement]:
        """Energy above the hull (eV/atom, ≥ 0) of each crystal, in order.

        Args:
            crystals: the candidates (only their compositions matter when energies are given).
            energies_per_atom: their energies from this same oracle (eV/atom); ``None`` entries
                give failed Measurements. When omitted, the oracle relaxes the crystals (and
                caches them, so they stay part of later hulls).
        """
        crystals = list(crystals)
        failures: dict[int, str] = {}
        if energies_per_atom is None:
            relaxations = self.oracle.relax(crystals)
            energies: list[float | None] = [r.energy_per_atom for r in relaxations]
            failures.update(
                {i: f"relaxation failed: {r.reason}" for i, r in enumerate(relaxations) if r.status != "ok"}
            )
        else:
            energies = list(energies_per_atom)
            if len(energies) != len(crystals):
                raise ValueError(f"got {len(energies)} energies for {len(crystals)} crystals")
        candidates = []
        for i, (crystal, energy) in enumerate(zip(crystals, energies, strict=True)):
            if i in failures:
                continue
            if energy is None or not math.isfinite(energy):
                failures[i] = f"no finite energy per atom for this candidate (got {energy})"
                continue
            candidates.append(_Candidate(i, crystal.canonical_hash(), dict(crystal.composition), float(energy)))

        values: dict[int, tuple[float, str]] = {}
        for system in sorted({c.system for c in candidates}):
            members = [c for c in candidates if set(c.system) <= set(system)]
            group = [c for c in candidates if c.system == system]
            outcome = self._evaluate_group(system, members, group)
            for index, result in outcome.items():
                if isinstance(result, str):
                    failures[index] = result
                else:
                    values[index] = result
        out = []
        for i in range(len(crystals)):
            if i in values:
                value, note = values[i]
                out.append(
                    Measurement(oracle=self.oracle.name, property=PROPERTY, value=value, units=UNITS, reason=note)
                )
            else:
                out.append(
                    Measurement(
                        oracle=self.oracle.name,
                        property=PROPERTY,
                        value=None,
                        units=UNITS,
                        status="failed",
                        reason=failures[i],
                    )
                )
        return out

    # ------------------------------------------------------------------ internals
    def _known_entries(self, system: tuple[str, ...]) -> tuple[list[PDEntry], dict[str, str]]:
        """Entries of references and cached results within ``system``, and element → reason for
        elements that have no pure-element entry at all."""
        from pymatgen.analysis.phase_diagram import PDEntry
        from pymatgen.core import Composition

        entries: list[PDEntry] = []
        if self.cache is not None:
            for structure_hash, composition, energy in self.cache.entries_within(self.oracle.cache_key(), system):
                entries.append(_entry(composition, energy, structure_hash, Composition, PDEntry))
        missing: dict[str, str] = {}
        for element in system:
            reference = self.reference(element)
            if reference.status == "ok" and reference.final is not None and reference.energy_per_atom is not None:
                entries.append(
                    _entry({element: reference.final.n_sites}, reference.energy_per_atom, "", Composition, PDEntry)
                )
            elif not any(set(e.composition.as_dict()) == {element} for e in entries):
                missing[element] = reference.reason
        return entries, missing

    def _evaluate_group(
        self, system: tuple[str, ...], members: list[_Candidate], group: list[_Candidate]
    ) -> dict[int, tuple[float, str] | str]:
        from pymatgen.analysis.phase_diagram import PDEntry, PhaseDiagram
        from pymatgen.core import Composition

        known, missing = self._known_entries(system)
        if missing:
            reason = "; ".join(missing.values())
            return {c.index: f"cannot build the {chemical_system(system)} hull: {reason}" for c in group}
        candidate_entries = {
            c.index: _entry(c.composition, c.energy_per_atom, c.key, Composition, PDEntry) for c in members
        }
        diagram = PhaseDiagram(known + list(candidate_entries.values()))
        results: dict[int, tuple[float, str] | str] = {}
        on_hull = []
        for c in group:
            e_hull = diagram.get_e_above_hull(candidate_entries[c.index], allow_negative=True)
            if e_hull is None or not math.isfinite(e_hull):
                results[c.index] = f"pymatgen could not place {chemical_system(system)} candidate on the hull"
                continue
            e_hull = max(0.0, float(e_hull))
            results[c.index] = (e_hull, "")
            if e_hull <= _ON_HULL:
                on_hull.append(c)
        if on_hull:
            member_keys = {c.key for c in members}
            others = [e for e in known if e.attribute not in member_keys]
            previous = PhaseDiagram(others)
            for c in on_hull:
                below = previous.get_e_above_hull(candidate_entries[c.index], allow_negative=True)
                if below is not None and np.isfinite(below) and below < -_ON_HULL:
                    note = f"on the hull; {-below:.4g} eV/atom below the hull of the other known structures"
                else:
                    note = "on the hull"
                results[c.index] = (0.0, note)
        return results


def _entry(composition: Mapping[str, int], energy_per_atom: float, key: str, composition_cls, entry_cls):
    comp = composition_cls(dict(composition))
    return entry_cls(comp, energy_per_atom * comp.num_atoms, name=comp.reduced_formula, attribute=key)
