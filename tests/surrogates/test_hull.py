"""Energy above hull with EMT on Cu–Al: references, strained structures, candidates joining the hull."""

from __future__ import annotations

import numpy as np
import pytest
from ase.build import bulk
from ase.calculators.calculator import Calculator, all_changes
from ase.calculators.emt import EMT

from crystaloop.data.crystal import Crystal
from crystaloop.surrogates.hull import (
    FORMATION_PROPERTY,
    EnergyAboveHull,
    delta_test_crystal,
    reference_structure,
    trial_structures,
)
from crystaloop.surrogates.oracles import ASEOracle, OracleCache
from crystaloop.surrogates.phases import PhaseConfig


@pytest.fixture
def oracle() -> ASEOracle:
    return ASEOracle("emt", EMT, cache=OracleCache("sqlite://"))


def _cu(a: float = 3.6) -> Crystal:
    return Crystal.from_ase(bulk("Cu", "fcc", a=a))


def _al(a: float = 4.05) -> Crystal:
    return Crystal.from_ase(bulk("Al", "fcc", a=a))


def _cual() -> Crystal:
    return Crystal.from_ase(bulk("CuAl", "cesiumchloride", a=3.0))


def _cu_pu() -> Crystal:
    """CuPu in rock salt: Pu has neither an ASE reference state nor a Δ-test crystal."""
    return Crystal.from_ase(bulk("CuPu", "rocksalt", a=5.0))


def test_elemental_references_sit_on_the_hull(oracle: ASEOracle) -> None:
    hull = EnergyAboveHull(oracle)
    cu, al = hull.e_above_hull([_cu(), _al()])
    assert cu.status == al.status == "ok"
    assert cu.property == "e_above_hull" and cu.units == "eV/atom"
    assert cu.value == pytest.approx(0.0, abs=1e-3) and al.value == pytest.approx(0.0, abs=1e-3)
    reference = hull.reference("Cu")
    assert reference.status == "ok" and reference.final.composition == {"Cu": 1}


def test_strained_structure_lies_above_the_hull(oracle: ASEOracle) -> None:
    hull = EnergyAboveHull(oracle)
    strained = _cu(3.9)
    (energy,) = oracle.single_point([strained])
    (measurement,) = hull.e_above_hull([strained], [energy.value])
    reference = hull.reference("Cu").energy_per_atom
    assert measurement.value > 0.1
    assert measurement.value == pytest.approx(energy.value - reference, abs=1e-9)


def test_candidate_below_the_hull_gets_zero_and_joins_it(oracle: ASEOracle) -> None:
    hull = EnergyAboveHull(oracle)
    cual = _cual()
    cu3al = Crystal.from_ase(bulk("Cu", "fcc", a=3.7, cubic=True))
    cu3al = Crystal(cu3al.lattice, cu3al.frac_coords, [29, 29, 29, 13])
    deep, shallow = hull.e_above_hull([cual, cu3al], [-1.0, -0.3])
    assert deep.value == 0.0 and "below the hull of the other known structures" in deep.reason
    # Cu3Al at -0.3 eV/atom lies above the tie-line Cu (≈0) – CuAl (-1.0): 0.5·(-1.0) + 0.5·0 = -0.5
    assert shallow.value == pytest.approx(0.2, abs=0.01)


class RegularSolution(Calculator):
    """E/N = -x(1-x) eV/atom with x the Al fraction; no forces or stress (relaxations end at once)."""

    implemented_properties = ["energy", "free_energy", "forces", "stress"]

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes) -> None:
        super().calculate(atoms, properties, system_changes)
        x = float(np.mean(self.atoms.numbers == 13))
        energy = -x * (1.0 - x) * len(self.atoms)
        n = len(self.atoms)
        self.results = {"energy": energy, "free_energy": energy, "forces": np.zeros((n, 3)), "stress": np.zeros(6)}


def test_relaxed_candidates_become_part_of_later_hulls() -> None:
    """Without prototype phases, the oracle's own relaxations are the only competing phases:
    a compound alone against the elements gets a formation energy, not a stability verdict."""
    oracle = ASEOracle("regular-solution", RegularSolution, cache=OracleCache("sqlite://"))
    no_prototypes = PhaseConfig(enabled=False)
    cu3al = Crystal.from_ase(bulk("Cu", "fcc", a=3.7, cubic=True))
    cu3al = Crystal(cu3al.lattice, cu3al.frac_coords, [29, 29, 29, 13])
    (alone,) = EnergyAboveHull(oracle, phases=no_prototypes).e_above_hull([cu3al], [-0.1])
    assert alone.property == FORMATION_PROPERTY and alone.value == pytest.approx(-0.1)
    assert alone.details["coverage"] == "elements" and "not a stability verdict" in alone.reason
    (cual,) = EnergyAboveHull(oracle, phases=no_prototypes).e_above_hull([_cual()])  # relaxed, so cached
    assert cual.property == FORMATION_PROPERTY  # still only the elements besides itself
    diagram = EnergyAboveHull(oracle, phases=no_prototypes).phase_diagram(["Al", "Cu"])
    assert "AlCu" in {entry.composition.reduced_formula for entry in diagram.stable_entries}
    (later,) = EnergyAboveHull(oracle, phases=no_prototypes).e_above_hull([cu3al], [-0.1])
    assert later.property == "e_above_hull" and later.details["coverage"] == "campaign"
    assert later.value == pytest.approx(0.025)  # the Cu–CuAl tie-line lies at -0.125 eV/atom for Cu3Al
    assert later.details["basis"] == {"elements": 2, "prototype": 0, "known": 0, "campaign": 1}
    assert {d["formula"] for d in later.details["decomposition"]} == {"Cu", "AlCu"}


