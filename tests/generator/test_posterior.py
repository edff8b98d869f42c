"""Measurement-guided sampling: the unguided case is the prior sampler, guidance lowers the misfit
and costs KL, early stopping returns clean estimates, and the XRD route end to end."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from crystaloop.data.errors import CrystaloopError
from crystaloop.data.records import Condition
from crystaloop.data.xrd_forward import powder_pattern_of
from crystaloop.data.xrd_grid import DEFAULT_GRID
from crystaloop.data.xrd_refine import RefineConfig
from crystaloop.generator.config import SamplerConfig
from crystaloop.generator.diffusion.generator import DiffusionGenerator
from crystaloop.generator.diffusion.sampling import SampleRequest, sample_batch, step_grid
from crystaloop.generator.posterior.sampler import PosteriorConfig, posterior_sample_batch
from crystaloop.generator.posterior.xrd import XRDMisfit, solve_pattern
from crystaloop.generator.shipped import resolve_generator_checkpoint
from crystaloop.generator.testing import tiny_model

TARGET_LENGTH = 5.0  # Å, the lattice edge length the test misfit asks for (perovskite cells have ≈ 4 Å)


def edge_misfit(lattice, frac, numbers, num_atoms, progress):  # noqa: ANN001, ANN201, ARG001
    """(B,) distance of the cell's edge lengths from TARGET_LENGTH Å (a residual norm)."""
    return (torch.linalg.norm(lattice, dim=-1) - TARGET_LENGTH).pow(2).sum(-1).clamp(min=1e-12).sqrt()


@pytest.fixture(scope="module")
def perovskite():  # noqa: ANN201
    from crystaloop.data.datasets import load_dataset

    return load_dataset("perov_5/val", max_rows=4).crystals[3]


@pytest.fixture(scope="module")
def model():  # noqa: ANN201
    return tiny_model(dtype=torch.float64, timesteps=40)


def _request(denovo: bool = False) -> SampleRequest:
    counts = torch.tensor([3, 3, 3, 3])
    tokens = None if denovo else torch.tensor([0, 2, 2] * 4)
    return SampleRequest(num_atoms=counts, tokens=tokens)


@pytest.mark.parametrize("denovo", [False, True])
def test_without_guidance_it_is_the_prior_sampler_and_costs_no_kl(model, denovo: bool) -> None:
    config = SamplerConfig(method="pc", steps=20)
    prior = sample_batch(model, _request(denovo), config, seed=5)
    posterior = posterior_sample_batch(model, _request(denovo), config, edge_misfit,
                                       PosteriorConfig(lattice_step=0.0, frac_step=0.0), seed=5)
    np.testing.assert_array_equal(posterior.raw.lattice, prior.lattice)
    np.testing.assert_array_equal(posterior.raw.frac, prior.frac)
    np.testing.assert_array_equal(posterior.raw.numbers, prior.numbers)
    assert np.all(posterior.kl == 0.0)


@pytest.fixture(scope="module")
def perov_generator() -> DiffusionGenerator:
    return DiffusionGenerator.from_checkpoint(resolve_generator_checkpoint("perov_5"), SamplerConfig(method="pc", steps=20))


@pytest.mark.parametrize(("through_network", "step"), [(True, 0.2), (False, 0.05)])
def test_guidance_lowers_the_misfit_and_costs_kl(perov_generator, through_network: bool, step: float) -> None:
    request = perov_generator.request(4, Condition(composition={"Sr": 1, "Ti": 1, "O": 3}), np.random.default_rng(0))
    model, config = perov_generator.model, perov_generator.sampler
    unguided = posterior_sample_batch(model, request, config, edge_misfit, PosteriorConfig(lattice_step=0.0, frac_step=0.0), seed=2)
    guidance = PosteriorConfig(lattice_step=step, frac_step=0.0, through_network=through_network)
    guided = posterior_sample_batch(model, request, config, edge_misfit, guidance, seed=2)
    assert guided.misfit.mean() < 0.7 * unguided.misfit.mean()
    assert np.all(guided.kl > 0) and np.all(np.isfinite(guided.kl))
    weaker = posterior_sample_batch(model, request, config, edge_misfit, guidance.model_copy(update={"lattice_step": step / 4}), seed=2)
    assert weaker.kl.mean() < guided.kl.mean()  # less guidance, closer to the prior path
    assert np.isfinite(guided.misfit_trace).all() and guided.misfit_trace.shape == (20, 4)


