"""Competing phases from prototypes: stoichiometry, charge balance, sane geometry, persistence,
coverage classes, and a hull whose answer is known (rocksalt MgO under CHGNet)."""

from __future__ import annotations

import numpy as np
import pytest
from ase.build import bulk
from ase.calculators.emt import EMT
from pydantic import ValidationError

from crystaloop.data.crystal import Crystal
from crystaloop.data.prototypes import PROTOTYPES, ion_radius
from crystaloop.surrogates.hull import FORMATION_PROPERTY, EnergyAboveHull
from crystaloop.surrogates.oracles import ASEOracle, OracleCache, RelaxConfig
from crystaloop.surrogates.phase_registry import PhaseRegistry
from crystaloop.surrogates.phases import CompetingPhases, PhaseConfig, cation_states, phase_structures, subsystems


@pytest.mark.parametrize("prototype", PROTOTYPES, ids=lambda p: p.name)
def test_every_prototype_expands_to_its_stoichiometry_without_overlaps(prototype) -> None:
    species = {"A": "Sr", "B": "Ti", "X": "O"}
    states = {"A": 2, "B": 4, "X": -2}
    radii = {role: ion_radius(species[role], states[role]) for role in prototype.roles}
    crystal = prototype.build({r: species[r] for r in prototype.roles}, radii)
    counts = crystal.composition
    per_unit = dict(prototype.stoichiometry)
    units = counts[species[prototype.roles[0]]] / per_unit[prototype.roles[0]]
    assert {species[r]: n * units for r, n in per_unit.items()} == {k: float(v) for k, v in counts.items()}
    assert crystal.min_pair_distance() > 1.2  # Å: scaled to ionic radii, nothing overlapping
    assert 5.0 < crystal.volume / crystal.n_sites < 60.0  # Å³/atom


@pytest.mark.parametrize("system", [("Co", "O"), ("O", "Ta"), ("Ca", "F"), ("Ga", "N"), ("Li", "S"), ("Ba", "Ti", "O"), ("Ca", "Co", "O")])
def test_ionic_phases_are_charge_balanced_in_common_states(system) -> None:
    from pymatgen.core import Composition

    structures = phase_structures(system)
    assert structures, f"no phases for {system}"
    for s in structures:
        guesses = Composition(s.formula).oxi_state_guesses(all_oxi_states=True)
        assert guesses, f"{s.formula} ({s.label}) is not charge-balanced"
        assert s.crystal.min_pair_distance() > 1.0, f"{s.formula} ({s.label}) has overlapping atoms"


def test_expected_phases_are_among_the_candidates() -> None:
    formulas = {(s.formula, s.label) for s in phase_structures(("Mg", "O"))}
    assert ("MgO", "rocksalt") in formulas
    assert {s.formula for s in phase_structures(("O", "Ti"))} >= {"TiO2", "Ti2O3"}
    ternary = {(s.formula, s.label) for s in phase_structures(("Ba", "O", "Ti"))}
    assert ("BaTiO3", "perovskite") in ternary  # Ba on A (the larger ion), Ti4+ on B
    assert {s.formula for s in phase_structures(("Al", "Mg", "O"))} >= {"MgAl2O4"}
    assert phase_structures(("F", "O")) == [] and phase_structures(("N", "O", "Ta")) == []
    assert cation_states("Co")[:2] == (2, 3)


def test_subsystems_of_a_quaternary() -> None:
    assert len(subsystems(["Ca", "Co", "O", "F"])) == 6 + 4
    assert subsystems(["Cu"]) == []


def test_config_rejects_unknown_keys() -> None:
    with pytest.raises(ValidationError, match="budget"):
        PhaseConfig(budget=3)
    with pytest.raises(ValidationError):
        PhaseConfig(max_structures_per_subsystem=0)


def _emt(cache: OracleCache, max_steps: int = 60) -> ASEOracle:
    return ASEOracle("emt", EMT, cache=cache, relax=RelaxConfig(max_steps=max_steps))


