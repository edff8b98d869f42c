"""Guards on known good and bad structures."""

from __future__ import annotations

import numpy as np
import pytest

from crystaloop.data.crystal import Crystal
from crystaloop.data.records import Candidate, Measurement, Provenance
from crystaloop.data.store.testing import base_cells, perturbed_crystals
from crystaloop.loop.config import Constraints, DiversityGuardConfig, GuardsConfig
from crystaloop.loop.guards import (
    ConstraintGuard,
    DiversityGuard,
    ExploitationGuard,
    GuardContext,
    SynthesizabilityGuard,
    ValidityGuard,
    build_guards,
    collapse_report,
    fingerprint,
    screen,
    vendi_score,
)

PROV = Provenance(component="test")


def cand(crystal: Crystal, measurements: tuple[Measurement, ...] = ()) -> Candidate:
    return Candidate(crystal=crystal, provenance=PROV, measurements=measurements)


@pytest.fixture(scope="module")
def cells() -> dict[str, Crystal]:
    return base_cells()


def test_validity_accepts_known_good_structures(cells):
    guard = ValidityGuard()
    for name, crystal in cells.items():
        verdict = guard.check(cand(crystal), GuardContext())
        assert verdict.ok, f"{name}: {verdict.reason}"
        assert verdict.score == pytest.approx(crystal.density)


def test_validity_rejects_overlapping_atoms_and_bad_chemistry(cells):
    guard = ValidityGuard()
    nacl = cells["NaCl"]
    squeezed = Crystal(nacl.lattice * 0.08, nacl.frac_coords, nacl.numbers)
    verdict = guard.check(cand(squeezed), GuardContext())
    assert not verdict.ok and "structure" in verdict.reason
    # NaCl2 in a rock-salt-like arrangement: plausible geometry, no charge-neutral oxidation states
    frac = np.array([[0, 0, 0], [0.5, 0.5, 0.5], [0.25, 0.25, 0.25]])
    nacl2 = Crystal.from_symbols(np.eye(3) * 4.5, frac, ["Na", "Cl", "Cl"])
    verdict = guard.check(cand(nacl2), GuardContext())
    assert not verdict.ok and "SMACT" in verdict.reason
    # a single element skips SMACT: diamond carbon passes
    assert guard.check(cand(cells["C"]), GuardContext()).ok


def test_validity_density_window(cells):
    sparse = Crystal(cells["MgO"].lattice * 2.5, cells["MgO"].frac_coords, cells["MgO"].numbers)
    verdict = ValidityGuard().check(cand(sparse), GuardContext())
    assert not verdict.ok and "density" in verdict.reason


def test_constraints_guard(cells):
    context = GuardContext(constraints=Constraints(chemical_systems=["Sr-Ti-O", "Ba-Ti-O"], max_atoms=6))
    guard = ConstraintGuard()
    assert guard.check(cand(cells["SrTiO3"]), context).ok
    assert not guard.check(cand(cells["SrZrO3"]), context).ok
    assert "sites" in guard.check(cand(cells["NaCl"]), GuardContext(constraints=Constraints(max_atoms=4))).reason


def test_diversity_rejects_duplicates_and_near_duplicates(cells):
    rng = np.random.default_rng(0)
    base = cells["SrTiO3"]
    near = perturbed_crystals(base, 1, rng, displacement=1e-4, strain=1e-4)[0]
    far = cells["NaCl"]
    hashes_only = DiversityGuard(DiversityGuardConfig(novelty=False))
    results = screen([cand(base), cand(base), cand(near), cand(far)], [hashes_only], GuardContext())
    ok_ids = [r.candidate.id for r in results if r.ok]
    assert sorted(ok_ids) == sorted({base.canonical_hash(), far.canonical_hash()})
    reasons = sorted(r.first_failure.reason.split(":")[0] for r in results if not r.ok)
    assert reasons == ["duplicate", "near-duplicate"]
    # with StructureMatcher on, the perturbed copy is a duplicate of the kept base cell
    results = screen([cand(base), cand(near)], [DiversityGuard()], GuardContext())
    assert [r.ok for r in results].count(True) == 1
    assert next(r for r in results if not r.ok).first_failure.reason.startswith("duplicate: matches")


