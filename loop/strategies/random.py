"""Random generate-and-screen: the baseline every benchmark compares against."""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

import numpy as np

from crystaloop.data.records import Condition
from crystaloop.loop.strategies.base import Pool, StrategySettings, StrategyState, propose_conditions

if TYPE_CHECKING:
    from crystaloop.loop.config import CampaignConfig

__all__ = ["RandomConfig", "RandomStrategy"]


class RandomConfig(StrategySettings):
    """``strategy: {kind: random}``: the common settings only (:class:`StrategySettings`)."""

    kind: Literal["random"] = "random"

    def build(self, campaign: CampaignConfig) -> RandomStrategy:
        return RandomStrategy(seed=campaign.seed)


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
