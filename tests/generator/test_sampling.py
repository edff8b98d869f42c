"""Samplers and the Generator port: conditions honoured, seeds, equivariant noise→sample map, bad input."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from crystaloop.data.errors import CrystaloopError
from crystaloop.data.records import CandidateStatus, Condition
from crystaloop.generator.base import Generator
from crystaloop.generator.config import SamplerConfig
from crystaloop.generator.diffusion.generator import DiffusionGenerator, crystal_from_sample
from crystaloop.generator.diffusion.sampling import SampleRequest, sample_batch, step_grid
from crystaloop.generator.testing import tiny_model


@pytest.fixture(scope="module")
def generator() -> DiffusionGenerator:
    model = tiny_model(dtype=torch.float32)
    return DiffusionGenerator(model, SamplerConfig(steps=8, batch_size=3), checkpoint_hash="test")


def test_diffusion_generator_satisfies_the_port(generator: DiffusionGenerator) -> None:
    assert isinstance(generator, Generator)


def test_step_grid_runs_from_noise_to_data_without_repeats() -> None:
    assert step_grid(1000, 1000) == list(range(1000, -1, -1))
    grid = step_grid(1000, 20)
    assert grid[0] == 1000 and grid[-1] == 0 and len(grid) == 21 and all(a > b for a, b in zip(grid, grid[1:], strict=False))
    assert step_grid(50, 1000) == list(range(50, -1, -1))


def test_structure_prediction_keeps_the_composition(generator: DiffusionGenerator) -> None:
    condition = Condition(composition={"Li": 2, "O": 1})
    candidates = generator.sample(4, condition, seed=1)
    assert len(candidates) + generator.last_dropped == 4
    for candidate in candidates:
        assert candidate.crystal.composition == {"Li": 2, "O": 1}
        assert candidate.status == CandidateStatus.GENERATED
        assert candidate.condition == condition
        assert candidate.provenance.seed == 1 and candidate.provenance.checkpoint_hash == "test"


def test_de_novo_stays_inside_the_chemical_system(generator: DiffusionGenerator) -> None:
    candidates = generator.sample(5, Condition(chemical_system=("Si", "O"), num_atoms=6), seed=2)
    assert candidates
    for candidate in candidates:
        assert set(candidate.crystal.elements) <= {"Si", "O"} and candidate.crystal.n_sites == 6


def test_de_novo_atom_counts_come_from_the_training_distribution(generator: DiffusionGenerator) -> None:
    counts = generator.atom_counts(50, None, np.random.default_rng(0))
    assert set(counts.tolist()) == {7}  # the tiny model's distribution puts all mass on 7 sites


def test_same_seed_same_samples_other_seed_other_samples(generator: DiffusionGenerator) -> None:
    a = generator.sample(3, Condition(composition={"Ti": 1, "O": 2}), seed=5)
    b = generator.sample(3, Condition(composition={"Ti": 1, "O": 2}), seed=5)
    c = generator.sample(3, Condition(composition={"Ti": 1, "O": 2}), seed=6)
    assert [x.id for x in a] == [x.id for x in b]
    assert [x.id for x in a] != [x.id for x in c]


@pytest.mark.parametrize("method", ["pc", "ddim"])
def test_guided_sampling_runs_for_both_methods(generator: DiffusionGenerator, method: str) -> None:
    sampler = generator.sampler.model_copy(update={"method": method})
    other = DiffusionGenerator(generator.model, sampler)
    candidates = other.sample(2, Condition(composition={"C": 4}, properties={"band_gap": 2.0}, guidance_scale=2.0), seed=0)
    assert all(np.isfinite(c.crystal.lattice).all() for c in candidates)


def test_noise_to_sample_map_is_permutation_equivariant_and_lattices_carry_no_orientation() -> None:
    """Deterministic DDIM from a permuted prior draw gives the permuted crystal; every sampled
    lattice is a symmetric matrix (the rotation-free representative), so the distribution of
    generated structures cannot depend on a Cartesian frame.
    """
    model = tiny_model(dtype=torch.float32)
    tokens = model.normalisation.tokens(np.array([3, 3, 8, 22]))
    request = SampleRequest(num_atoms=torch.tensor([4]), tokens=tokens)
    config = SamplerConfig(steps=6, method="ddim")
    rng = np.random.default_rng(0)
    upper = torch.triu(torch.randn(1, 3, 3, generator=torch.Generator().manual_seed(0)))
    lattice0 = upper + upper.transpose(1, 2)
    frac0 = torch.rand(4, 3, generator=torch.Generator().manual_seed(1))
    reference = sample_batch(model, request, config, seed=0, initial=(lattice0, frac0))
    np.testing.assert_allclose(reference.lattice[0], reference.lattice[0].T, atol=1e-5)
    permutation = torch.as_tensor(rng.permutation(4))
    permuted_request = SampleRequest(num_atoms=torch.tensor([4]), tokens=tokens[permutation])
    permuted = sample_batch(model, permuted_request, config, seed=0, initial=(lattice0, frac0[permutation]))
    np.testing.assert_allclose(permuted.frac, reference.frac[permutation.numpy()], atol=1e-4)
    np.testing.assert_allclose(permuted.lattice, reference.lattice, atol=1e-4)
    pc = sample_batch(model, request, SamplerConfig(steps=6), seed=3)
    np.testing.assert_allclose(pc.lattice[0], pc.lattice[0].T, atol=1e-5)


@pytest.mark.parametrize(
    ("condition", "message"),
    [
        (Condition(composition={"Fe": 2, "O": 3}), "Fe is outside this model's vocabulary; allowed: Li, C, O, Si, Ti"),
        (Condition(chemical_system=("Ba", "O")), "['Ba'] are outside this model's vocabulary"),
        (Condition(composition={"O": 100}), "100 atoms per cell exceed this model's maximum of 64"),
        (Condition(properties={"density": 1.0}), "cannot condition on ['density']; this model knows: band_gap"),
        (Condition(embedding=(0.1, 0.2)), "condition embedding has length 2; this model expects 4"),
    ],
)
def test_impossible_conditions_name_the_value_and_what_is_allowed(generator: DiffusionGenerator, condition: Condition, message: str) -> None:
    with pytest.raises(CrystaloopError, match=message.replace("[", r"\[").replace("]", r"\]")):
        generator.sample(1, condition, seed=0)


def test_nan_and_zero_atom_conditions_are_rejected_when_the_condition_is_built() -> None:
    with pytest.raises(ValueError, match="finite"):
        Condition(properties={"band_gap": math.nan})
    with pytest.raises(ValueError, match="must be positive"):
        Condition(composition={"O": 0})
    with pytest.raises(ValueError):
        Condition(num_atoms=0)


def test_zero_samples_is_an_error(generator: DiffusionGenerator) -> None:
    with pytest.raises(CrystaloopError, match="must be positive, got 0"):
        generator.sample(0, seed=0)


def test_collapsed_or_left_handed_cells_are_handled() -> None:
    numbers = np.array([6, 6])
    frac = np.array([[0.1, 0.2, 0.3], [0.6, 0.7, 0.8]])
    assert crystal_from_sample(np.zeros((3, 3)), frac, numbers) is None
    assert crystal_from_sample(np.full((3, 3), np.nan), frac, numbers) is None
    left = -np.eye(3) * 3.0
    crystal = crystal_from_sample(left, frac, numbers)
    assert crystal is not None and np.linalg.det(crystal.lattice) > 0
    right = crystal_from_sample(np.eye(3) * 3.0, frac, numbers)
    assert crystal.canonical_hash() == right.canonical_hash()


def test_per_sample_embeddings_condition_each_sample_and_are_recorded(generator: DiffusionGenerator) -> None:
    rows = np.random.default_rng(0).standard_normal((4, generator.embedding_dim))
    condition = Condition(composition={"Li": 2, "O": 1}, embedding=(0.0,) * generator.embedding_dim)
    own = generator.sample(4, condition, seed=3, embeddings=rows)
    assert [c.condition.embedding for c in own] == [tuple(float(v) for v in row) for row in rows]
    assert all(c.condition.composition == {"Li": 2, "O": 1} for c in own)
    shared = generator.sample(4, condition.model_copy(update={"embedding": tuple(rows[0])}), seed=3)
    assert own[0].id == shared[0].id and own[1].id != shared[1].id  # same row, same sample; another row, another
    with pytest.raises(CrystaloopError, match="4 finite rows of width 4"):
        generator.sample(4, condition, seed=3, embeddings=rows[:2])
