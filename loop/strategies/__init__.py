"""Strategies behind one port (propose conditions, select picks): random, bo, al, rl.

``make_strategy(config)`` resolves ``config.strategy.kind`` through :data:`STRATEGIES`, a plain
name → factory table; an unknown name raises with the valid ones.
"""

from __future__ import annotations

from collections.abc import Callable

from crystaloop.data.errors import UnknownComponentError
from crystaloop.loop.config import CampaignConfig
from crystaloop.loop.strategies.al import ALStrategy
from crystaloop.loop.strategies.base import (
    Labels,
    Pool,
    Strategy,
    StrategyState,
    default_conditions,
    propose_conditions,
)
from crystaloop.loop.strategies.bo import BOStrategy
from crystaloop.loop.strategies.random import RandomStrategy

__all__ = [
    "Strategy",
    "StrategyState",
    "Pool",
    "Labels",
    "default_conditions",
    "propose_conditions",
    "RandomStrategy",
    "ALStrategy",
    "BOStrategy",
    "STRATEGIES",
    "make_strategy",
]


def _rl(config: CampaignConfig) -> Strategy:
    from crystaloop.loop.strategies.rl import RLStrategy

    return RLStrategy(config)


STRATEGIES: dict[str, Callable[[CampaignConfig], Strategy]] = {
    "random": lambda c: RandomStrategy(seed=c.seed),
    "al": lambda c: ALStrategy(c.objectives, c.strategy, seed=c.seed),
    "bo": lambda c: BOStrategy(c.objectives, c.strategy, seed=c.seed),
    "rl": _rl,
}


def make_strategy(config: CampaignConfig) -> Strategy:
    """The strategy ``config.strategy.kind`` names."""
    kind = config.strategy.kind
    if kind not in STRATEGIES:
        raise UnknownComponentError("strategy", kind, STRATEGIES)
    return STRATEGIES[kind](config)
