"""The latent prior on a toy latent distribution, its checkpoint round trip and its input checks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from crystaloop.data.errors import CrystaloopError
from crystaloop.multimodal.prior import CONDITIONS, LatentPrior, PriorConfig, load_prior, save_prior
from crystaloop.multimodal.prior_training import PriorPairs, fit_prior

# two conditions in 2-D: "left" maps to a bimodal mixture (weights 0.3 / 0.7 at x = ∓2), "up" to one mode at (0, 2)
LEFT, UP = np.array([1.0, 0.0], dtype=np.float32), np.array([0.0, 1.0], dtype=np.float32)
MODES = np.array([[-2.0, 0.0], [2.0, 0.0]], dtype=np.float32)
WEIGHTS = (0.3, 0.7)
SPREAD = 0.15


def _toy_pairs(n: int, rng: np.random.Generator) -> PriorPairs:
    which = rng.random(n) < WEIGHTS[1]
    left = MODES[which.astype(int)] + SPREAD * rng.standard_normal((n, 2)).astype(np.float32)
    up = np.array([0.0, 2.0], dtype=np.float32) + SPREAD * rng.standard_normal((n, 2)).astype(np.float32)
    targets = np.concatenate([left, up]).astype(np.float32)
    conditions = np.concatenate([np.tile(LEFT, (n, 1)), np.tile(UP, (n, 1))])
    # the toy uses the "xrd" token for both conditions: the condition vector alone must tell them apart
    modality = np.full(2 * n, CONDITIONS.index("xrd"))
    return PriorPairs(targets, conditions, np.arange(2 * n), modality, data_hash="toy")


@pytest.fixture(scope="module")
def toy_prior() -> LatentPrior:
    torch.manual_seed(0)
    prior = LatentPrior(PriorConfig(latent_dim=2, hidden=64, blocks=2, time_features=16, unit_sphere=False))
    fit_prior(prior, _toy_pairs(1000, np.random.default_rng(0)), epochs=50, batch_size=250, lr=3e-3, seed=0)
    return prior


def test_samples_recover_the_bimodal_target_of_one_condition_and_the_single_mode_of_the_other(toy_prior: LatentPrior) -> None:
    left = toy_prior.sample(LEFT, "xrd", 1000, seed=1, steps=32)
    near = np.linalg.norm(left[:, None, :] - MODES[None], axis=-1)
    assignment = near.argmin(axis=1)
    assert (near.min(axis=1) < 1.0).mean() > 0.95  # samples sit on the modes, not between them
    share_right = (assignment == 1).mean()
    assert abs(share_right - WEIGHTS[1]) < 0.08
    for mode in (0, 1):
        mean = left[assignment == mode].mean(axis=0)
        assert np.linalg.norm(mean - MODES[mode]) < 0.25
    up = toy_prior.sample(UP, "xrd", 500, seed=2, steps=32)
    assert np.linalg.norm(up.mean(axis=0) - np.array([0.0, 2.0])) < 0.25
    assert (np.linalg.norm(up - np.array([0.0, 2.0]), axis=1) < 1.0).mean() > 0.95


def test_sampling_is_seeded_and_the_checkpoint_round_trips(toy_prior: LatentPrior, tmp_path: Path) -> None:
    a = toy_prior.sample(LEFT, "xrd", 16, seed=5)
    np.testing.assert_array_equal(a, toy_prior.sample(LEFT, "xrd", 16, seed=5))
    assert not np.allclose(a, toy_prior.sample(LEFT, "xrd", 16, seed=6))
    toy_prior.metadata = {"data_hash": "toy"}
    loaded, info = load_prior(save_prior(toy_prior, tmp_path / "prior.pt"))
    np.testing.assert_array_equal(loaded.sample(LEFT, "xrd", 16, seed=5), a)
    assert info["metadata"]["data_hash"] == "toy" and info["config"]["latent_dim"] == 2 and len(info["checkpoint_hash"]) == 64


def test_unit_sphere_samples_are_unit_vectors_and_bad_inputs_are_refused(tmp_path: Path) -> None:
    prior = LatentPrior(PriorConfig(latent_dim=8, hidden=8, blocks=1, time_features=4))
    samples = prior.sample(np.ones(8) / np.sqrt(8), "text", 5, seed=0, steps=2)
    np.testing.assert_allclose(np.linalg.norm(samples, axis=1), 1.0, atol=1e-5)
    with pytest.raises(CrystaloopError, match="one of text, xrd"):
        prior.sample(np.ones(8), "structure", 2, seed=0)
    with pytest.raises(CrystaloopError, match="rows of 8 finite numbers"):
        prior.sample(np.ones(5), "text", 2, seed=0)
    with pytest.raises(CrystaloopError, match="n ≥ 1"):
        prior.sample(np.ones(8), "text", 0, seed=0)
    other = tmp_path / "other.pt"
    torch.save({"format": "something else"}, other)
    with pytest.raises(CrystaloopError, match="not a latent prior checkpoint"):
        load_prior(other)
    with pytest.raises(CrystaloopError, match="no latent prior checkpoint"):
        load_prior(tmp_path / "missing.pt")