def test_diversity_against_history(cells):
    context = GuardContext()
    context.accept(cand(cells["BaTiO3"]))
    assert not DiversityGuard().check(cand(cells["BaTiO3"]), context).ok
    assert DiversityGuard(DiversityGuardConfig(min_distance=0.0)).check(cand(cells["SrTiO3"]), context).ok


def test_fingerprint_invariant_to_site_order(cells):
    crystal = cells["SrTiO3"]
    order = np.array([3, 0, 4, 1, 2])
    permuted = Crystal(crystal.lattice, crystal.frac_coords[order], crystal.numbers[order])
    np.testing.assert_allclose(fingerprint(crystal), fingerprint(permuted), atol=1e-12)


def test_vendi_counts_distinct_items(cells):
    fps = np.stack([fingerprint(c) for c in cells.values()])
    assert vendi_score(np.repeat(fps[:1], 5, axis=0)) == pytest.approx(1.0)
    assert vendi_score(fps) > len(fps) - 1.5
    report = collapse_report([cand(cells["C"])] * 3 + [cand(cells["Si"])])
    assert report["unique_fraction"] == pytest.approx(0.5)
    assert report["vendi"] < 2.01


def test_exploitation_thresholds(cells):
    c = cand(cells["SrTiO3"])
    guard = ExploitationGuard()
    calm = GuardContext(predictions={c.id: {"dir_gap": (2.0, 0.2, "eV")}}, reference_std={"dir_gap": 0.2}, ood={c.id: 1.0})
    assert guard.check(c, calm).ok
    wild = GuardContext(predictions={c.id: {"dir_gap": (2.0, 2.0, "eV")}}, reference_std={"dir_gap": 0.2})
    assert "disagreement" in guard.check(c, wild).reason
    far = GuardContext(ood={c.id: 10.0})
    assert "out of distribution" in guard.check(c, far).reason


def test_synthesizability_measured_and_heuristic(cells):
    guard = SynthesizabilityGuard()
    stable = Measurement(oracle="chgnet", property="e_above_hull", value=0.02, units="eV/atom")
    unstable = Measurement(oracle="chgnet", property="e_above_hull", value=0.4, units="eV/atom")
    assert guard.check(cand(cells["SrTiO3"], (stable,)), GuardContext()).ok
    verdict = guard.check(cand(cells["SrTiO3"], (unstable,)), GuardContext())
    assert not verdict.ok and "0.4" in verdict.reason
    heuristic = guard.check(cand(cells["SrTiO3"]), GuardContext())
    assert heuristic.ok and "heuristic" in heuristic.reason
    unconverged = Measurement(oracle="chgnet", property="e_above_hull", value=0.0, status="unconverged", reason="max_steps")
    for kept in (unconverged, unconverged.model_copy(update={"value": None})):
        verdict = guard.check(cand(cells["SrTiO3"], (kept,)), GuardContext())
        assert not verdict.ok and "unconverged" in verdict.reason and "heuristic" not in verdict.reason
    assert guard.check(cand(cells["SrTiO3"], (stable, unconverged)), GuardContext()).ok  # an ok value decides
    frac = np.array([[0, 0, 0], [0.5, 0.5, 0.5]])
    nao = Crystal.from_symbols(np.eye(3) * 4.0, frac, ["Na", "Na"])  # elemental: passes
    assert guard.check(cand(nao), GuardContext()).ok
    bad = Crystal.from_symbols(np.eye(3) * 4.0, frac, ["Na", "Mg"])
    assert guard.check(cand(bad), GuardContext()).ok  # SMACT counts alloys as valid
    noble = Crystal.from_symbols(np.eye(3) * 5.0, frac, ["Ne", "O"])
    assert not guard.check(cand(noble), GuardContext()).ok


def test_build_guards_respects_enabled():
    names = [g.name for g in build_guards(GuardsConfig())]
    assert names == ["constraints", "validity", "synthesizability", "exploitation", "diversity"]
    config = GuardsConfig.model_validate({"validity": {"enabled": False}, "exploitation": {"enabled": False}})
    assert [g.name for g in build_guards(config)] == ["constraints", "synthesizability", "diversity"]
