"""Novelty and duplicates against real training structures: canonical hash, then StructureMatcher."""

from __future__ import annotations

from collections import Counter
from types import SimpleNamespace

import numpy as np
import pytest

from crystaloop.data.crystal import Crystal
from crystaloop.data.datasets import load_dataset
from crystaloop.data.records import Candidate, Provenance
from crystaloop.data.store.testing import base_cells
from crystaloop.data.testing import change_basis, make_supercell, permute_sites, random_rotation, random_translation
from crystaloop.loop.config import CampaignConfig, DiversityGuardConfig
from crystaloop.loop.guards import DiversityGuard, GuardContext, Matcher, StructureIndex, neighbour_profile, screen

TRAIN = "perov_5/val"  # stands in for a training split: parsing perov_5/train costs ~10 s per test session


def cand(crystal: Crystal) -> Candidate:
    return Candidate(crystal=crystal, provenance=Provenance(component="test"))


@pytest.fixture(scope="module")
def train():  # noqa: ANN201 - a CrystalDataset
    return load_dataset(TRAIN)


@pytest.fixture(scope="module")
def reference() -> StructureIndex:
    return StructureIndex.from_datasets([TRAIN])


def _single_abx3(train) -> tuple[int, Crystal]:  # noqa: ANN001
    """The first ABX3 crystal of the split (one A, one B, three identical anions) whose formula occurs
    once in the split: its A/B swap is another arrangement of the same formula."""
    counts = Counter(c.reduced_formula for c in train.crystals)
    for i, crystal in enumerate(train.crystals):
        _, n = np.unique(crystal.numbers, return_counts=True)
        if crystal.n_sites == 5 and sorted(n.tolist()) == [1, 1, 3] and counts[crystal.reduced_formula] == 1:
            return i, crystal
    raise AssertionError(f"{TRAIN} holds no single ABX3 crystal")


def _swap_a_b(crystal: Crystal) -> Crystal:
    values, n = np.unique(crystal.numbers, return_counts=True)
    a, b = values[n == 1]
    numbers = crystal.numbers.copy()
    numbers[crystal.numbers == a], numbers[crystal.numbers == b] = b, a
    return Crystal(crystal.lattice, crystal.frac_coords, numbers)


def test_copies_of_a_training_structure_are_not_novel(train, reference):
    rng = np.random.default_rng(0)
    i, original = _single_abx3(train)
    label = f"{TRAIN}:{train.ids[i]}"
    rewritten = random_rotation(permute_sites(change_basis(random_translation(original, rng), rng), rng)[0], rng)
    supercell = random_rotation(make_supercell(original, (2, 1, 1))[0], rng)
    jiggled = Crystal(original.lattice * 1.01, original.frac_coords + rng.normal(0, 0.01, original.frac_coords.shape), original.numbers)
    guard = DiversityGuard()
    for copy, how in ((rewritten, "hash"), (supercell, "StructureMatcher"), (jiggled, "StructureMatcher")):
        verdict = guard.check(cand(copy), GuardContext(reference=reference))
        assert not verdict.ok
        assert verdict.reason.startswith("not novel") and label in verdict.reason and how in verdict.reason.replace("canonical hash", "hash")
    # hashes alone cannot see through a supercell
    hashes_only = DiversityGuard(DiversityGuardConfig(novelty=False))
    assert hashes_only.check(cand(supercell), GuardContext(reference=reference)).ok
    assert not hashes_only.check(cand(rewritten), GuardContext(reference=reference)).ok


def test_a_different_arrangement_of_the_same_formula_is_novel(train, reference):
    _, original = _single_abx3(train)
    swapped = _swap_a_b(original)  # the B site's octahedron now around A: another structure
    assert swapped.reduced_formula == original.reduced_formula
    verdict = DiversityGuard().check(cand(swapped), GuardContext(reference=reference))
    assert verdict.ok, verdict.reason
    # and a crystal of a formula the split never saw
    seen = {c.reduced_formula for c in train.crystals}
    fresh = next(c for c in base_cells().values() if c.reduced_formula not in seen)
    assert DiversityGuard().check(cand(fresh), GuardContext(reference=reference)).ok


