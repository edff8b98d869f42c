"""Strategies on a synthetic pool: distinct picks, determinism, better than random, pending points."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from crystaloop.data.records import Candidate, Provenance
from crystaloop.data.store.testing import base_cells
from crystaloop.loop.config import CampaignConfig, Objective
from crystaloop.loop.strategies import (
    ALConfig,
    ALStrategy,
    BOConfig,
    BOStrategy,
    Labels,
    Pool,
    RandomStrategy,
    StrategyState,
    make_strategy,
)

torch.set_num_threads(1)
MAX = (Objective(property="y", goal="maximise"),)


def synthetic(n: int = 120, n_labels: int = 8, seed: int = 0, m: int = 1):
    """Embeddings (n, 6); truth y = sin/linear mix; prior = truth + noise (a decent surrogate)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n + n_labels, 6))
    truth = np.column_stack([np.sin(x[:, 0]) + 0.5 * x[:, 1], -(x[:, 2] ** 2)][:m])
    prior = truth + rng.normal(0, 0.5, size=truth.shape)
    cell = base_cells()["NaCl"]
    candidates = [Candidate(crystal=cell, provenance=Provenance(component="t"))] * n
    labels = Labels(x[n:], truth[n:], prior[n:])
    pool = Pool(candidates, x[:n], labels)
    predictions = np.stack([prior[:n], np.full_like(prior[:n], 0.5)], axis=-1)
    return pool, predictions, truth[:n]


@pytest.mark.parametrize("strategy", [RandomStrategy(seed=1), ALStrategy(MAX), BOStrategy(MAX, BOConfig(mc_samples=32))], ids=lambda s: s.name)
def test_select_distinct_and_deterministic(strategy):
    pool, predictions, _ = synthetic()
    first = strategy.select(pool, predictions, 5)
    assert len(first) == 5 and len(set(first.tolist())) == 5
    assert first.min() >= 0 and first.max() < len(pool)
    np.testing.assert_array_equal(first, strategy.select(pool, predictions, 5))


def test_informed_strategies_beat_random_on_average():
    gains = {"random": [], "al": [], "bo": []}
    for seed in range(4):
        pool, predictions, truth = synthetic(seed=seed)
        for strategy in (RandomStrategy(seed=seed), ALStrategy(MAX, ALConfig(acquisition="greedy")), BOStrategy(MAX, BOConfig(mc_samples=32))):
            picks = strategy.select(pool, predictions, 5)
            gains[strategy.name].append(truth[picks, 0].mean())
    assert np.mean(gains["al"]) > np.mean(gains["random"]) + 0.3
    assert np.mean(gains["bo"]) > np.mean(gains["random"]) + 0.3


def test_al_uncertainty_picks_largest_std():
    pool, predictions, _ = synthetic(n_labels=0)
    predictions[:, 0, 1] = np.linspace(0.1, 1.0, len(pool))
    picks = ALStrategy(MAX, ALConfig(acquisition="uncertainty")).select(pool, predictions, 3)
    assert picks.tolist() == [len(pool) - 3, len(pool) - 2, len(pool) - 1]


def test_bo_pending_points_change_the_batch():
    pool, predictions, _ = synthetic()
    bo = BOStrategy(MAX, BOConfig(mc_samples=32))
    alone = bo.select(pool, predictions, 1)
    pool.pending = pool.embeddings[alone]
    pool.pending_prior = predictions[alone, :, 0]
    with_pending = bo.select(pool, predictions, 1)
    assert with_pending.tolist() != alone.tolist()


def test_bo_multi_objective_hypervolume():
    objectives = (Objective(property="a", goal="maximise"), Objective(property="b", goal="target", window=(-0.5, 0.0)))
    pool, predictions, truth = synthetic(m=2, n_labels=10)
    picks = BOStrategy(objectives, BOConfig(mc_samples=16)).select(pool, predictions, 4)
    assert len(set(picks.tolist())) == 4


def test_registry_and_conditions():
    config = CampaignConfig.model_validate(
        {
            "name": "t",
            "objectives": [{"property": "dir_gap", "goal": "target", "window": [1.5, 3.0]}],
            "constraints": {"chemical_systems": ["Sr-Ti-O", "Ba-Ti-O"]},
            "strategy": {"kind": "al", "guidance_scales": [1.0, 2.0]},
        }
    )
    strategy = make_strategy(config)
    assert strategy.name == "al"
    conditions = strategy.propose(StrategyState(config, iteration=0, seed=0, n_conditions=4))
    assert {frozenset(c.chemical_system) for c in conditions} == {frozenset({"Sr", "Ti", "O"}), frozenset({"Ba", "Ti", "O"})}
    assert {c.guidance_scale for c in conditions} == {1.0, 2.0}
    assert all(c.properties == {"dir_gap": 2.25} for c in conditions)


def test_bo_selection_leaves_torchs_global_random_stream_alone():
    import torch

    pool, predictions, _ = synthetic()
    torch.manual_seed(5)
    expected = torch.rand(3)
    torch.manual_seed(5)
    BOStrategy(MAX, BOConfig(mc_samples=16)).select(pool, predictions, 2)
    assert torch.equal(torch.rand(3), expected)
