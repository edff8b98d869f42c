"""Brute-force cosine index and the retrieval metrics (against hand-checkable cases)."""

from __future__ import annotations

import numpy as np
import pytest

from crystaloop.data.errors import QueryError
from crystaloop.multimodal.retrieval import EmbeddingIndex, composition_baseline_recall, random_recall, recall_at_k


def _unit(rng: np.random.Generator, n: int, d: int) -> np.ndarray:
    x = rng.standard_normal((n, d))
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_index_returns_the_stored_vector_first_and_orders_by_cosine() -> None:
    rng = np.random.default_rng(0)
    stored = _unit(rng, 50, 16)
    index = EmbeddingIndex([f"c{i}" for i in range(50)], stored * rng.uniform(0.5, 2.0, (50, 1)))  # norms ignored
    for i in (0, 17, 49):
        hits = index.search(stored[i] + 0.01 * rng.standard_normal(16), top=5)[0]
        assert hits[0].key == f"c{i}" and hits[0].score > 0.99
        scores = [h.score for h in hits]
        assert scores == sorted(scores, reverse=True)
        expected = np.sort(stored @ (stored[i] / np.linalg.norm(stored[i])))[::-1][1]
        assert hits[1].score == pytest.approx(expected, abs=0.05)
    assert len(index.search(stored[:3], top=100)[2]) == 50


def test_index_refuses_bad_input() -> None:
    with pytest.raises(QueryError, match="one embedding row per key"):
        EmbeddingIndex(["a"], np.ones((2, 4)))
    with pytest.raises(QueryError, match="'b' is zero"):
        EmbeddingIndex(["a", "b"], np.array([[1.0, 0], [0, 0]]))
    index = EmbeddingIndex(["a"], np.ones((1, 4)))
    with pytest.raises(QueryError, match="index width 4"):
        index.search(np.ones(3))
    with pytest.raises(QueryError, match="at least 1"):
        index.search(np.ones(4), top=0)


def test_recall_is_one_for_identical_views_and_near_random_for_unrelated() -> None:
    rng = np.random.default_rng(1)
    targets = _unit(rng, 200, 32)
    perfect = recall_at_k(targets, targets)
    assert perfect["recall@1"] == 1.0 and perfect["mean_rank"] == 1.0
    unrelated = recall_at_k(_unit(rng, 200, 32), targets)
    assert unrelated["recall@10"] < 0.15 and random_recall(200)["recall@10"] == 0.05
    swapped = targets.copy()
    swapped[[0, 1]] = swapped[[1, 0]]  # queries 0 and 1 now point at each other's target
    assert recall_at_k(swapped, targets)["recall@1"] == pytest.approx(198 / 200)


def test_composition_baseline_counts_formula_ties() -> None:
    formulas = ["C"] * 10 + ["SrTiO3", "BaTiO3"]
    baseline = composition_baseline_recall(formulas, ks=(1, 5))
    assert baseline["recall@1"] == pytest.approx((10 * 0.1 + 2) / 12)
    assert baseline["recall@5"] == pytest.approx((10 * 0.5 + 2) / 12)


def test_stated_constraints_rank_admitted_targets_first() -> None:
    """Unrelated latents: recall is near random; with each query admitting only its own formula,
    the own target ranks within the structures of that formula, and the mask never admits a
    structure that lacks a named element."""
    from crystaloop.data.crystal import Crystal
    from crystaloop.multimodal.prompt import admissible_targets, parse_prompt

    cubic = np.eye(3) * 4.0
    formulas = [("Sr", "Ti", "O"), ("Ba", "Ti", "O"), ("Ca", "Zr", "O"), ("Sr", "Zr", "O")]
    crystals = [Crystal.from_symbols(cubic, [[0, 0, 0], [0.5, 0.5, 0.5], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]],
                                     [a, b, o, o, o]) for a, b, o in formulas]
    prompts = [parse_prompt(f"cubic perovskite {a}{b}{o}3") for a, b, o in formulas]
    mask = admissible_targets(prompts, crystals)
    assert (mask == np.eye(4, dtype=bool)).all()
    only_ti = admissible_targets([parse_prompt("a titanium oxide")], crystals)[0]
    assert only_ti.tolist() == ["Ti" in c.composition for c in crystals]
    rng = np.random.default_rng(0)
    queries, targets = rng.standard_normal((4, 8)), rng.standard_normal((4, 8))
    assert recall_at_k(queries, targets, ks=(1,), admissible=mask)["recall@1"] == 1.0
    with pytest.raises(QueryError, match="admissible"):
        recall_at_k(queries, targets, admissible=mask[:2])
