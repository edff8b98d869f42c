"""Discovery rate with a pretrained prior: hits per 100 replayed-DFT calls on the held-out perov_5/val, random vs screening vs the loop.

bench_discovery's stable campaign (a **hit** has DFT heat_all ≤ 0.5 eV; every measured structure
costs one replayed-label oracle call, the first ``initial`` ones included), run the way a user
with a shipped model runs it: the pool is ``perov_5/val`` only (757 ABX3 cells no shipped model
was trained on), and the ``-prior`` strategies get the shipped ``perov_5-heat_ref`` ensemble's
mean and std at every pool structure as the prior of the heat_all objective (trained on
``perov_5/train``; heat_ref and heat_all correlate at r = 0.97 on that split). The loop's residual
GP learns ``measured heat_all − prior`` from the campaign's own labels. Strategies:

* ``random`` (generate-and-screen at random, the reference) and the no-learning composition
  rules of bench_discovery (``rule-tolerance``, ``rule-electroneg``);
* ``surrogate-greedy``: the sceptic's baseline for a pretrained model: the lowest predicted
  heat first, the model never corrected by what the oracle measures (screening);
* ``al`` without a prior (as in bench_discovery), ``al-prior`` (UCB, β = 1, on prior + residual
  GP), ``rl-prior`` (PPO over anion chemistries picking by al, reward from the posterior).

Sizes are bench_discovery's (10 seeds, 10 initial + 20 per round from 200 generated; the budget
from the same power calculation on this pool's base rate; ``--quick``: 2 seeds × 30 calls).
Results resume from ``runs/bench/discovery/<sizes>/stable-val/``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence

import numpy as np

from benchmarks.bench_discovery import (
    FULL,
    QUICK,
    STABILITY,
    DiscoveryPool,
    anion_systems,
    campaign_rows,
    quiet_strategy_logs,
)

logger = logging.getLogger("crystaloop.benchmarks.discovery_prior")

CAMPAIGN = "stable-val"
POOL_SPLITS = ("perov_5/val",)
PRIOR_SURROGATE = "perov_5-heat_ref"
PRIOR_PROPERTY = "heat_ref"
STRATEGIES = ("random", "rule-tolerance", "rule-electroneg", "surrogate-greedy", "al", "al-prior", "rl-prior")
COMPARED_WITH_RULES = ("surrogate-greedy", "al", "al-prior", "rl-prior")


def prior_at(pool: DiscoveryPool, surrogate: str = PRIOR_SURROGATE, prop: str = PRIOR_PROPERTY) -> np.ndarray:
    """(n, 2) the shipped ``surrogate``'s predicted mean and std of ``prop`` (eV) at every pool crystal."""
    from crystaloop.surrogates.ensemble import PropertyEnsemble
    from crystaloop.surrogates.shipped import shipped_surrogate_path

    prediction = PropertyEnsemble.load(shipped_surrogate_path(surrogate)).predict(pool.crystals)
    column = prediction.properties.index(prop)
    return np.stack([prediction.mean[:, column], prediction.std[:, column]], axis=-1)


def run(quick: bool = False, strategies: Sequence[str] | None = None) -> list[dict]:
    """One row per strategy; see the module docstring."""
    quiet_strategy_logs()
    sizes = QUICK if quick else FULL
    cached_only = os.environ.get("CRYSTALOOP_DISCOVERY_CACHED_ONLY", "") == "1"
    pool = DiscoveryPool.load(POOL_SPLITS)
    pool.prior[STABILITY.property] = prior_at(pool)
    hits = pool.hits((STABILITY,))
    prior_mean = pool.prior[STABILITY.property][:, 0]
    logger.info("prior %s on %d pool crystals: r = %.3f with heat_all; %d hits", PRIOR_SURROGATE, len(pool.crystals),
                np.corrcoef(prior_mean, pool.values[STABILITY.property])[0, 1], int(hits.sum()))
    return campaign_rows(pool, CAMPAIGN, (STABILITY,), strategies or STRATEGIES, sizes, anion_systems(pool.crystals),
                         cached_only=cached_only, extra_settings={"pool": list(POOL_SPLITS), "prior": PRIOR_SURROGATE},
                         learning=COMPARED_WITH_RULES)


if __name__ == "__main__":
    from benchmarks.run_all import run_standalone

    run_standalone(run, __doc__, {"--strategies": {"nargs": "*", "default": None, "help": f"subset of {', '.join(STRATEGIES)}"}})
