"""The symmetric subspace of a template and diffusion projected onto it: the subspace writes the
template's own sites, its projection is idempotent and frame-free, and every state of a projected
reverse trajectory keeps the template's space group exactly."""

from __future__ import annotations

from functools import cache

import numpy as np
import pytest
import spglib

from crystaloop.data.crystal import Crystal
from crystaloop.data.datasets import load_dataset
from crystaloop.data.errors import CrystaloopError
from crystaloop.generator.symmetry import describe
from crystaloop.generator.symmetry.representation import SymmetricCrystal
from crystaloop.generator.symmetry.subspace import SymmetricSubspace
from crystaloop.generator.symmetry.wyckoff import centring_points, group

ROWS = 40


@cache
def _described(dataset: str) -> tuple[SymmetricCrystal, ...]:
    return tuple(describe(c)[0] for c in load_dataset(f"{dataset}/train", max_rows=ROWS).crystals)


def _keeps_group(crystal: Crystal, space_group: int) -> bool:
    """True when ``crystal`` (a primitive cell) has at least the operations of ``space_group``."""
    found = spglib.get_symmetry_dataset((crystal.lattice, crystal.frac_coords, crystal.numbers), symprec=1e-4)
    expected = len(group(space_group)[0].ops) // centring_points(space_group)
    return found is not None and len(found.rotations) // _translations(found) >= expected


def _translations(found) -> int:  # noqa: ANN001 - spglib dataset
    """Pure translations spglib lists (a supercell input repeats each operation that many times)."""
    identity = np.eye(3, dtype=int)
    return max(1, sum(1 for r in found.rotations if (r == identity).all()))


@pytest.mark.parametrize("dataset", ["perov_5", "carbon_24"])
@pytest.mark.parametrize("primitive", [True, False])
def test_the_subspace_writes_the_templates_own_sites(dataset: str, primitive: bool) -> None:
    """Same sites, order and species as ``to_crystal``, for every described training crystal."""
    for symmetric in _described(dataset):
        subspace = SymmetricSubspace(symmetric, primitive=primitive)
        reference = symmetric.to_crystal(primitive=primitive)
        assert subspace.crystal.n_sites == reference.n_sites
        np.testing.assert_array_equal(subspace.crystal.numbers, reference.numbers)
        delta = subspace.crystal.frac_coords - reference.frac_coords
        assert np.abs(delta - np.round(delta)).max() < 1e-8
        np.testing.assert_allclose(subspace.crystal.lattice, reference.lattice, atol=1e-9)


@pytest.mark.parametrize("dataset", ["perov_5", "carbon_24"])
def test_projection_is_idempotent_frame_free_and_restores_the_group(dataset: str) -> None:
    rng = np.random.default_rng(0)
    for symmetric in _described(dataset):
        subspace = SymmetricSubspace(symmetric)
        noisy = subspace.crystal.frac_coords + rng.normal(0, 0.03, (subspace.n_sites, 3))
        once = subspace.project_frac(noisy)
        twice = subspace.project_frac(once)
        assert np.abs((once - twice + 0.5) % 1 - 0.5).max() < 1e-9
        lattice = subspace.crystal.lattice @ (np.eye(3) + rng.normal(0, 0.03, (3, 3)))
        rotation, _ = np.linalg.qr(rng.normal(size=(3, 3)))
        projected = subspace.project_lattice(lattice)
        rotated = subspace.project_lattice(lattice @ rotation.T)  # the same cell in another frame
        np.testing.assert_allclose(projected @ projected.T, rotated @ rotated.T, atol=1e-8)
        np.testing.assert_allclose(subspace.project_lattice(projected), projected, atol=1e-9)
        assert _keeps_group(Crystal(projected, once, subspace.crystal.numbers), symmetric.space_group)
        # the noisy input itself has lost the symmetry (else the check above proves nothing)
        if symmetric.space_group > 1:
            assert not _keeps_group(Crystal(lattice, np.mod(noisy, 1), subspace.crystal.numbers), symmetric.space_group)


def test_fitted_parameters_read_back_the_template() -> None:
    """A projected state read back as template parameters rebuilds the same crystal."""
    rng = np.random.default_rng(3)
    for symmetric in _described("carbon_24")[:15]:
        subspace = SymmetricSubspace(symmetric)
        frac = subspace.project_frac(subspace.crystal.frac_coords + rng.normal(0, 0.02, (subspace.n_sites, 3)))
        lattice = subspace.project_lattice(subspace.crystal.lattice * 1.05)
        rebuilt = subspace.with_state(lattice, frac).to_crystal()
        delta = rebuilt.frac_coords - frac
        assert np.abs(delta - np.round(delta)).max() < 1e-7
        np.testing.assert_allclose(rebuilt.lattice @ rebuilt.lattice.T, lattice @ lattice.T, rtol=1e-7, atol=1e-7)


@cache
def _carbon_model():  # noqa: ANN202 - the shipped teacher
    from crystaloop.generator.consistency.checkpoint import load_any_model
    from crystaloop.generator.shipped import shipped_generator_path

    return load_any_model(shipped_generator_path("carbon_24")).eval()


