"""Collapse monitor: watches each iteration's batch diversity and widens the next iteration's search.

After every iteration :func:`assess` reads the batch's diversity summary
(:func:`~crystaloop.loop.guards.diversity.collapse_report`) and calls the batch **collapsed** when

* its *distinct fraction* (sampled crystals that were neither exact repeats nor duplicates or
  near-duplicates of the campaign's structures) is below ``min_distinct_fraction``, or
* its *Vendi fraction* (Vendi score of the fingerprints over the batch size, 1 = all unlike)
  is below ``min_vendi_fraction``.

The monitor keeps a level L: one up per collapsed iteration, one down per diverse one, within
[0, ``max_level``]. The :class:`Adjustment` of level L is what the next iteration does
differently:

* selection explores more: UCB's beta × ``beta_growth``^L (al, and bo before its GP is fitted)
  and a fraction ``min(random_fraction_step · L, max_random_fraction)`` of the oracle picks
  drawn uniformly at random from the guarded pool (every strategy);
* generation widens: guidance scales × ``guidance_decay``^L and a fraction
  ``min(drop_target_step · L, 0.5)`` of the conditions sample without property targets
  (strategies that build conditions with
  :func:`~crystaloop.loop.strategies.base.default_conditions`; an rl policy chooses its own).

Both the verdict (:class:`CollapseStatus`, with the next adjustment) and the adjustment an
iteration ran with are fields of its report in the store, so a resumed campaign continues with
the same settings.
"""

from __future__ import annotations

from collections.abc import Sequence

from pydantic import BaseModel, ConfigDict, Field

from crystaloop.data.records import Condition

__all__ = ["CollapseMonitorConfig", "Adjustment", "CollapseStatus", "adjustment_for", "assess", "widen_conditions", "exploration_picks"]


class CollapseMonitorConfig(BaseModel):
    """The collapse monitor (:mod:`crystaloop.loop.collapse`): when to call a batch collapsed and
    how far each collapsed iteration widens the next one's search (level L = consecutive
    collapses, one step back down per diverse iteration, at most ``max_level``).

    Attributes:
        min_distinct_fraction: collapsed below this fraction of sampled crystals that were
            neither duplicates nor near-duplicates of the campaign's structures.
        min_vendi_fraction: collapsed below this Vendi score (fingerprints) over batch size.
        beta_growth: UCB exploration weight multiplied by ``beta_growth ** L``.
        random_fraction_step: fraction of the oracle picks chosen uniformly at random per level.
        max_random_fraction: cap of that fraction.
        guidance_decay: classifier-free guidance scales multiplied by ``guidance_decay ** L``.
        drop_target_step: fraction of the generation conditions, per level, that drop their
            property targets (sample unconditionally); capped at one half.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = True
    min_distinct_fraction: float = Field(0.5, ge=0, le=1)
    min_vendi_fraction: float = Field(0.25, ge=0, le=1)
    max_level: int = Field(3, ge=1)
    beta_growth: float = Field(2.0, ge=1)
    random_fraction_step: float = Field(0.25, ge=0, le=1)
    max_random_fraction: float = Field(0.5, ge=0, le=1)
    guidance_decay: float = Field(0.5, gt=0, le=1)
    drop_target_step: float = Field(0.25, ge=0, le=0.5)


class Adjustment(BaseModel):
    """How an iteration departs from the configured search (level 0: not at all).

    Attributes:
        level: consecutive-collapse level it was derived from.
        beta_factor: multiplier of UCB's exploration weight (≥ 1).
        random_fraction: fraction of oracle picks drawn at random from the pool, in [0, 1].
        guidance_factor: multiplier of classifier-free guidance scales, in (0, 1].
        drop_target_fraction: fraction of generation conditions without property targets.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    level: int = Field(0, ge=0)
    beta_factor: float = Field(1.0, ge=1)
    random_fraction: float = Field(0.0, ge=0, le=1)
    guidance_factor: float = Field(1.0, gt=0, le=1)
    drop_target_fraction: float = Field(0.0, ge=0, le=0.5)

    @property
    def neutral(self) -> bool:
        return self.level == 0

    def describe(self) -> list[str]:
        """Human-readable actions (empty at level 0)."""
        if self.neutral:
            return []
        return [
            f"UCB beta x{self.beta_factor:g}",
            f"{self.random_fraction:.0%} of picks at random",
            f"guidance scale x{self.guidance_factor:g}",
            f"{self.drop_target_fraction:.0%} of conditions without property targets",
        ]


class CollapseStatus(BaseModel):
    """The monitor's verdict on one iteration and what the next iteration will do."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    collapsed: bool
    reasons: list[str] = Field(default_factory=list)
    next: Adjustment = Adjustment()


def adjustment_for(level: int, config: CollapseMonitorConfig) -> Adjustment:
    """The adjustment of ``level`` (clipped to [0, max_level]) under ``config``."""
    level = max(0, min(level, config.max_level))
    return Adjustment(
        level=level,
        beta_factor=config.beta_growth**level,
        random_fraction=min(config.random_fraction_step * level, config.max_random_fraction),
        guidance_factor=config.guidance_decay**level,
        drop_target_fraction=min(config.drop_target_step * level, 0.5),
    )


def assess(diversity: dict[str, float], current: Adjustment, config: CollapseMonitorConfig) -> CollapseStatus:
    """The verdict on a batch's ``diversity`` summary and the adjustment for the next iteration.

    Args:
        diversity: ``collapse_report`` output (``n``, ``distinct_fraction``, ``vendi_fraction``, …).
        current: the adjustment this iteration ran with (its level is the starting point).
        config: thresholds and reactions.
    """
    reasons = []
    sampled = diversity.get("sampled", diversity.get("n", 0))
    distinct = diversity.get("distinct_fraction", 1.0)
    vendi = diversity.get("vendi_fraction", 1.0)
    if sampled > 0 and distinct < config.min_distinct_fraction:
        reasons.append(f"distinct fraction {distinct:.2f} < {config.min_distinct_fraction}")
    if diversity.get("n", 0) >= 2 and vendi < config.min_vendi_fraction:
        reasons.append(f"Vendi fraction {vendi:.2f} < {config.min_vendi_fraction}")
    collapsed = bool(reasons)
    level = current.level + 1 if collapsed else current.level - 1
    return CollapseStatus(collapsed=collapsed, reasons=reasons, next=adjustment_for(level, config))


def widen_conditions(conditions: Sequence[Condition], adjustment: Adjustment) -> list[Condition]:
    """``conditions`` with guidance scales × ``guidance_factor`` and the last
    ``round(drop_target_fraction · n)`` of them stripped of property targets."""
    if adjustment.neutral:
        return list(conditions)
    n = len(conditions)
    dropped = int(adjustment.drop_target_fraction * n + 0.5)
    out = []
    for j, condition in enumerate(conditions):
        update: dict[str, object] = {"guidance_scale": condition.guidance_scale * adjustment.guidance_factor}
        if j >= n - dropped:
            update["properties"] = {}
        out.append(condition.model_copy(update=update))
    return out


def exploration_picks(k: int, adjustment: Adjustment) -> int:
    """How many of ``k`` oracle picks are drawn at random under ``adjustment``."""
    return min(k, int(adjustment.random_fraction * k + 0.5))
