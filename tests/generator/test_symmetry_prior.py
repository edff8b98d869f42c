"""Template prior and template generator: count-consistent outputs on every val composition,
distinct templates, determinism, clear errors, registry wiring, exact symmetry of outputs."""

from __future__ import annotations

from functools import cache

import numpy as np
import pytest

from crystaloop.data.crystal import Crystal
from crystaloop.data.datasets import load_dataset
from crystaloop.data.errors import CrystaloopError
from crystaloop.data.records import Condition
from crystaloop.generator.base import Generator
from crystaloop.generator.symmetry import describe
from crystaloop.generator.symmetry.descriptors import VolumeModel, element_descriptor
from crystaloop.generator.symmetry.generator import TemplateChoice, TemplateGenerator
from crystaloop.generator.symmetry.prior import NoTemplateError, TemplatePrior

TRAIN_ROWS = 400


@cache
def _generator(dataset: str) -> TemplateGenerator:
    crystals = load_dataset(f"{dataset}/train", max_rows=TRAIN_ROWS).crystals
    return TemplateGenerator.from_crystals(crystals, loo_rows=20, training_dataset=f"{dataset}/train")


def _perovskite(a: str = "Sr", b: str = "Ti") -> Crystal:
    return Crystal.from_symbols(np.eye(3) * 3.9, [[0, 0, 0], [0.5, 0.5, 0.5], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]],
                                [a, b, "O", "O", "O"])


def test_similar_elements_are_close_in_the_descriptor() -> None:
    def distance(x: str, y: str) -> float:
        return float(np.sum((element_descriptor(x) - element_descriptor(y)) ** 2))

    assert distance("Sr", "Ba") < distance("Sr", "O")
    assert distance("O", "F") < distance("O", "Ti")
    with pytest.raises(CrystaloopError):
        element_descriptor("Xx")


def test_an_unseen_composition_maps_onto_a_seen_template_with_the_similar_element() -> None:
    """Trained on SrTiO3 and CaTiO3 cubic cells only, BaTiO3 gets the same template with Ba on the A site."""
    prior = TemplatePrior([describe(_perovskite("Sr"))[0], describe(_perovskite("Ca"))[0]], bandwidth=1.0)
    proposals = prior.sample({"Ba": 1, "Ti": 1, "O": 3}, 5)
    assert len(proposals) == 1  # one template, voted for twice
    best = proposals[0]
    assert best.space_group == 221 and len(best.sources) == 2
    ba_letter = next(letter for letter, el in best.orbits if el == "Ba")
    sr_letter = next(o.letter for o in describe(_perovskite("Sr"))[0].orbits if o.element == "Sr")
    assert ba_letter == sr_letter and best.log_probability == pytest.approx(0.0)


@pytest.mark.slow
@pytest.mark.parametrize("dataset", ["perov_5", "carbon_24"])
def test_every_val_composition_gets_count_consistent_templates_or_a_clear_error(dataset: str) -> None:
    generator = _generator(dataset)
    hosted = 0
    for crystal in load_dataset(f"{dataset}/val").crystals:
        composition = crystal.composition
        try:
            proposals = generator.prior.sample(composition, 3)
        except NoTemplateError as exc:
            assert str(sorted(composition.values())) in str(exc) and "count patterns" in str(exc)
            continue
        hosted += 1
        assert len({p.key for p in proposals}) == len(proposals)  # distinct templates
        for proposal in proposals:
            built, symmetric = generator.build(proposal)
            assert built.composition == composition
            assert sorted(el for _, el in proposal.orbits) == sorted(o.element for o in symmetric.orbits)
    assert hosted > 0


@pytest.mark.slow
def test_generator_is_deterministic_fills_provenance_and_keeps_the_symmetry() -> None:
    import spglib

    generator = _generator("perov_5")
    assert isinstance(generator, Generator)
    composition = load_dataset("perov_5/val", max_rows=1).crystals[0].composition
    condition = Condition(composition=composition)
    first = generator.sample(6, condition, seed=3)
    again = generator.sample(6, condition, seed=3)
    assert [c.id for c in first] == [c.id for c in again]
    assert len(first) + generator.last_shortfall == 6
    for candidate in first:
        assert candidate.crystal.composition == composition
        assert candidate.provenance.component == "template" and candidate.provenance.seed == 3
        assert candidate.provenance.source and candidate.provenance.source.startswith("template ")
        space_group = int(candidate.provenance.source.split()[1])
        c = candidate.crystal
        found = spglib.get_symmetry_dataset((c.lattice, c.frac_coords, c.numbers), symprec=1e-3)
        assert found is not None and found.number == space_group
    sampled = TemplateGenerator(generator.prior, generator.volumes, temperature=1.0)
    assert [c.id for c in sampled.sample(4, condition, seed=1)] == [c.id for c in sampled.sample(4, condition, seed=1)]