def test_missing_energy_and_missing_reference_fail_with_reasons(oracle: ASEOracle) -> None:
    hull = EnergyAboveHull(oracle)
    plutonide = _cu_pu()
    none, no_reference = hull.e_above_hull([_cu(), plutonide], [None, -1.0])
    assert none.status == "failed" and "no finite energy" in none.reason
    assert no_reference.status == "failed" and "no elemental reference for Pu" in no_reference.reason
    relaxed_fail = hull.e_above_hull([Crystal.from_ase(bulk("NaCl", "rocksalt", a=5.6))])[0]
    assert relaxed_fail.status == "failed" and "No EMT-potential for Na" in relaxed_fail.reason


def test_reference_structures_for_molecules_and_atoms() -> None:
    oxygen, source, fixed = reference_structure("O", box_size=10.0)
    assert oxygen.n_sites == 2 and fixed and "dimer" in source and oxygen.volume == pytest.approx(1000.0)
    assert np.isclose(oxygen.min_pair_distance(), 1.21, atol=1e-6)
    helium, _, fixed = reference_structure("He")
    assert helium.n_sites == 1 and fixed
    silicon, source, fixed = reference_structure("Si")
    assert silicon.n_sites == 2 and not fixed and "diamond" in source
    none, source, _ = reference_structure("Pu")
    assert none is None and "Pu" in source


def test_sulfur_reference_is_the_crown_s8_ring() -> None:
    sulfur, source, fixed = reference_structure("S", box_size=12.0)
    atoms = sulfur.to_ase()
    assert sulfur.composition == {"S": 8} and fixed and "S8" in source
    bonds = [atoms.get_distance(i, (i + 1) % 8, mic=True) for i in range(8)]
    angles = [atoms.get_angle(i, (i + 1) % 8, (i + 2) % 8, mic=True) for i in range(8)]
    np.testing.assert_allclose(bonds, 2.05, atol=1e-9)
    np.testing.assert_allclose(angles, 108.0, atol=1e-6)
    assert sulfur.min_pair_distance() == pytest.approx(2.05)  # a ring, no closer non-bonded pair


@pytest.mark.parametrize("element", ["B", "P", "Se", "Te", "Ga", "Mn"])
def test_elements_without_ase_bulk_state_use_the_delta_test_crystal(element: str) -> None:
    crystal, source, fixed = reference_structure(element)
    assert set(crystal.composition) == {element} and not fixed
    assert "dcdft" in source and crystal.min_pair_distance() > 1.5


def test_molecular_reference_is_the_lower_of_dimer_and_molecular_crystal(oracle: ASEOracle) -> None:
    hull = EnergyAboveHull(oracle, box_size=10.0)
    reference = hull.reference("O")  # EMT has rough O parameters
    assert reference.status == "ok", reference.reason
    dimer = hull.relax_reference(reference_structure("O", box_size=10.0)[0], fixed_cell=True)
    np.testing.assert_allclose(dimer.final.lattice, np.eye(3) * 10.0, atol=1e-9)  # the box stays fixed
    crystal = hull.relax_reference(delta_test_crystal("O"), fixed_cell=False)
    assert reference.energy_per_atom == pytest.approx(min(dimer.energy_per_atom, crystal.energy_per_atom))
    lower = "dimer" if dimer.energy_per_atom <= crystal.energy_per_atom else "molecular crystal"
    assert lower in hull.reference_source("O")


def test_extra_references_must_be_pure() -> None:
    with pytest.raises(ValueError, match="must hold only S"):
        EnergyAboveHull(ASEOracle("emt", EMT), extra_references={"S": _cu()})


def test_trial_lattices_stand_in_for_missing_references(caplog) -> None:
    oracle = ASEOracle("regular-solution", RegularSolution)
    plutonide = _cu_pu()
    (failed,) = EnergyAboveHull(oracle).e_above_hull([plutonide], [-0.5])
    assert failed.status == "failed" and "missing_reference='trial_lattices'" in failed.reason
    hull = EnergyAboveHull(oracle, missing_reference="trial_lattices")
    with caplog.at_level("WARNING", logger="crystaloop.surrogates.hull"):
        (measurement,) = hull.e_above_hull([plutonide], [-0.5])
    assert measurement.status == "ok" and measurement.value == pytest.approx(-0.5)
    assert measurement.property == FORMATION_PROPERTY  # no cache: elements only, not a verdict
    assert hull.reference("Pu").status == "ok" and "upper bound" in caplog.text
    assert [label for label, _, _ in trial_structures("Pu")] == ["sc", "bcc", "fcc", "diamond", "dimer"]
