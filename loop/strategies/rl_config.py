"""`RLConfig`: the rl strategy's settings, apart from :mod:`.rl` so reading a campaign file does
not import stable-baselines3 (the policy loads when the strategy is built)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from pydantic import Field, model_validator

from crystaloop.loop.strategies.base import Strategy, StrategySettings

if TYPE_CHECKING:
    from crystaloop.loop.config import CampaignConfig

__all__ = ["RLConfig"]


class RLConfig(StrategySettings):
    """``strategy: {kind: rl, ...}``: a PPO policy over generation conditions; picks by al's rule.

    Attributes:
        acquisition, beta: how the generated pool is ranked for the oracle (as in
            :class:`~crystaloop.loop.strategies.al.ALConfig`).
        rl_steps: PPO environment steps per iteration.
        rl_target_offsets: target offsets the policy chooses among, as fractions of each
            objective's span (window width for ``target``, ``|threshold|`` for maximise/minimise);
            positive moves the target further in the goal's direction.
        rl_policy_dir: folder of the policy checkpoint ``<campaign name>.rl.pt`` (relative to the
            working directory); ``None`` keeps the policy in memory only.
    """

    kind: Literal["rl"] = "rl"
    acquisition: Literal["uncertainty", "ucb", "greedy"] = "ucb"
    beta: float = Field(1.0, ge=0)
    rl_steps: int = Field(64, gt=0)
    rl_target_offsets: tuple[float, ...] = Field((-0.25, 0.0, 0.25), min_length=1)
    rl_policy_dir: str | None = "runs/rl-policies"

    @model_validator(mode="after")
    def _own_conditions(self) -> RLConfig:
        if self.condition_search == "bo":
            raise ValueError("condition_search 'bo' is for random, bo and al; an rl policy chooses its own conditions")
        return self

    def build(self, campaign: CampaignConfig) -> Strategy:
        from crystaloop.loop.strategies.rl import RLStrategy

        return RLStrategy(campaign)
