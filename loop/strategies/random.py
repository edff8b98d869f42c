"""Random generate-and-screen: the baseline every benchmark compares against."""

from __future__ import annotations

import numpy as np

from crystaloop.data.records import Condition
from crystaloop.loop.strategies.base import Pool, StrategyState, propose_conditions

__all__ = ["RandomStrategy"]


class RandomStrategy:
    """Default conditions; ``k`` picks uniformly without replacement (seeded)."""

    name = "random"

    def __init__(self, seed: int = 0) -> None:
        self.seed = seed

    def propose(self, state: StrategyState) -> list[Condition]:
        return propose_conditions(state)

    def select(self, pool: Pool, predictions: np.ndarray, k: int) -> np.ndarray:
        rng = np.random.default_rng([self.seed, len(pool.labels), len(pool)])
        return np.sort(rng.choice(len(pool), size=min(k, len(pool)), replace=False))