def test_volume_model_recovers_per_element_volumes() -> None:
    """Cells built with Sr 20, Ti 10, O 8 Å³ per atom: the fit recovers them; an unseen element gets a positive volume."""
    per_atom = {"Sr": 20.0, "Ti": 10.0, "O": 8.0}
    formulas = [["Sr", "Ti", "O", "O", "O"], ["Sr", "O"], ["Ti", "O", "O"], ["Sr", "Sr"]]
    rng = np.random.default_rng(0)
    crystals = [Crystal.from_symbols(np.eye(3) * sum(per_atom[el] for el in symbols) ** (1 / 3), rng.random((len(symbols), 3)), symbols)
                for symbols in formulas]
    model = VolumeModel(crystals)
    for element, volume in per_atom.items():
        assert model.element_volume(element) == pytest.approx(volume, rel=1e-6)
    assert model.volume({"Sr": 1, "Ti": 2, "O": 5}) == pytest.approx(80.0, rel=1e-6)
    assert model.element_volume("Ba") > 1.0  # unseen: from its atomic radius


def test_errors_name_the_problem() -> None:
    prior = TemplatePrior([describe(_perovskite())[0]])
    with pytest.raises(NoTemplateError, match=r"per-element counts \[1, 2\].*count patterns such as \[\[1, 1, 3\]\]"):
        prior.sample({"Mg": 1, "F": 2}, 1)
    with pytest.raises(CrystaloopError, match="k ≥ 1"):
        prior.sample({"Sr": 1, "Ti": 1, "O": 3}, 0)
    generator = TemplateGenerator(prior, VolumeModel([_perovskite()]))
    with pytest.raises(CrystaloopError, match="needs? a condition with a composition|give a condition with a composition"):
        generator.sample(1, Condition(), seed=0)
    with pytest.raises(CrystaloopError, match="needs? a condition with a composition|give a condition with a composition"):
        generator.sample(1, None, seed=0)
    with pytest.raises(CrystaloopError, match="bandwidth"):
        TemplatePrior([describe(_perovskite())[0]], bandwidth=0)


def test_registered_as_generator_kind_template() -> None:
    from pydantic import TypeAdapter, ValidationError

    from crystaloop.generator.registry import GENERATOR_CHOICES, GeneratorChoice

    assert GENERATOR_CHOICES["template"] is TemplateChoice
    choice = TypeAdapter(GeneratorChoice).validate_python({"kind": "template", "training": "perov_5/train", "temperature": 0.5})
    assert isinstance(choice, TemplateChoice) and choice.temperature == 0.5
    with pytest.raises(ValidationError):
        TypeAdapter(GeneratorChoice).validate_python({"kind": "template", "training": "perov_5/train", "library": ["x"]})


def test_leave_one_out_fit_scores_every_grid_point_and_rejects_a_bad_criterion() -> None:
    crystals = [_perovskite(a) for a in ("Sr", "Ca", "Ba")]
    generator = TemplateGenerator.from_crystals(crystals, loo_rows=3)
    assert set(generator.prior.loo_accuracy) == {(h, w) for h in (0.5, 1.0, 2.0, 4.0) for w in (0.0, 3.0, 10.0)}
    # each cubic perovskite is matched by the template of the others
    assert generator.prior.loo_accuracy[generator.prior.bandwidth, generator.prior.identity_weight] == pytest.approx(1.0)
    with pytest.raises(CrystaloopError, match="allowed: match, template"):
        TemplateGenerator.from_crystals(crystals, criterion="energy")  # type: ignore[arg-type]


def test_a_cached_fit_builds_the_same_generator_without_refitting_and_a_bad_entry_refits(tmp_path, monkeypatch, caplog) -> None:
    import crystaloop.generator.symmetry.generator as template_module
    from crystaloop.generator.symmetry.fit_cache import templates_cache_dir

    monkeypatch.setenv("CRYSTALOOP_CACHE_DIR", str(tmp_path))
    crystals = load_dataset("perov_5/train", max_rows=120).crystals
    condition = Condition(composition={"Sr": 1, "Ti": 1, "O": 3})
    fitted = TemplateGenerator.from_crystals(crystals, loo_rows=10)
    entries = list(templates_cache_dir().glob("*.json"))
    assert len(entries) == 1

    def no_refit(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        raise AssertionError("a cache hit must not describe the training crystals again")

    with monkeypatch.context() as patched:
        patched.setattr(template_module, "describe_training", no_refit)
        cached = TemplateGenerator.from_crystals(crystals, loo_rows=10)
    assert (cached.prior.bandwidth, cached.prior.identity_weight) == (fitted.prior.bandwidth, fitted.prior.identity_weight)
    assert cached.prior.loo_accuracy == fitted.prior.loo_accuracy
    for a, b in zip(fitted.sample(4, condition, seed=1), cached.sample(4, condition, seed=1), strict=True):
        np.testing.assert_array_equal(a.crystal.lattice, b.crystal.lattice)
        np.testing.assert_array_equal(a.crystal.frac_coords, b.crystal.frac_coords)
        assert a.provenance.source == b.provenance.source

    TemplateGenerator.from_crystals(crystals, loo_rows=5)  # another setting is another entry
    TemplateGenerator.from_crystals(crystals[:-1], loo_rows=10)  # so is another training set
    assert len(list(templates_cache_dir().glob("*.json"))) == 3
    entries[0].write_text("{not json")
    refitted = TemplateGenerator.from_crystals(crystals, loo_rows=10)
    assert "ignoring the unreadable template-fit cache entry" in caplog.text
    assert refitted.prior.bandwidth == fitted.prior.bandwidth and entries[0].read_text().startswith("{\"version\"")