def test_subsystems_are_built_once_and_shared_across_instances() -> None:
    cache = OracleCache("sqlite://")
    first = CompetingPhases(_emt(cache)).ensure(["Cu", "Al"])
    assert first.built == ("Al-Cu",) and first.screened == 3 and first.relaxed == 3
    again = CompetingPhases(_emt(cache)).ensure(["Al", "Cu"])
    assert again.built == () and again.already_built == ("Al-Cu",) and again.relaxed == 0
    registry = PhaseRegistry(cache)
    kinds = registry.kinds(_emt(cache).cache_key())
    assert {p.kind for p in kinds.values()} == {"prototype"}
    assert {p.formula for p in kinds.values()} == {"AlCu", "AlCu3", "Al3Cu"}
    other_setting = _emt(cache, max_steps=10)
    assert not registry.is_built(other_setting.cache_key(), "Al-Cu")  # phases never cross oracle settings


def test_coverage_classes_name_the_basis() -> None:
    cache = OracleCache("sqlite://")
    cu3al = Crystal.from_ase(bulk("Cu", "fcc", a=3.7, cubic=True))
    cu3al = Crystal(cu3al.lattice, cu3al.frac_coords, [29, 29, 29, 13])
    (elements,) = EnergyAboveHull(_emt(cache), phases=PhaseConfig(enabled=False)).e_above_hull([cu3al], [-0.1])
    assert elements.property == FORMATION_PROPERTY and elements.details["coverage"] == "elements"
    hull = EnergyAboveHull(_emt(cache))
    (prototype,) = hull.e_above_hull([cu3al], [-0.1])
    assert prototype.property == "e_above_hull" and prototype.details["coverage"] == "prototype"
    assert prototype.details["basis"]["prototype"] == 3 and prototype.details["basis"]["elements"] == 2
    assert abs(sum(d["fraction"] for d in prototype.details["decomposition"]) - 1.0) < 1e-6
    assert prototype.value == pytest.approx(max(0.0, prototype.details["hull_distance"]))
    known = Crystal.from_ase(bulk("CuAl", "rocksalt", a=4.6))
    (relaxed,) = hull.add_known([known], ["my-file.cif#1"])
    assert relaxed.status == "ok", relaxed.reason
    (with_known,) = hull.e_above_hull([cu3al], [-0.1])
    assert with_known.details["coverage"] == "known" and with_known.details["basis"]["known"] == 1
    phases = hull.hull_phases(["Cu", "Al"])
    assert {p.kind for p in phases} >= {"elements", "prototype", "known"}
    assert any(p.label == "my-file.cif#1" for p in phases)
    (pure,) = hull.e_above_hull([Crystal.from_ase(bulk("Cu", "fcc", a=3.7))], [-3.0])
    assert pure.details["coverage"] == "unary" and pure.property == "e_above_hull"


def test_unconverged_relaxations_never_enter_a_hull() -> None:
    cache = OracleCache("sqlite://")
    stiff = _emt(cache, max_steps=1)
    hull = EnergyAboveHull(stiff, phases=PhaseConfig(enabled=False))
    squeezed = Crystal.from_ase(bulk("CuAl", "cesiumchloride", a=2.7))
    (relaxation,) = stiff.relax([squeezed])
    assert relaxation.status == "unconverged" and relaxation.energy_per_atom is not None
    (measurement,) = hull.e_above_hull([squeezed], relaxations=[relaxation])
    assert measurement.status == "unconverged" and measurement.value is None
    assert "unconverged" in measurement.reason
    assert cache.entries_within(stiff.cache_key(), ["Al", "Cu"]) == []  # not a hull entry
    with pytest.raises(ValueError, match="not both"):
        hull.e_above_hull([squeezed], [0.0], relaxations=[relaxation])


