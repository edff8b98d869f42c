"""Modal voting: the structure fingerprint ignores frame, order and cell choice and tells structures
apart; groups are heaviest first; the modal template generator keeps the composition's counts and
answers with distinct structures."""

from __future__ import annotations

from functools import cache

import numpy as np
import pytest

from crystaloop.data.crystal import Crystal
from crystaloop.data.datasets import load_dataset
from crystaloop.data.errors import CrystaloopError
from crystaloop.data.records import Condition
from crystaloop.data.testing import assert_invariant, random_crystal
from crystaloop.generator.symmetry.descriptors import VolumeModel
from crystaloop.generator.symmetry.generator import TemplateGenerator
from crystaloop.generator.symmetry.modes import ModalVoting, fingerprint_distance, group_votes, structure_fingerprint
from crystaloop.generator.symmetry.prior import NoTemplateError, TemplatePrior
from crystaloop.generator.symmetry.representation import describe_training


@pytest.mark.parametrize("seed", range(4))
def test_fingerprint_is_invariant_to_frame_order_and_cell(seed: int) -> None:
    rng = np.random.default_rng(seed)
    crystal = random_crystal(rng, n_sites=5)
    assert_invariant(structure_fingerprint, crystal, rng=rng)


def test_fingerprint_ignores_isotropic_scaling_and_separates_a_site_swap() -> None:
    perovskite = Crystal.from_symbols(np.eye(3) * 3.9, [[0, 0, 0], [0.5, 0.5, 0.5], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]],
                                      ["Sr", "Ti", "O", "O", "O"])
    scaled = Crystal.from_symbols(perovskite.lattice * 1.07, perovskite.frac_coords, perovskite.symbols)
    swapped = Crystal.from_symbols(perovskite.lattice, perovskite.frac_coords, ["Ti", "Sr", "O", "O", "O"])
    reference = structure_fingerprint(perovskite)
    assert fingerprint_distance(reference, structure_fingerprint(scaled)) < 1e-9
    assert fingerprint_distance(reference, structure_fingerprint(swapped)) > 0.05  # Ti on A: another structure
    assert fingerprint_distance(reference, structure_fingerprint(perovskite, neighbours=4)) == float("inf")


def test_groups_are_heaviest_first_and_founded_by_the_first_vote() -> None:
    a, b = np.zeros(6), np.ones(6)
    groups = group_votes([a, b, b + 0.01, a + 0.02, b], [1.0, 0.5, 0.5, 0.2, 0.5], radius=0.05)
    assert [g.members for g in groups] == [(1, 2, 4), (0, 3)]
    assert groups[0].mass == pytest.approx(1.5) and groups[0].founder == 1
    with pytest.raises(CrystaloopError, match="weights"):
        group_votes([a], [1.0, 2.0], radius=0.1)
    with pytest.raises(CrystaloopError, match="radius"):
        ModalVoting(radius=-1)


@cache
def _generator(dataset: str) -> TemplateGenerator:
    train = list(load_dataset(f"{dataset}/train", max_rows=120).crystals)
    prior = TemplatePrior(describe_training(train[20:], user="test"), bandwidth=1.0)
    return TemplateGenerator(prior, VolumeModel(train[20:]), voting=ModalVoting(templates=10, voters=40, radius=0.05))


@pytest.mark.parametrize("dataset", ["perov_5", "carbon_24"])
def test_modal_samples_keep_the_counts_and_are_distinct_structures(dataset: str) -> None:
    generator = _generator(dataset)
    for reference in load_dataset(f"{dataset}/train", max_rows=4).crystals:
        samples = [c.crystal for c in generator.sample(3, Condition(composition=reference.composition), seed=0)]
        assert 1 <= len(samples) <= 3
        assert all(s.composition == reference.composition for s in samples)
        for i in range(len(samples)):
            for j in range(i):
                assert fingerprint_distance(structure_fingerprint(samples[i]), structure_fingerprint(samples[j])) > 0.05
        many = generator.sample(12, Condition(composition=reference.composition), seed=0)
        nearest = TemplateGenerator(generator.prior, generator.volumes).sample(12, Condition(composition=reference.composition), seed=0)
        assert len(many) == len(nearest)  # fewer structures than samples: the nearest-voter picks fill the rest
        assert [c.crystal.canonical_hash() for c in many[: len(samples)]] == [s.canonical_hash() for s in samples]
        again = [c.crystal for c in generator.sample(3, Condition(composition=reference.composition), seed=0)]
        assert [s.canonical_hash() for s in again] == [s.canonical_hash() for s in samples]


def test_de_novo_samples_stay_in_the_chemical_system_with_the_templates_symmetry() -> None:
    """Sr-Ti-O from perov_5 templates: distinct, valid crystals, elements ⊆ system, each with a training
    template's space group; seeded."""
    from crystaloop.data.validity import structural_validity

    generator = _generator("perov_5")
    condition = Condition(chemical_system=("Sr", "Ti", "O"))
    samples = [c.crystal for c in generator.sample(6, condition, seed=1)]
    assert len(samples) == 6 and len({s.canonical_hash() for s in samples}) == 6
    for crystal in samples:
        assert set(crystal.composition) <= {"Sr", "Ti", "O"}
        assert structural_validity(crystal)
        assert crystal.spacegroup_number() in {e.symmetric.space_group for e in generator.prior.examples}
    assert [c.crystal.canonical_hash() for c in generator.sample(6, condition, seed=1)] == [s.canonical_hash() for s in samples]
    assert [c.crystal.canonical_hash() for c in generator.sample(6, condition, seed=2)] != [s.canonical_hash() for s in samples]
    with pytest.raises(NoTemplateError, match="at most 1 elements"):  # perov_5 holds ternaries only
        generator.sample(2, Condition(chemical_system=("Sr",)), seed=0)


def test_a_composition_no_template_hosts_falls_back_and_says_so(caplog: pytest.LogCaptureFixture) -> None:
    """perov_5 has ternaries only: Si₂ goes to the fallback generator, logged; without one the
    NoTemplateError names the composition."""
    from crystaloop.generator.random_search import RandomSearchGenerator

    plain = _generator("perov_5")
    with pytest.raises(NoTemplateError, match="Si"):
        plain.sample(2, Condition(composition={"Si": 2}), seed=0)
    fallback = RandomSearchGenerator(charge_balance=False)
    generator = TemplateGenerator(plain.prior, plain.volumes, voting=plain.voting, fallback=fallback)
    with caplog.at_level("WARNING"):
        samples = generator.sample(2, Condition(composition={"Si": 2}), seed=0)
    assert samples and all(c.crystal.composition == {"Si": 2} for c in samples)
    assert all(c.provenance.component != "template" for c in samples)
    assert "falling back" in caplog.text and "Si" in caplog.text
    hosted = generator.sample(1, Condition(composition={"Sr": 1, "Ti": 1, "O": 3}), seed=0)
    assert hosted[0].provenance.component == "template"


def test_the_campaign_fallback_is_the_shipped_free_coordinate_model_built_on_first_use() -> None:
    from crystaloop.generator.symmetry.generator import TemplateChoice

    shipped = TemplateChoice(training="perov_5/train").fallback_generator()
    assert shipped is not None and "perov_5" in shipped.name and shipped._generator is None  # nothing loaded yet
    assert TemplateChoice(training="perov_5/train", fallback=None).fallback_generator() is None
    with pytest.raises(Exception, match="extra|not permitted"):
        TemplateChoice(training="perov_5/train", fallbak="shipped")