def test_early_stop_returns_the_clean_estimate_and_rejects_off_grid_steps(model) -> None:
    config = SamplerConfig(method="pc", steps=20)
    stopped = posterior_sample_batch(model, _request(True), config, edge_misfit, PosteriorConfig(stop_step=10), seed=3)
    assert stopped.raw.lattice.shape == (4, 3, 3) and np.isfinite(stopped.raw.lattice).all()
    assert set(stopped.raw.numbers.tolist()) <= {3, 6, 8, 14, 22}  # masked sites filled by a real element
    ran = step_grid(model.schedule.timesteps, 20).index(10)  # the stop step is evaluated, later ones never run
    assert np.isfinite(stopped.misfit_trace[: ran + 1]).all() and np.isnan(stopped.misfit_trace[ran + 1 :]).all()
    with pytest.raises(CrystaloopError, match="not on the 20-step grid"):
        posterior_sample_batch(model, _request(), config, edge_misfit, PosteriorConfig(stop_step=11), seed=3)
    with pytest.raises(CrystaloopError, match="method='pc'"):
        posterior_sample_batch(model, _request(), SamplerConfig(method="ddim", steps=5), edge_misfit, seed=3)
    with pytest.raises(ValueError, match="extra"):
        PosteriorConfig.model_validate({"lattice_step": 0.1, "zeta": 1.0})


def test_xrd_misfit_is_zero_for_the_measured_structure_at_every_annealing_level(perovskite) -> None:
    pattern = powder_pattern_of(perovskite)
    misfit = XRDMisfit(pattern, anneal_fwhm=1.0)
    lattice = torch.tensor(perovskite.lattice)[None]
    frac, numbers = torch.tensor(perovskite.frac_coords), torch.tensor(perovskite.numbers)
    count = torch.tensor([perovskite.n_sites])
    assert float(misfit(lattice, frac, numbers, count, 0.0)[0]) < 1e-4  # the grid's own profile: exact
    for progress in (0.5, 1.0):  # wider profiles: Gaussian-smoothed measurement vs wider pseudo-Voigt peaks
        right, strained = misfit(lattice, frac, numbers, count, progress), misfit(lattice * 1.03, frac, numbers, count, progress)
        assert float(right[0]) < 0.1 < float(strained[0])
    assert float(misfit(lattice * 1.03, frac, numbers, count, 0.0)[0]) > 0.5
    collapsed = misfit(torch.stack([lattice[0], lattice[0] * 0.01]), frac.repeat(2, 1), numbers.repeat(2), count.repeat(2), 0.0)
    assert float(collapsed[1]) == 1.0 and float(collapsed[0]) < 1e-4  # a collapsed estimate is the worst fit, not an error
    with pytest.raises(CrystaloopError, match="shape"):
        XRDMisfit(pattern[:100])
    with pytest.raises(CrystaloopError, match="positive"):
        XRDMisfit(np.zeros(DEFAULT_GRID.n_points))


@pytest.mark.slow
def test_solve_pattern_ranks_refined_solutions_by_fit(perov_generator, perovskite) -> None:
    pattern = powder_pattern_of(perovskite)
    solutions, samples = solve_pattern(perov_generator, pattern, composition=perovskite.composition, num_samples=3,
                                       refine=RefineConfig(iterations=5), seed=0)
    assert 1 <= len(solutions) <= 3 and samples.kl.shape == (3,)
    assert [s.rwp for s in solutions] == sorted(s.rwp for s in solutions)
    assert all(0.0 <= s.rwp <= 1.0 and np.isfinite(s.kl) and s.crystal.composition == perovskite.composition for s in solutions)
    with pytest.raises(CrystaloopError, match="composition"):
        solve_pattern(perov_generator, pattern, num_samples=2)


@pytest.mark.slow
def test_solve_pattern_within_a_chemical_system_draws_its_elements(perov_generator, perovskite) -> None:
    elements = tuple(sorted(perovskite.composition))
    solutions, samples = solve_pattern(perov_generator, powder_pattern_of(perovskite), chemical_system=elements, num_samples=2,
                                       refine=None, seed=1)
    assert samples.kl.shape == (2,) and np.isfinite(samples.kl).all()
    assert solutions and all(set(s.crystal.composition) <= set(elements) for s in solutions)


def test_a_snapshot_is_the_early_stopped_answer_of_the_same_chains_and_the_run_still_ends(model) -> None:
    config = SamplerConfig(method="pc", steps=20)
    stopped = posterior_sample_batch(model, _request(True), config, edge_misfit, PosteriorConfig(stop_step=10), seed=3)
    full = posterior_sample_batch(model, _request(True), config, edge_misfit, seed=3)
    both = posterior_sample_batch(model, _request(True), config, edge_misfit, PosteriorConfig(snapshot_step=10), seed=3)
    assert full.snapshot is None and both.snapshot is not None
    np.testing.assert_allclose(both.snapshot.lattice, stopped.raw.lattice)  # same chains up to the snapshot
    np.testing.assert_array_equal(both.snapshot.numbers, stopped.raw.numbers)
    np.testing.assert_allclose(both.raw.lattice, full.raw.lattice)  # taking a snapshot changes nothing downstream
    np.testing.assert_allclose(both.kl, full.kl)
    with pytest.raises(CrystaloopError, match="snapshot_step 11 is not on the 20-step grid"):
        posterior_sample_batch(model, _request(), config, edge_misfit, PosteriorConfig(snapshot_step=11), seed=3)
