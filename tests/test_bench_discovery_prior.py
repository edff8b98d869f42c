"""bench_discovery's prior path: the ``-prior`` strategies and ``surrogate-greedy`` see the pool's
pretrained prior and nothing else does; surrogate-greedy screens by the prior alone."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def bench(monkeypatch: pytest.MonkeyPatch):  # noqa: ANN201 - the module
    if str(ROOT) not in sys.path:
        monkeypatch.syspath_prepend(str(ROOT))
    import benchmarks.bench_discovery as module

    return module


def _pool(bench, prior: dict[str, np.ndarray]):  # noqa: ANN001, ANN202 - a pool holding only a prior
    return bench.DiscoveryPool(crystals=[], values={}, features=np.zeros((0, 1)), oracle=None, generator=None, prior=prior)


def test_predictions_carry_the_prior_only_when_asked_and_only_for_its_property(bench) -> None:
    prior = np.array([[0.1, 0.01], [0.2, 0.02], [0.3, 0.03]])
    pool = _pool(bench, {"heat_all": prior})
    gap = bench.Objective(property="dir_gap", goal="maximise")
    out = pool.predictions([2, 0], (bench.STABILITY, gap), use_prior=True)
    assert out.shape == (2, 2, 2)
    np.testing.assert_allclose(out[:, 0], prior[[2, 0]])
    assert np.isnan(out[:, 1]).all(), "no prior for dir_gap"
    assert np.isnan(pool.predictions([0, 1], (bench.STABILITY,), use_prior=False)).all()


def test_only_prior_variants_and_surrogate_greedy_use_the_prior(bench) -> None:
    assert bench.uses_prior("al-prior") and bench.uses_prior("rl-prior") and bench.uses_prior("surrogate-greedy")
    assert not any(bench.uses_prior(name) for name in bench.STRATEGIES)


def test_surrogate_greedy_picks_the_lowest_predicted_heat_and_refuses_without_a_prior(bench) -> None:
    greedy = bench.PriorGreedy((bench.STABILITY,))
    means = np.array([0.9, -0.2, 0.4, -0.5, 0.0])
    predictions = np.stack([means, np.full(5, 0.1)], axis=-1)[:, None, :]
    assert greedy.select(list(range(5)), predictions, 2).tolist() == [1, 3]
    maximise = bench.PriorGreedy((bench.Objective(property="dir_gap", goal="maximise"),))
    assert maximise.select(list(range(5)), predictions, 2).tolist() == [0, 2]
    with pytest.raises(ValueError, match="needs the pool's prior"):
        greedy.select(list(range(5)), np.full((5, 1, 2), np.nan), 2)