def test_batch_and_history_copies_are_duplicates(train):
    rng = np.random.default_rng(1)
    _, original = _single_abx3(train)
    supercell = make_supercell(original, (1, 2, 1))[0]
    # min_distance 0: the cheap fingerprint has no species in its pair histogram, so it cannot tell the swap apart
    guard = DiversityGuard(DiversityGuardConfig(min_distance=0.0))
    results = screen([cand(original), cand(supercell), cand(_swap_a_b(original))], [guard], GuardContext())
    by_id = {r.candidate.id: r for r in results}
    assert by_id[original.canonical_hash()].ok and by_id[_swap_a_b(original).canonical_hash()].ok
    failure = by_id[supercell.canonical_hash()].first_failure
    assert failure.reason.startswith("duplicate: matches") and original.canonical_hash() in failure.reason
    history = GuardContext()
    history.accept(cand(original))
    again = random_rotation(original, rng)
    assert "duplicate" in DiversityGuard().check(cand(again), history).reason


def test_profile_prefilter_keeps_large_formula_groups_cheap_and_correct():
    carbon = load_dataset("carbon_24/train").crystals[:120]
    index = StructureIndex()
    index.extend(carbon, [f"c{i}" for i in range(len(carbon))])
    target = carbon[97]
    supercell = make_supercell(target, (1, 1, 2))[0]
    np.testing.assert_allclose(neighbour_profile(supercell), neighbour_profile(target), atol=1e-9)
    match = index.match(supercell, matcher=Matcher(max_comparisons=3))
    assert match is not None and match.how == "matcher"
    matched = carbon[int(match.label[1:])]
    assert Matcher().rms(matched.to_pymatgen(), target.to_pymatgen()) is not None


def test_components_use_the_generators_training_split():
    from crystaloop.loop.components import reference_structures, training_split

    diffusion_like = SimpleNamespace(name="fake", model=SimpleNamespace(config=SimpleNamespace(dataset=TRAIN)))
    assert training_split(diffusion_like) == TRAIN
    assert training_split(SimpleNamespace(name="replay")) is None
    from crystaloop.generator.config import DiffusionChoice
    from crystaloop.loop.components import make_generator

    shipped = make_generator(DiffusionChoice(checkpoint="perov_5", steps=2, method="ddim"))
    assert training_split(shipped) == "perov_5/train"  # what a perov_5 campaign's novelty is checked against
    config = CampaignConfig.model_validate({"name": "n", "objectives": [{"property": "heat_ref", "goal": "minimise"}]})
    index = reference_structures(config, diffusion_like)
    assert index is not None and len(index) == len(load_dataset(TRAIN))
    off = config.model_copy(update={"guards": config.guards.model_copy(update={"diversity": DiversityGuardConfig(reference=())})})
    assert reference_structures(off, diffusion_like) is None


def test_campaign_records_not_novel_with_the_matched_id(tmp_path):
    from crystaloop.data.store import CandidateStore
    from crystaloop.loop.campaign import iteration_candidates, run_iteration
    from crystaloop.loop.components import build_components

    config = CampaignConfig.model_validate(
        {
            "name": "novelty",
            "objectives": [{"property": "heat_ref", "goal": "minimise"}],
            "budget": {"iterations": 1, "candidates_per_iteration": 6, "oracle_calls_per_iteration": 1},
            "generator": {"kind": "dataset-replay", "dataset": "perov_5/val"},
            "oracle": {"kind": "replay", "dataset": "perov_5/val", "measure": ["heat_ref"]},
            "guards": {"diversity": {"reference": ["perov_5/val"]}, "validity": {"enabled": False}, "synthesizability": {"enabled": False}},
        }
    )
    components = build_components(config)
    with CandidateStore(f"sqlite:///{tmp_path / 's.db'}") as store:
        report = run_iteration(components, store, config, 0)
        assert report.rejected_by_reason == {"diversity": report.generated} and report.evaluated == 0
        ids = set(load_dataset("perov_5/val").ids)
        for candidate in iteration_candidates(store, config.name, 0):
            (verdict,) = [v for v in candidate.verdicts if v.guard == "diversity"]
            assert verdict.reason.startswith("not novel") and verdict.reason.split("perov_5/val:")[1].split()[0] in ids


def test_diversity_defaults_are_the_same_structure_preset() -> None:
    """loop/config.py repeats the numbers as field defaults; they must stay the preset's."""
    from crystaloop.data.matching import SAME_STRUCTURE
    from crystaloop.loop.config import DiversityGuardConfig

    c = DiversityGuardConfig()
    assert (c.stol, c.ltol, c.angle_tol) == (SAME_STRUCTURE.stol, SAME_STRUCTURE.ltol, SAME_STRUCTURE.angle_tol)
