"""Multimodal: pattern simulation, describer and encoder throughput; retrieval recall@k vs baselines.

In one run, with torch on one thread:

* throughput (items/s, best of 3 on the first 200 structures of each shipped val split):
  ``simulate_patterns`` (pymatgen XRDCalculator + pseudo-Voigt on the 1701-point grid),
  ``describe`` (our describer), and the shipped fusion model's ``embed`` for structures, patterns
  and texts (texts include the frozen MiniLM forward);
* retrieval among all structures of each val split (``training.evaluate``): recall@1/5/10 of
  text→structure (the latent alone, and with the description's parsed constraints as a hard
  filter: :func:`crystaloop.multimodal.prompt.admissible_targets`), clean XRD→structure and augmented XRD→structure (the default
  ``AugmentConfig``, seed 1), beside the expected recall of a random ranking and of a
  composition-only ranker (same reduced formula first, random among equals);
* brute-force search latency: one query against 10⁵ random unit vectors of the model's width.

Run ``python -m benchmarks.bench_multimodal`` (``--quick``: 50 structures per throughput row and
the first 200 structures of each split for retrieval). Rows are returned and logged;
RESULTS.md is written by ``benchmarks/run_all``.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)

SPLITS = ("perov_5/val", "carbon_24/val")


def _best_rate(fn: Callable[[], Any], n: int, repeats: int = 3) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return n / best


def _throughput(model: Any, crystals: list) -> dict[str, float]:
    """Items per second of each step on ``crystals`` (best of 3; texts once, MiniLM being slow)."""
    from crystaloop.multimodal.describe import describe
    from crystaloop.multimodal.xrd import simulate_patterns

    patterns = simulate_patterns(crystals)
    texts = [describe(c) for c in crystals]
    model.embed("text", texts[:2])  # loads MiniLM outside the timing
    n = len(crystals)
    return {
        "simulate XRD patterns": _best_rate(lambda: simulate_patterns(crystals), n),
        "describe (own describer)": _best_rate(lambda: [describe(c) for c in crystals], n),
        "embed structures": _best_rate(lambda: model.embed("structure", crystals), n),
        "embed XRD patterns": _best_rate(lambda: model.embed("xrd", patterns), n),
        "embed texts (MiniLM + head)": _best_rate(lambda: model.embed("text", texts), n, repeats=1),
    }


def run(quick: bool = False) -> list[dict]:
    """Rows of ``benchmark``, ``dataset``, ``quantity`` and the measured values."""
    import torch

    from crystaloop.data.datasets import load_dataset
    from crystaloop.multimodal.fusion import load_checkpoint
    from crystaloop.multimodal.pretrained import shipped_checkpoint
    from crystaloop.multimodal.retrieval import EmbeddingIndex
    from crystaloop.multimodal.training import evaluate

    torch.set_num_threads(1)
    model, info = load_checkpoint(shipped_checkpoint())
    rows: list[dict] = []
    n_items = 50 if quick else 200
    for split in SPLITS:
        dataset = load_dataset(split)
        for what, rate in _throughput(model, dataset.crystals[:n_items]).items():
            rows.append(
                {"benchmark": "throughput", "dataset": split, "quantity": what, "value": rate, "unit": "items/s"}
            )
            logger.info("%s %s: %.1f /s", split, what, rate)
        evaluated = dataset.subset(np.arange(min(200, len(dataset)))) if quick else dataset
        metrics = evaluate(model, evaluated)
        for query in (
            "text_to_structure",
            "text_to_structure_constrained",
            "xrd_to_structure",
            "augmented_xrd_to_structure",
            "composition_only",
            "random",
        ):
            row = {"benchmark": "retrieval", "dataset": f"{split} (n={metrics['n']})", "quantity": query}
            row.update({k: metrics[query][k] for k in ("recall@1", "recall@5", "recall@10")})
            rows.append(row)
            logger.info("%s %s: %s", split, query, metrics[query])
    rng = np.random.default_rng(0)
    stored = rng.standard_normal((100_000, model.latent_dim)).astype(np.float32)
    index = EmbeddingIndex([str(i) for i in range(len(stored))], stored)
    query = rng.standard_normal(model.latent_dim)
    per_query = 1.0 / _best_rate(lambda: index.search(query, top=10), 1, repeats=5)
    rows.append(
        {
            "benchmark": "search",
            "dataset": "10^5 random vectors",
            "quantity": "brute-force top-10, one query",
            "value": 1000 * per_query,
            "unit": "ms",
        }
    )
    logger.info("checkpoint %s", info["checkpoint_hash"][:16])
    return rows


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    run(quick="--quick" in sys.argv[1:])
