"""Strategies behind one port (propose conditions, select picks): random, bo, al, rl.

Each strategy's config sits beside its code (:class:`RandomConfig`, :class:`BOConfig`,
:class:`ALConfig`, :class:`~crystaloop.loop.strategies.rl_config.RLConfig`, all extending
:class:`StrategySettings`) and builds it (``config.build(campaign)``). :data:`STRATEGY_CHOICES`
is the one list of kinds; :data:`StrategyChoice` their discriminated union, so ``beta`` on a
``random`` strategy or an unknown kind fails when the campaign file is read.

To add a strategy: a module here with the strategy (``propose``, ``select``) and its config class
(``kind: Literal["name"]`` and a ``build``), and one line in :data:`STRATEGY_CHOICES`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, TypeAlias

from crystaloop.data.kinds import kind_union
from crystaloop.loop.strategies.al import ALConfig, ALStrategy
from crystaloop.loop.strategies.base import (
    Labels,
    Pool,
    Strategy,
    StrategySettings,
    StrategyState,
    default_conditions,
    propose_conditions,
)
from crystaloop.loop.strategies.bo import BOConfig, BOStrategy
from crystaloop.loop.strategies.random import RandomConfig, RandomStrategy
from crystaloop.loop.strategies.rl_config import RLConfig

if TYPE_CHECKING:
    from crystaloop.loop.config import CampaignConfig

__all__ = [
    "Strategy",
    "StrategyState",
    "StrategySettings",
    "Pool",
    "Labels",
    "default_conditions",
    "propose_conditions",
    "RandomStrategy",
    "ALStrategy",
    "BOStrategy",
    "RandomConfig",
    "ALConfig",
    "BOConfig",
    "RLConfig",
    "STRATEGY_CHOICES",
    "StrategyChoice",
    "make_strategy",
]

STRATEGY_CHOICES: dict[str, type[RandomConfig] | type[BOConfig] | type[ALConfig] | type[RLConfig]] = {
    "random": RandomConfig,
    "bo": BOConfig,
    "al": ALConfig,
    "rl": RLConfig,
}
"""Strategy kind → its config class (``config.build(campaign)`` makes the strategy)."""
if TYPE_CHECKING:  # what the type checker sees of the union built below
    StrategyChoice: TypeAlias = RandomConfig | BOConfig | ALConfig | RLConfig
else:
    StrategyChoice = kind_union(STRATEGY_CHOICES, default="random")
"""A campaign's strategy config: the class :data:`STRATEGY_CHOICES` names for its ``kind``."""


def make_strategy(config: CampaignConfig) -> Strategy:
    """The strategy ``config.strategy`` describes."""
    return config.strategy.build(config)
