"""Pool-based benchmark of the loop's strategies on perov_5 labels (the enhancement factor).

Pool: the held-out development split ``perov_5/val`` (757 structures the shipped surrogates
never saw in training). Oracle: the dataset's DFT values, replayed. Objectives, one campaign each:
minimise ``heat_ref`` (formation heat, eV) and maximise ``dir_gap`` (direct band gap, eV), the
prior from the shipped ``perov_5-<target>`` ensemble, whose embeddings feed the GP heads. Every seed starts from the same ``INITIAL`` random labels for all
strategies, then spends ``BATCH`` oracle calls per round up to ``CALLS``; reported is the fraction
of the pool's top 1 % found after N calls, mean ± std over seeds, for random,
al (UCB, β = 1) and bo (qLogNoisyEI on the residual GP), all in one run, plus the enhancement
factor (strategy / random) at the largest N.

Run ``python -m benchmarks.bench_loop_pool`` (``--quick``: 2 seeds, 30 calls).
"""

from __future__ import annotations

import logging
import time

import numpy as np
import torch

from crystaloop.data.datasets import load_dataset
from crystaloop.data.records import Candidate, Provenance
from crystaloop.loop.config import Objective
from crystaloop.loop.strategies import ALConfig, ALStrategy, BOConfig, BOStrategy, Labels, Pool, RandomStrategy
from crystaloop.surrogates.ensemble import PropertyEnsemble
from crystaloop.surrogates.shipped import shipped_surrogate_path

logger = logging.getLogger("crystaloop.benchmarks.loop_pool")

TARGETS = {"heat_ref": "minimise", "dir_gap": "maximise"}
INITIAL = 5
BATCH = 5
CHECKPOINTS = (10, 20, 30, 50, 100)


def _strategies(seed: int, objectives: tuple[Objective, ...]) -> dict:
    return {
        "random": RandomStrategy(seed=seed),
        "al": ALStrategy(objectives, ALConfig(acquisition="ucb", beta=1.0, min_labels=4), seed=seed),
        "bo": BOStrategy(objectives, BOConfig(mc_samples=64, min_labels=4), seed=seed),
    }


def _campaign(strategy, embeddings: np.ndarray, prior: np.ndarray, truth: np.ndarray, initial: np.ndarray, calls: int, candidates: list) -> list[int]:  # noqa: ANN001
    labelled = list(initial)
    while len(labelled) < calls:
        rest = np.setdiff1d(np.arange(len(truth)), labelled)
        labels = Labels(embeddings[labelled], truth[labelled][:, None], prior[labelled, None, 0])
        pool = Pool([candidates[i] for i in rest], embeddings[rest], labels)
        picks = strategy.select(pool, prior[rest][:, None, :], min(BATCH, calls - len(labelled)))
        labelled.extend(int(rest[i]) for i in picks)
    return labelled


def run(quick: bool = False) -> list[dict]:
    torch.set_num_threads(1)
    dataset = load_dataset("perov_5/val")
    return [row for target, goal in TARGETS.items() for row in _run_target(dataset, target, goal, quick)]


def _run_target(dataset, TARGET: str, goal: str, quick: bool) -> list[dict]:  # noqa: ANN001, N803
    seeds = range(2 if quick else 5)
    calls = 30 if quick else max(CHECKPOINTS)
    truth = np.asarray(dataset.properties[TARGET], dtype=np.float64)
    keep = np.flatnonzero(np.isfinite(truth))
    crystals = [dataset.crystals[i] for i in keep]
    truth = truth[keep]
    ensemble = PropertyEnsemble.load(shipped_surrogate_path(f"perov_5-{TARGET}"))
    prediction = ensemble.predict(crystals)
    prior = np.stack([prediction.mean[:, 0], prediction.std[:, 0]], axis=-1)  # (n, 2)
    embeddings = ensemble.embed(crystals)
    n_top = max(1, int(round(0.01 * len(truth))))
    ranking = np.argsort(truth if goal == "minimise" else -truth, kind="stable")
    top = set(ranking[:n_top].tolist())
    candidates = [Candidate(crystal=c, provenance=Provenance(component="perov_5/val")) for c in crystals]
    objectives = (Objective(property=TARGET, goal=goal, units="eV"),)
    found: dict[str, list[list[float]]] = {}
    seconds: dict[str, float] = {}
    checkpoints = [c for c in CHECKPOINTS if c <= calls]
    for seed in seeds:
        initial = np.random.default_rng(seed).choice(len(truth), size=INITIAL, replace=False)
        for name, strategy in _strategies(seed, objectives).items():
            started = time.perf_counter()
            order = _campaign(strategy, embeddings, prior, truth, initial, calls, candidates)
            seconds[name] = seconds.get(name, 0.0) + time.perf_counter() - started
            found.setdefault(name, []).append([len(top & set(order[:c])) / n_top for c in checkpoints])
            logger.info("seed %d %s: %s", seed, name, found[name][-1])
    rows = []
    baseline = np.mean(found["random"], axis=0)
    for name, runs in found.items():
        runs_array = np.asarray(runs)
        row: dict = {"target": f"{goal} {TARGET}", "strategy": name, "pool": len(truth), "top_1pct": n_top, "seeds": len(runs)}
        for j, c in enumerate(checkpoints):
            row[f"found@{c}"] = f"{runs_array[:, j].mean():.2f} ± {runs_array[:, j].std():.2f}"
        row["enhancement@max"] = float(runs_array[:, -1].mean() / baseline[-1]) if baseline[-1] > 0 else float("inf")
        row["s_per_campaign"] = seconds[name] / len(runs)
        rows.append(row)
    return rows


if __name__ == "__main__":
    from benchmarks.run_all import run_standalone

    run_standalone(run, __doc__)
