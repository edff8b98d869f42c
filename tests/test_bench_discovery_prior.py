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
    return bench.DiscoveryPool(crystals=[], values={}, features=np.zeros((0, 1)), elements=np.zeros((0, 119)), oracle=None, generator=None, prior=prior)


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


def test_wrong_prior_plants_its_offset_only_in_the_hit_free_region(bench, monkeypatch: pytest.MonkeyPatch) -> None:
    """The planted region is the most frequent elements no hit holds; only there is the mean
    moved (by the stated offset), the std never."""
    import benchmarks.bench_discovery_prior as prior_bench
    from crystaloop.data.crystal import Crystal

    def cell(*symbols: str) -> Crystal:
        return Crystal.from_symbols(np.eye(3) * 4.0, np.random.default_rng(len(symbols)).random((len(symbols), 3)), list(symbols))

    crystals = [cell("Sr", "Ti", "O"), cell("Zn", "Ti", "O"), cell("Zn", "Ru", "O"), cell("Ru", "Ba", "O"), cell("Ba", "Ti", "O")]
    pool = bench.DiscoveryPool(crystals=crystals, values={}, features=np.zeros((5, 1)), elements=np.zeros((5, 119)), oracle=None, generator=None)
    hits = np.array([True, False, False, False, True])  # Sr, Ti, O, Ba appear in hits; Zn and Ru never do
    elements, mask = prior_bench.planted_region(pool, hits, count=2)
    assert elements == ("Ru", "Zn") and mask.tolist() == [False, True, True, True, False]
    assert prior_bench.planted_region(pool, hits, count=1)[0] == ("Ru",)  # ties broken by symbol
    prior = np.array([[0.5, 0.1], [0.6, 0.2], [0.7, 0.3], [0.8, 0.4], [0.9, 0.5]])
    planted = prior_bench.wrong_prior(prior, mask, offset=-1.5)
    np.testing.assert_allclose(planted[:, 1], prior[:, 1])
    np.testing.assert_allclose(planted[:, 0] - prior[:, 0], [0.0, -1.5, -1.5, -1.5, 0.0])
    assert prior[1, 0] == 0.6, "the prior it was given is not changed"


def test_screening_column_compares_the_loop_with_surrogate_greedy(bench, monkeypatch: pytest.MonkeyPatch) -> None:
    """campaign_rows(screening=...) adds the paired comparison with the screening strategy to the
    learning strategies' rows, and a dash elsewhere."""
    rates = {"random": [1.0, 2.0, 3.0], "surrogate-greedy": [2.0, 2.0, 2.0], "al-prior": [6.0, 8.0, 7.0]}

    def fake_result(pool, campaign, strategy, seed, sizes, calls, systems, hits, **_):  # noqa: ANN001, ANN202
        return {"hits": rates[strategy][seed], "calls": 100, "seconds": 1.0}

    monkeypatch.setattr(bench, "campaign_result", fake_result)
    monkeypatch.setattr(bench, "_budget", lambda base_rate, sizes: (300, 100))
    pool = bench.DiscoveryPool(crystals=[None, None], values={"heat_all": np.array([0.1, 0.9])}, features=np.zeros((2, 1)), elements=np.zeros((2, 119)), oracle=None, generator=None)
    sizes = bench.Sizes("t", seeds=(0, 1, 2), initial=10, batch=10, generated=50, min_calls=30)
    rows = {r["strategy"]: r for r in bench.campaign_rows(pool, "c", (bench.STABILITY,), list(rates), sizes, (("O",),),
                                                          learning=("surrogate-greedy", "al-prior"), screening="surrogate-greedy")}
    assert rows["al-prior"]["vs_screening"].startswith("3.50 ")
    assert rows["surrogate-greedy"]["vs_screening"] == "-" and rows["random"]["vs_screening"] == "-"
