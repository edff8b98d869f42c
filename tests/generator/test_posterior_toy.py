"""Toy posterior problem: exact posterior, guided DDPM sampler, KL score and the generic diagnostics."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from pydantic import ValidationError

from crystaloop.benchmarks.posterior_toy import (
    GaussianMixturePrior,
    LinearMeasurement,
    PosteriorSamplerConfig,
    ToyProblemError,
    assign_modes,
    cosine_alpha_bar,
    early_stopping_curve,
    exact_posterior,
    make_guidance,
    ood_measurements,
    posterior_mode_report,
    sample_posterior,
)
from crystaloop.data.errors import CrystaloopError, UnknownComponentError
from crystaloop.generator.posterior import diagnostics as diag

WEIGHTS = [0.5, 0.3, 0.2]
MEANS = [[-3.0, 0.0], [2.0, 2.5], [2.5, -2.5]]
COVS = [[[0.4, 0.1], [0.1, 0.3]], [[0.5, 0.2], [0.2, 0.4]], [[0.1, 0.0], [0.0, 0.5]]]


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread():
    """The tensors are tiny: intra-op threads only contend on a shared machine."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="module")
def prior() -> GaussianMixturePrior:
    return GaussianMixturePrior(WEIGHTS, MEANS, COVS)


@pytest.fixture(scope="module")
def observe_x1() -> LinearMeasurement:
    """Observes the first coordinate: y ≈ 2.2 leaves components 1 and 2 plausible, rules out 0."""
    return LinearMeasurement([[1.0, 0.0]], 0.25)


def _mc_tolerance(weights: np.ndarray, n: int) -> float:
    """Four standard errors of the TV between n-sample frequencies and ``weights``."""
    return 2.0 * float(np.sqrt(weights * (1 - weights) / n).sum()) + 0.01


def test_exact_posterior_matches_importance_sampling(prior: GaussianMixturePrior, observe_x1: LinearMeasurement) -> None:
    y = torch.tensor([2.2], dtype=torch.float64)
    posterior = exact_posterior(prior, observe_x1, y)
    x, labels = prior.sample(400_000, generator=torch.Generator().manual_seed(3))
    log_w = -((y - observe_x1.apply(x)) ** 2).sum(1) / (2 * observe_x1.noise_std**2)
    w = torch.softmax(log_w, 0)
    ess = float(1 / (w**2).sum())
    tol = 5 / math.sqrt(ess)
    assert ess > 10_000
    weights_is = torch.zeros(3, dtype=torch.float64).index_add_(0, labels, w)
    assert torch.allclose(posterior.weights, weights_is, atol=tol)
    mean_is = (w[:, None] * x).sum(0)
    assert torch.allclose(posterior.mean(), mean_is, atol=3 * tol)
    centred = x - mean_is
    cov_is = (w[:, None, None] * centred[:, :, None] * centred[:, None, :]).sum(0)
    exact_centred = posterior.means - posterior.mean()
    cov_exact = (posterior.weights[:, None, None] * (posterior.covariances + exact_centred[:, :, None] * exact_centred[:, None, :])).sum(0)
    assert torch.allclose(cov_exact, cov_is, atol=6 * tol)
    # the evidence: p(y) = E_prior[N(y; A x, σ²)]
    log_norm = -0.5 * math.log(2 * math.pi * observe_x1.noise_std**2)
    evidence_is = float(torch.logsumexp(log_w, 0) - math.log(x.shape[0]) + log_norm)
    assert observe_x1.predictive(prior).log_prob(y[None])[0].item() == pytest.approx(evidence_is, abs=3 * tol)
    assert posterior.weights[0] < 1e-6  # the observation rules out component 0