@pytest.mark.slow
def test_rocksalt_wins_the_magnesium_oxide_hull_under_chgnet(tmp_path) -> None:
    """MgO crystallises in rocksalt; CHGNet must put the rocksalt prototype lowest among the
    MgO polymorphs and on the hull, with a formation energy near experiment's −3.1 eV/atom
    (−601.6 kJ/mol over two atoms; NIST-JANAF)."""
    from crystaloop.surrogates.oracles import CHGNetOracle

    oracle = CHGNetOracle(cache=OracleCache(f"sqlite:///{tmp_path / 'oracle.db'}"))
    hull = EnergyAboveHull(oracle)
    phases = hull.hull_phases(["Mg", "O"])
    mgo = [p for p in phases if p.formula == "MgO"]
    assert mgo and mgo[0].on_hull and mgo[0].label == "rocksalt", mgo
    assert -3.6 < mgo[0].formation_energy_per_atom < -2.4
    screened = oracle.single_point([s.crystal for s in phase_structures(("Mg", "O")) if s.formula == "MgO"])
    labels = [s.label for s in phase_structures(("Mg", "O")) if s.formula == "MgO"]
    assert labels[int(np.argmin([m.value for m in screened]))] == "rocksalt"
    wurtzite = [s for s in phase_structures(("Mg", "O")) if s.label == "wurtzite"][0].crystal
    (measurement,) = hull.e_above_hull([wurtzite])
    assert measurement.status == "ok" and measurement.value > 0.02  # wurtzite MgO lies above rocksalt
    assert measurement.details["decomposition"][0]["source"] == "prototype:rocksalt"


def test_parallel_relaxation_gives_the_serial_phases(tmp_path) -> None:
    serial_cache = OracleCache(f"sqlite:///{tmp_path / 'serial.db'}")
    parallel_cache = OracleCache(f"sqlite:///{tmp_path / 'parallel.db'}")  # threads share a file, not a :memory: db
    CompetingPhases(_emt(serial_cache)).ensure(["Cu", "Al", "Ni"])
    CompetingPhases(_emt(parallel_cache), config=PhaseConfig(workers=2)).ensure(["Cu", "Al", "Ni"])
    key = _emt(serial_cache).cache_key()
    serial = sorted((h, round(e, 9)) for h, _, e in serial_cache.entries_within(key, ["Al", "Cu", "Ni"]))
    parallel = sorted((h, round(e, 9)) for h, _, e in parallel_cache.entries_within(key, ["Al", "Cu", "Ni"]))
    assert serial == parallel and len(serial) == 9


def test_a_candidate_whose_relaxation_changed_the_structure_gets_no_stability_verdict() -> None:
    from crystaloop.surrogates.oracles import Relaxation

    cache = OracleCache("sqlite://")
    hull = EnergyAboveHull(_emt(cache), phases=PhaseConfig(enabled=False))
    rocksalt = Crystal.from_ase(bulk("CuAl", "rocksalt", a=4.6))
    caesium_chloride = Crystal.from_ase(bulk("CuAl", "cesiumchloride", a=3.0))
    hull.e_above_hull([Crystal.from_ase(bulk("CuAl", "zincblende", a=5.0))], [0.5])  # a compound phase exists
    became_other = Relaxation(rocksalt.canonical_hash(), caesium_chloride, -0.3, "ok", converged=True)
    kept = Relaxation(rocksalt.canonical_hash(), rocksalt, -0.3, "ok", converged=True)
    (changed,) = hull.e_above_hull([rocksalt], relaxations=[became_other])
    assert changed.status == "failed" and changed.value is None and "changed the structure" in changed.reason
    assert changed.details["structure_changed"] and changed.details["relaxed_e_above_hull"] is not None
    (same,) = hull.e_above_hull([rocksalt], relaxations=[kept])
    assert same.status == "ok" and same.value is not None
    lenient = EnergyAboveHull(_emt(cache), phases=PhaseConfig(enabled=False), require_same_structure=False)
    assert lenient.e_above_hull([rocksalt], relaxations=[became_other])[0].status == "ok"
