"""GP head: exact and variational paths learn a smooth function and plug into botorch."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from crystaloop.data.errors import CrystaloopError
from crystaloop.surrogates.gp import GPHead, GPHeadConfig


def _smooth_problem(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    latent = rng.uniform(-2, 2, size=(n, 2))
    mixing = rng.normal(size=(2, 24))
    embeddings = latent @ mixing + 0.01 * rng.normal(size=(n, 24))  # 2 informative directions in 24-D
    y = np.sin(latent[:, 0]) + 0.5 * latent[:, 1] ** 2
    return embeddings, y


@pytest.mark.parametrize("exact", [True, False])
def test_gp_head_beats_the_mean_predictor(exact: bool) -> None:
    x, y = _smooth_problem(260, 0)
    config = GPHeadConfig(n_components=4) if exact else GPHeadConfig(n_components=4, max_exact=50, inducing_points=48, variational_steps=150)
    head = GPHead(config).fit(x[:200], y[:200])
    assert head.is_exact is exact
    mean, std = head.predict(x[200:])
    assert mean.shape == std.shape == (60, 1)
    mae = np.abs(mean[:, 0] - y[200:]).mean()
    baseline = np.abs(y[200:] - y[:200].mean()).mean()
    assert mae < 0.5 * baseline
    assert np.all(std > 0)


def test_gp_head_is_a_botorch_model_for_acquisition() -> None:
    from botorch.acquisition.logei import qLogNoisyExpectedImprovement

    x, y = _smooth_problem(80, 1)
    head = GPHead(GPHeadConfig(n_components=3)).fit(x[:60], y[:60])
    acquisition = qLogNoisyExpectedImprovement(head.model, X_baseline=head.features(x[:60]))
    values = acquisition(head.features(x[60:])[:, None, :])
    assert values.shape == (20,) and torch.isfinite(values).all()


def test_gp_head_drops_nan_targets_and_refuses_misuse() -> None:
    x, y = _smooth_problem(30, 2)
    y[:5] = np.nan
    head = GPHead(GPHeadConfig(n_components=3)).fit(x, y)
    assert head.model.train_inputs[0].shape[-2] == 25
    with pytest.raises(CrystaloopError, match="before fit"):
        GPHead().predict(x)
    with pytest.raises(CrystaloopError, match="at least 2"):
        GPHead().fit(x[:1], y[:1])


def test_fitting_leaves_torchs_global_random_stream_alone() -> None:
    import torch

    x, y = _smooth_problem(40, seed=1)
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    GPHead(GPHeadConfig(n_components=3, seed=7)).fit(x, y)
    assert torch.equal(torch.rand(3), expected)


@pytest.mark.parametrize("exact", [True, False])
def test_offset_columns_carry_a_group_shift_to_unlabelled_members(exact: bool) -> None:
    """A target = smooth(embedding) + 1.5 on group 2: with the indicator columns the head learns the
    shift from a few labelled members and applies it to unlabelled ones; without them it cannot."""
    rng = np.random.default_rng(3)
    x, smooth = _smooth_problem(240, 3)
    groups = (rng.random((240, 6)) < 0.3).astype(float)
    y = smooth + 1.5 * groups[:, 2]
    config = GPHeadConfig(n_components=4) if exact else GPHeadConfig(n_components=4, max_exact=50, inducing_points=64, variational_steps=200)
    with_offsets = GPHead(config).fit(x[:160], y[:160], offsets=groups[:160])
    without = GPHead(config).fit(x[:160], y[:160])
    mean, std = with_offsets.predict(x[160:], groups[160:])
    plain, _ = without.predict(x[160:])
    members = groups[160:, 2] == 1
    err_offsets = np.abs(mean[:, 0] - y[160:])
    err_plain = np.abs(plain[:, 0] - y[160:])
    assert err_offsets[members].mean() < 0.6 * err_plain[members].mean()
    assert err_offsets.mean() < err_plain.mean()
    assert np.all(std > 0)


def test_offset_columns_are_required_once_fitted_and_checked_for_shape() -> None:
    x, y = _smooth_problem(40, 4)
    groups = np.zeros((40, 3))
    groups[::2, 1] = 1.0
    head = GPHead(GPHeadConfig(n_components=3)).fit(x, y, offsets=groups)
    assert head.features(x, groups).shape == (40, 6)
    with pytest.raises(CrystaloopError, match="3 offset columns"):
        head.predict(x)
    with pytest.raises(ValueError, match=r"offsets must be \(n, g\)"):
        head.predict(x, groups[:, :2])
    with pytest.raises(ValueError, match="offsets must be"):
        GPHead().fit(x, y, offsets=groups[:10])


def test_an_unlabelled_group_keeps_its_prior_uncertainty() -> None:
    """A crystal in a group no label holds is less certain than one in a labelled group."""
    x, y = _smooth_problem(60, 5)
    groups = np.zeros((60, 2))
    groups[:, 0] = 1.0  # every label in group 0
    head = GPHead(GPHeadConfig(n_components=3)).fit(x, y + 0.5, offsets=groups)
    probe = x[:5]
    _, std_seen = head.predict(probe, np.tile([1.0, 0.0], (5, 1)))
    _, std_unseen = head.predict(probe, np.tile([1.0, 1.0], (5, 1)))
    assert np.all(std_unseen > std_seen)


def test_offset_columns_with_several_outputs_shift_each_output_by_its_own_amount() -> None:
    """Two targets, shifted +1 and −2 on group 0: one batched kernel per output learns both."""
    x, smooth = _smooth_problem(200, 6)
    groups = np.zeros((200, 2))
    groups[::3, 0] = 1.0
    y = np.column_stack([smooth + groups[:, 0], -smooth - 2.0 * groups[:, 0]])
    head = GPHead(GPHeadConfig(n_components=4)).fit(x[:150], y[:150], offsets=groups[:150])
    mean, std = head.predict(x[150:], groups[150:])
    assert mean.shape == std.shape == (50, 2)
    plain_mean, _ = GPHead(GPHeadConfig(n_components=4)).fit(x[:150], y[:150]).predict(x[150:])
    for column in range(2):
        assert np.abs(mean[:, column] - y[150:, column]).mean() < np.abs(plain_mean[:, column] - y[150:, column]).mean()
