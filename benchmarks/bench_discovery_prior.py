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

A second campaign, ``stable-val-wrong-prior``, is the same with the prior **wrong somewhere**:
at every crystal holding one of the three most frequent elements of the pool that no hit
contains (Zn, Ru, Ir on perov_5/val: 102 of the 757 cells, none a hit) the prior's mean is
planted 1.5 eV too low (too stable), its std unchanged, as a shipped model that extrapolates
badly to one corner of chemistry would be. Screening spends its calls there; the loop's
residual GP can learn the offset from the first labels it buys there. Its rows compare the
``-prior`` strategies with ``surrogate-greedy`` too (``vs_screening``). The strategies that
never see the prior (random, the rules, ``al``) are the first campaign's and are not rerun,
except ``random``, the reference of every ratio.

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
WRONG_CAMPAIGN = "stable-val-wrong-prior"
PLANTED_OFFSET = -1.5
"""eV added to the prior's mean heat in the planted region of the wrong-prior campaign (too stable)."""
PLANTED_ELEMENTS = 3
"""How many hit-free elements (most frequent first) make up the planted region."""
POOL_SPLITS = ("perov_5/val",)
PRIOR_SURROGATE = "perov_5-heat_ref"
PRIOR_PROPERTY = "heat_ref"
STRATEGIES = ("random", "rule-tolerance", "rule-electroneg", "surrogate-greedy", "al", "al-prior", "rl-prior")
WRONG_STRATEGIES = ("random", "surrogate-greedy", "al-prior", "rl-prior")
COMPARED_WITH_RULES = ("surrogate-greedy", "al", "al-prior", "rl-prior")


def prior_at(pool: DiscoveryPool, surrogate: str = PRIOR_SURROGATE, prop: str = PRIOR_PROPERTY) -> np.ndarray:
    """(n, 2) the shipped ``surrogate``'s predicted mean and std of ``prop`` (eV) at every pool crystal."""
    from crystaloop.surrogates.ensemble import PropertyEnsemble
    from crystaloop.surrogates.shipped import shipped_surrogate_path

    prediction = PropertyEnsemble.load(shipped_surrogate_path(surrogate)).predict(pool.crystals)
    column = prediction.properties.index(prop)
    return np.stack([prediction.mean[:, column], prediction.std[:, column]], axis=-1)


def planted_region(pool: DiscoveryPool, hits: np.ndarray, count: int = PLANTED_ELEMENTS) -> tuple[tuple[str, ...], np.ndarray]:
    """The ``count`` most frequent elements no hit contains (ties by symbol) and the (n,) mask of
    the pool crystals holding any of them."""
    from collections import Counter

    present = [set(c.elements) for c in pool.crystals]
    in_hits = set().union(*(p for p, h in zip(present, hits, strict=True) if h))
    frequency = Counter(el for p in present for el in p if el not in in_hits)
    elements = tuple(sorted(frequency, key=lambda el: (-frequency[el], el))[:count])
    mask = np.array([bool(p & set(elements)) for p in present])
    return elements, mask


def wrong_prior(prior: np.ndarray, mask: np.ndarray, offset: float = PLANTED_OFFSET) -> np.ndarray:
    """(n, 2) ``prior`` (mean, std in eV) with ``offset`` added to the mean where ``mask``; std kept."""
    planted = prior.copy()
    planted[mask, 0] += offset
    return planted


def run(quick: bool = False, strategies: Sequence[str] | None = None, campaigns: Sequence[str] | None = None) -> list[dict]:
    """One row per campaign and strategy; see the module docstring."""
    import dataclasses

    quiet_strategy_logs()
    sizes = QUICK if quick else FULL
    cached_only = os.environ.get("CRYSTALOOP_DISCOVERY_CACHED_ONLY", "") == "1"
    pool = DiscoveryPool.load(POOL_SPLITS)
    pool.prior[STABILITY.property] = prior_at(pool)
    hits = pool.hits((STABILITY,))
    prior_mean = pool.prior[STABILITY.property][:, 0]
    logger.info("prior %s on %d pool crystals: r = %.3f with heat_all; %d hits", PRIOR_SURROGATE, len(pool.crystals),
                np.corrcoef(prior_mean, pool.values[STABILITY.property])[0, 1], int(hits.sum()))
    systems = anion_systems(pool.crystals)
    rows = []
    if campaigns is None or CAMPAIGN in campaigns:
        rows += campaign_rows(pool, CAMPAIGN, (STABILITY,), strategies or STRATEGIES, sizes, systems,
                              cached_only=cached_only, extra_settings={"pool": list(POOL_SPLITS), "prior": PRIOR_SURROGATE},
                              learning=COMPARED_WITH_RULES)
    if campaigns is None or WRONG_CAMPAIGN in campaigns:
        elements, mask = planted_region(pool, hits)
        logger.info("wrong prior: mean %+.1f eV at the %d pool crystals holding %s (%d hits among them)",
                    PLANTED_OFFSET, int(mask.sum()), "/".join(elements), int(hits[mask].sum()))
        planted = dataclasses.replace(pool, prior={STABILITY.property: wrong_prior(pool.prior[STABILITY.property], mask)})
        chosen = [s for s in (strategies or WRONG_STRATEGIES) if s in WRONG_STRATEGIES]
        wrong = campaign_rows(planted, WRONG_CAMPAIGN, (STABILITY,), chosen, sizes, systems, cached_only=cached_only,
                              extra_settings={"pool": list(POOL_SPLITS), "prior": PRIOR_SURROGATE, "planted": list(elements),
                                              "offset": PLANTED_OFFSET},
                              learning=COMPARED_WITH_RULES, screening="surrogate-greedy")
        for row in wrong:
            row["planted"] = f"{'/'.join(elements)}: {int(mask.sum())} cells, mean {PLANTED_OFFSET:+.1f} eV"
        rows += wrong
    return rows


if __name__ == "__main__":
    from benchmarks.run_all import run_standalone

    run_standalone(run, __doc__, {"--strategies": {"nargs": "*", "default": None, "help": f"subset of {', '.join(STRATEGIES)}"},
                                  "--campaigns": {"nargs": "*", "default": None, "help": f"subset of {CAMPAIGN}, {WRONG_CAMPAIGN}"}})