def test_batched_posterior_rows_equal_single_posteriors(prior: GaussianMixturePrior, observe_x1: LinearMeasurement) -> None:
    ys = torch.tensor([[2.2], [-3.0], [0.0]], dtype=torch.float64)
    batched = exact_posterior(prior, observe_x1, ys)
    x = torch.randn(3, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    for i, y in enumerate(ys):
        single = exact_posterior(prior, observe_x1, y)
        assert torch.allclose(batched.weights[i], single.weights)
        assert torch.allclose(batched.log_prob(x)[i], single.log_prob(x[i : i + 1])[0])


def test_score_is_the_gradient_of_log_density_and_tweedie_is_exact_for_one_gaussian(prior: GaussianMixturePrior) -> None:
    x = torch.randn(7, 2, generator=torch.Generator().manual_seed(1), dtype=torch.float64).requires_grad_(True)
    (grad,) = torch.autograd.grad(prior.noised(0.3).log_prob(x).sum(), x)
    assert torch.allclose(prior.noisy_score(x.detach(), 0.3), grad, atol=1e-10)
    mu, cov = torch.tensor([1.0, -2.0], dtype=torch.float64), torch.tensor([[0.5, 0.2], [0.2, 0.8]], dtype=torch.float64)
    single = GaussianMixturePrior([1.0], mu[None], cov[None])
    a = 0.4
    x_t = x.detach()
    # E[x0 | x_t] for a Gaussian: μ + √ᾱ Σ (ᾱ Σ + (1−ᾱ) I)⁻¹ (x_t − √ᾱ μ)
    expected = mu + (math.sqrt(a) * cov @ torch.linalg.solve(a * cov + (1 - a) * torch.eye(2, dtype=torch.float64), (x_t - math.sqrt(a) * mu).T)).T
    assert torch.allclose(single.tweedie(x_t, a), expected, atol=1e-10)


def test_cosine_schedule_runs_from_clean_to_noise() -> None:
    alpha_bar = cosine_alpha_bar(1000)
    assert alpha_bar.shape == (1001,) and alpha_bar[0] == 1.0 and alpha_bar[-1] < 1e-6
    assert (alpha_bar[1:] < alpha_bar[:-1]).all()


def test_unguided_sampler_reproduces_prior_mode_weights(prior: GaussianMixturePrior, observe_x1: LinearMeasurement) -> None:
    n = 3000
    samples = sample_posterior(prior, observe_x1, [0.0], n, PosteriorSamplerConfig(guidance="none", steps=200), seed=0)
    report = diag.mode_weight_report(assign_modes(prior, samples.x[0]), prior.weights.numpy())
    assert report.tv < _mc_tolerance(prior.weights.numpy(), n)
    assert np.all(samples.kl == 0.0)  # no guidance, no KL


def test_exact_guidance_reproduces_posterior_mode_weights(prior: GaussianMixturePrior, observe_x1: LinearMeasurement) -> None:
    n, y = 3000, [2.2]
    samples = sample_posterior(prior, observe_x1, y, n, PosteriorSamplerConfig(guidance="exact", steps=200), seed=1)
    report = posterior_mode_report(prior, observe_x1, y, samples.x[0])
    assert 0.1 < report.reference[1] < 0.9 and 0.1 < report.reference[2] < 0.9  # two plausible modes
    assert report.tv < _mc_tolerance(report.reference, n)
    assert report.hallucination_rate < 0.005
    reference, _ = exact_posterior(prior, observe_x1, y).sample(n, generator=torch.Generator().manual_seed(2))
    assert diag.sliced_wasserstein1(samples.x[0], reference.numpy()) < 0.1


def test_dps_on_well_separated_modes_finds_the_observed_one() -> None:
    prior = GaussianMixturePrior([0.7, 0.3], [[-3.0, 0.0], [3.0, 1.0]], [np.eye(2) * 0.3, np.eye(2) * 0.3])
    measurement = LinearMeasurement([[1.0, 0.0]], 0.2)
    samples = sample_posterior(prior, measurement, [3.0], 1000, PosteriorSamplerConfig(guidance="dps", zeta=0.3, steps=200), seed=0)
    report = posterior_mode_report(prior, measurement, [3.0], samples.x[0])
    assert report.reference[1] > 0.999
    assert report.weights[1] > 0.9
    assert abs(samples.x[0][:, 0].mean() - 3.0) < 0.2


def test_kl_score_is_larger_for_measurements_no_mode_explains(prior: GaussianMixturePrior, observe_x1: LinearMeasurement) -> None:
    config = PosteriorSamplerConfig(guidance="exact", steps=100)
    y_in, _ = ood_measurements(prior, observe_x1, 30, "in_domain", seed=0)
    y_far, _ = ood_measurements(prior, observe_x1, 30, "far", seed=1)
    kl_in = sample_posterior(prior, observe_x1, y_in, 4, config, seed=2).kl_per_measurement()
    kl_far = sample_posterior(prior, observe_x1, y_far, 4, config, seed=2).kl_per_measurement()
    assert np.all(kl_in > 0)
    assert np.median(kl_far) > 2 * np.median(kl_in)
    assert diag.roc_auc(kl_in, kl_far) > 0.9


def test_sampling_is_deterministic_for_a_seed(prior: GaussianMixturePrior, observe_x1: LinearMeasurement) -> None:
    config = PosteriorSamplerConfig(guidance="dps", zeta=0.2, steps=20)
    first = sample_posterior(prior, observe_x1, [[2.2], [0.5]], 5, config, seed=7)
    again = sample_posterior(prior, observe_x1, [[2.2], [0.5]], 5, config, seed=7)
    other = sample_posterior(prior, observe_x1, [[2.2], [0.5]], 5, config, seed=8)
    assert first.x.shape == (2, 5, 2) and first.kl.shape == (2, 5)
    assert np.array_equal(first.x, again.x) and np.array_equal(first.kl, again.kl)
    assert not np.allclose(first.x, other.x)


def test_early_stopping_collapses_samples_towards_the_posterior_mean(prior: GaussianMixturePrior, observe_x1: LinearMeasurement) -> None:
    y = [2.2]
    reference, _ = exact_posterior(prior, observe_x1, y).sample(2000, generator=torch.Generator().manual_seed(0))
    config = PosteriorSamplerConfig(guidance="exact", steps=50)
    full, late = early_stopping_curve(prior, observe_x1, y, config, [0, 900], n=500, seed=0, reference=reference.numpy())
    assert full.stop_step == 0 and late.stop_step == 900
    assert late.mean_distance < 0.5 * full.mean_distance  # x̂0 at t = 900 is near E[x0 | y]
    assert late.sliced_w1 > full.sliced_w1
    assert late.mean_error < 0.2  # ... and still unbiased


def test_configs_reject_unknown_keys_and_bad_values() -> None:
    with pytest.raises(ValidationError, match="extra"):
        PosteriorSamplerConfig(guidanse="dps")
    for bad in ({"zeta": 0.0}, {"zeta": float("nan")}, {"stop_step": 1000}, {"steps": 2000}, {"timesteps": 1}, {"guidance": "tweedie"}):
        with pytest.raises(ValidationError):
            PosteriorSamplerConfig(**bad)
    with pytest.raises(UnknownComponentError, match="allowed: dps, dps_score, exact, none"):
        make_guidance("tweedie", None, None, None, 1.0)  # type: ignore[arg-type]


def test_bad_shapes_and_values_name_what_is_wrong(prior: GaussianMixturePrior) -> None:
    wrong = LinearMeasurement([[1.0, 0.0, 0.0]], 0.1)
    with pytest.raises(ToyProblemError, match=r"A has shape \(1, 3\).*d = 2"):
        exact_posterior(prior, wrong, [1.0])
    with pytest.raises(ToyProblemError, match=r"2-D \(m, d\), got shape \(2,\)"):
        LinearMeasurement([1.0, 0.0], 0.1)
    with pytest.raises(ToyProblemError, match="noise_std"):
        LinearMeasurement([[1.0, 0.0]], 0.0)
    with pytest.raises(ToyProblemError, match=r"m = 1.*got \(2,\)"):
        exact_posterior(prior, LinearMeasurement([[1.0, 0.0]], 0.1), [1.0, 2.0])
    with pytest.raises(ToyProblemError, match="sum to 1"):
        GaussianMixturePrior([0.5, 0.6], MEANS[:2], COVS[:2])
    with pytest.raises(ToyProblemError, match=r"means must be .*\(2, 2\)"):
        GaussianMixturePrior([0.5, 0.5], MEANS, COVS[:2])
    with pytest.raises(ToyProblemError, match="component\\(s\\) \\[1\\] is not positive definite"):
        GaussianMixturePrior([0.5, 0.5], MEANS[:2], [COVS[0], [[1.0, 2.0], [2.0, 1.0]]])
    with pytest.raises(ToyProblemError, match="n must be at least 1"):
        sample_posterior(prior, LinearMeasurement([[1.0, 0.0]], 0.1), [1.0], 0, PosteriorSamplerConfig(), seed=0)
    with pytest.raises(UnknownComponentError, match="allowed: far, in_domain, mixture"):
        ood_measurements(prior, LinearMeasurement([[1.0, 0.0]], 0.1), 3, "blend", seed=0)  # type: ignore[arg-type]


# ---- generic diagnostics (plain arrays) ----


def test_mode_weight_report_counts_hallucinated_modes() -> None:
    report = diag.mode_weight_report(np.array([0, 1, 1, 2, 2, 2, 2, 2, 2, 2]), np.array([0.0005, 0.3, 0.6995]))
    assert np.allclose(report.weights, [0.1, 0.2, 0.7])
    assert report.hallucination_rate == pytest.approx(0.1)
    assert report.tv == pytest.approx(diag.total_variation(report.weights, report.reference))
    with pytest.raises(CrystaloopError, match=r"labels must lie in \[0, 3\)"):
        diag.mode_weight_report(np.array([0, 3]), np.array([0.2, 0.3, 0.5]))


def test_sliced_w1_of_a_shifted_cloud_is_the_mean_projected_shift() -> None:
    cloud = np.random.default_rng(0).standard_normal((3000, 2))
    assert diag.sliced_wasserstein1(cloud, cloud) == 0.0
    # shifting by c moves every 1-D projection by |u·c|; E|cos θ| = 2/π on the circle
    assert diag.sliced_wasserstein1(cloud, cloud + [1.0, 0.0], projections=500) == pytest.approx(2 / math.pi, rel=0.05)


def test_coverage_curve_grows_with_samples_and_radius() -> None:
    distances = np.array([[0.5, 0.1, 2.0], [3.0, np.inf, 0.8], [np.nan, 5.0, 4.0]])
    curve = diag.coverage_curve(distances, [0.2, 1.0])
    # k = 1: only row 0 within 1.0; k = 2: row 0 within 0.2; k = 3: row 1 within 1.0 too
    assert np.allclose(curve.coverage, [[0, 1 / 3], [1 / 3, 1 / 3], [1 / 3, 2 / 3]])
    assert curve.at(3, 1) == pytest.approx(2 / 3)


def test_spread_calibration_ranks_wide_samplers_as_uncertain() -> None:
    rng = np.random.default_rng(0)
    truth = rng.standard_normal((200, 3))
    scale = rng.uniform(0.05, 2.0, 200)  # a calibrated sampler: spread and error share the scale
    samples = truth[:, None, :] + scale[:, None, None] * rng.standard_normal((200, 8, 3))
    result = diag.spread_calibration(samples, truth, [0.5])
    assert result.spearman > 0.5
    assert 0 < result.coverage.at(1) <= result.coverage.at(8) <= 1
    assert np.isnan(diag.spread_error_spearman(np.ones(2), np.ones(2)))


def test_roc_auc_agrees_with_the_rank_formula_and_its_extremes() -> None:
    rng = np.random.default_rng(1)
    inside, outside = rng.normal(0, 1, 300), rng.normal(1, 1, 200)
    assert diag.roc_auc(inside, outside) == pytest.approx(diag._rank_auc(inside, outside))
    assert diag.roc_auc(np.zeros(3), np.ones(3)) == 1.0
    assert diag._rank_auc(np.ones(3), np.ones(4)) == 0.5
