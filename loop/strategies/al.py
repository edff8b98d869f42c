"""Active learning: spend oracle calls where the online surrogate is most uncertain or most
promising, retraining (the residual GP, :mod:`.posterior`) every round.

Scores per candidate, with utilities u and stds s scaled per objective (:mod:`crystaloop.loop.objectives`)
and summed with the objective weights: ``uncertainty`` → Σ w s; ``ucb`` → Σ w (u + β s), β the
configured beta times the pool's ``exploration`` (the collapse monitor's factor); ``greedy`` → Σ w u. The top ``k`` are picked (ties by pool order).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Literal

import numpy as np
from pydantic import Field

from crystaloop.data.records import Condition
from crystaloop.loop.objectives import utilities, utility_scales
from crystaloop.loop.strategies.base import Pool, StrategySettings, StrategyState, propose_conditions
from crystaloop.loop.strategies.posterior import ResidualGP, pool_elements

if TYPE_CHECKING:
    from crystaloop.loop.config import CampaignConfig, Objective

__all__ = ["ALConfig", "ALStrategy"]


class ALConfig(StrategySettings):
    """``strategy: {kind: al, ...}``.

    Attributes:
        acquisition: ``uncertainty`` (largest std), ``ucb`` (mean + beta·std) or ``greedy`` (mean).
        beta: exploration weight of ``ucb`` (utility-scaled units).
    """

    kind: Literal["al"] = "al"
    acquisition: Literal["uncertainty", "ucb", "greedy"] = "ucb"
    beta: float = Field(1.0, ge=0)

    def build(self, campaign: CampaignConfig) -> ALStrategy:
        return ALStrategy(campaign.objectives, self, seed=campaign.seed)

    @classmethod
    def ranking(cls, settings: StrategySettings, *, acquisition: Literal["uncertainty", "ucb", "greedy"], beta: float) -> ALConfig:
        """AL's pick rule with another strategy's common settings (bo's fallback, rl's picks)."""
        return cls(**settings.model_dump(include=set(StrategySettings.model_fields)), acquisition=acquisition, beta=beta)


class ALStrategy:
    """See the module docstring."""

    name = "al"

    def __init__(self, objectives: Sequence[Objective], config: ALConfig | None = None, seed: int = 0) -> None:
        self.objectives = tuple(objectives)
        self.config = config or ALConfig()
        self.seed = seed

    def propose(self, state: StrategyState) -> list[Condition]:
        return propose_conditions(state)

    def scores(self, pool: Pool, predictions: np.ndarray) -> np.ndarray:
        """(n,) acquisition scores (higher first); NaN-free."""
        gp = ResidualGP.for_strategy(self.config, self.seed).fit(pool.labels)
        mean, std = gp.posterior(pool.embeddings, predictions[..., 0], predictions[..., 1], pool_elements(gp, pool))
        scales = utility_scales(mean, self.objectives)
        u = np.nan_to_num(utilities(mean, self.objectives) / scales, nan=0.0)
        s = np.nan_to_num(std / scales, nan=0.0)
        weights = np.array([o.weight for o in self.objectives])
        if self.config.acquisition == "uncertainty":
            return s @ weights
        if self.config.acquisition == "greedy":
            return u @ weights
        return (u + self.config.beta * pool.exploration * s) @ weights

    def select(self, pool: Pool, predictions: np.ndarray, k: int) -> np.ndarray:
        if len(pool) == 0:
            return np.zeros(0, dtype=np.int64)
        order = np.argsort(-self.scores(pool, predictions), kind="stable")
        return np.sort(order[: min(k, len(pool))])