def test_every_state_of_a_projected_trajectory_keeps_the_space_group_and_the_seed_fixes_it() -> None:
    from crystaloop.generator.symmetry.refine import TemplateDiffusion

    templates = [(s, True) for s in _described("carbon_24") if s.space_group >= 10][:3]
    assert len(templates) == 3
    refiner = TemplateDiffusion(_carbon_model(), steps=6, start=0.6)
    trace: list = []
    out = refiner.refine(templates, seed=5, trace=trace)
    assert len(trace) == 3 and all(len(states) == 1 + 6 for states in trace)  # the first state and one per step
    for (symmetric, _), states, (crystal, described) in zip(templates, trace, out, strict=True):
        subspace = SymmetricSubspace(symmetric)
        numbers = subspace.crystal.numbers
        for lattice, frac in states:
            assert _keeps_group(Crystal(lattice, frac, numbers), symmetric.space_group)
            assert np.abs((subspace.project_frac(frac) - frac + 0.5) % 1 - 0.5).max() < 1e-9
        assert described.template == symmetric.template
        assert _keeps_group(crystal, symmetric.space_group)
        assert crystal.composition == symmetric.to_crystal().composition
    again = refiner.refine(templates, seed=5)
    for (first, _), (second, _) in zip(out, again, strict=True):
        np.testing.assert_allclose(first.frac_coords, second.frac_coords)
        np.testing.assert_allclose(first.lattice, second.lattice)
    moved = refiner.refine(templates, seed=6)
    assert any(not np.allclose(a.frac_coords, b.frac_coords) for (a, _), (b, _) in zip(out, moved, strict=True))


def test_refiner_refuses_bad_settings_and_foreign_elements() -> None:
    from crystaloop.generator.symmetry.refine import TemplateDiffusion

    with pytest.raises(CrystaloopError, match="start must be in"):
        TemplateDiffusion(_carbon_model(), start=0.0)
    with pytest.raises(CrystaloopError, match="steps must be"):
        TemplateDiffusion(_carbon_model(), steps=0)
    perovskite = _described("perov_5")[0]
    with pytest.raises(CrystaloopError, match="vocabulary"):
        TemplateDiffusion(_carbon_model()).refine([(perovskite, True)], seed=0)


def test_template_generator_with_a_refiner_keeps_counts_symmetry_and_says_what_drew_the_parameters(caplog) -> None:
    """``free_parameters: diffusion``: the composition's counts, the template's group, the
    refiner named in provenance, seeded; an element outside the model's vocabulary keeps the copy."""
    import logging

    from crystaloop.data.records import Condition
    from crystaloop.generator.symmetry.generator import TemplateChoice, TemplateGenerator

    choice = TemplateChoice(training="perov_5/train", free_parameters="diffusion", refine_steps=4, refine_start=0.3)
    generator = TemplateGenerator.from_crystals(load_dataset("perov_5/train", max_rows=300).crystals, loo_rows=10,
                                                use_cache=False)
    copying = TemplateGenerator(generator.prior, generator.volumes)
    generator.refiner = choice.refiner()
    condition = Condition(composition={"Sr": 1, "Ti": 1, "O": 3})
    drawn = generator.sample(3, condition, seed=1)
    copied = copying.sample(3, condition, seed=1)
    assert len(drawn) == 3
    for candidate, reference in zip(drawn, copied, strict=True):
        assert candidate.crystal.composition == {"Sr": 1, "Ti": 1, "O": 3}
        assert "free parameters drawn by perov_5 diffusion" in candidate.provenance.source
        space_group = int(candidate.provenance.source.split()[1])
        assert _keeps_group(candidate.crystal, space_group)
        assert not np.allclose(candidate.crystal.lattice, reference.crystal.lattice)  # the lattice was redrawn
    again = generator.sample(3, condition, seed=1)
    for first, second in zip(drawn, again, strict=True):
        np.testing.assert_allclose(first.crystal.frac_coords, second.crystal.frac_coords)
    with caplog.at_level(logging.INFO, logger="crystaloop.generator.symmetry.generator"):
        foreign = generator.sample(1, Condition(composition={"Cs": 1, "Pb": 1, "I": 3}), seed=0)
    assert "keep their copied free parameters" in caplog.text
    assert "free parameters drawn" not in foreign[0].provenance.source
    with pytest.raises(CrystaloopError, match="none is shipped"):
        TemplateChoice(training="my_set/train", free_parameters="diffusion").refiner()


def test_a_distilled_student_refines_in_one_or_two_projected_steps_and_keeps_the_group() -> None:
    from crystaloop.generator.symmetry.generator import TemplateChoice

    templates = [(s, True) for s in _described("carbon_24") if s.space_group >= 10][:3]
    refiner = TemplateChoice(training="carbon_24/train", free_parameters="diffusion", checkpoint="carbon_24_consistency",
                             refine_steps=2, refine_start=0.3).refiner()
    assert refiner.method == "consistency" and "consistency" in refiner.description
    trace: list = []
    out = refiner.refine(templates, seed=0, trace=trace)
    # first state, the clean estimate before re-noising, the re-noised state, the last one
    assert all(len(states) == 4 for states in trace)
    for (symmetric, _), states, (crystal, _) in zip(templates, trace, out, strict=True):
        numbers = SymmetricSubspace(symmetric).crystal.numbers
        assert all(_keeps_group(Crystal(lattice, frac, numbers), symmetric.space_group) for lattice, frac in states)
        assert _keeps_group(crystal, symmetric.space_group)
    with pytest.raises(CrystaloopError, match="refine_steps must be 1–4"):
        TemplateChoice(training="carbon_24/train", free_parameters="diffusion", checkpoint="carbon_24_consistency").refiner()
    with pytest.raises(CrystaloopError, match="does not fit"):
        from crystaloop.generator.symmetry.refine import TemplateDiffusion

        TemplateDiffusion(_carbon_model(), method="consistency")
