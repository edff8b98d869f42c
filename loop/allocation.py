"""How a campaign splits each batch between the arms of a composite generator.

``strategy.allocation`` sets it (:class:`AllocationConfig`):

* ``fixed``: every iteration generates with the arms' configured shares.
* ``bandit``: Thompson sampling on hits per oracle call. Each arm's rate has a Beta(1 + hits,
  1 + calls − hits) posterior over the oracle calls spent on its candidates in earlier iterations
  (a hit is a **verified hit** of the iteration report, :mod:`crystaloop.loop.report`: every
  objective met on the oracle's values, S.U.N. under a ``sun`` objective). An arm's share is
  ``floor + (1 − K·floor) · P(its rate is the highest)``, the probability estimated from ``draws``
  posterior samples seeded by the iteration, so no arm starves and a resumed campaign computes
  the same shares from what the store holds. Until an arm's candidate has been measured, the
  configured shares hold.
* with ``strategy.kind: rl`` and ``bandit``, the policy chooses the shares instead: its actions
  include a mix of arms (:mod:`crystaloop.loop.strategies.rl`), floored the same way.

Every iteration report carries an :class:`ArmAllocation`: the shares it generated with, and what
each arm produced (candidates stored, oracle calls, hits).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from crystaloop.data.records import Candidate

__all__ = ["AllocationConfig", "ArmOutcome", "ArmAllocation", "arm_outcomes", "thompson_shares", "floored_shares", "tilted_mixes"]

_STRICT = ConfigDict(extra="forbid", frozen=True)
_UNMARKED = "?"  # the arm of a candidate without ``provenance.arm``


class AllocationConfig(BaseModel):
    """``strategy.allocation``: how the composite generator's shares move (module docstring).

    Attributes:
        kind: ``fixed`` (the configured shares) or ``bandit`` (Thompson sampling; rl: the policy).
        floor: least share of every arm (``floor · arms ≤ 1``, checked with the campaign).
        draws: posterior samples behind each iteration's probabilities.
    """

    model_config = _STRICT

    kind: Literal["fixed", "bandit"] = "fixed"
    floor: float = Field(0.1, ge=0.0, lt=1.0)
    draws: int = Field(4096, ge=64, le=1_000_000)


class ArmOutcome(BaseModel):
    """Oracle calls spent on one arm's candidates and the verified hits among them."""

    model_config = _STRICT

    oracle_calls: int = 0
    hits: int = 0


class ArmAllocation(BaseModel):
    """One iteration's allocation between arms (in its report).

    Attributes:
        kind: ``fixed``, ``bandit`` or ``rl``.
        shares: arm → share this iteration generated with (sums to 1).
        before: arm → outcomes of the earlier iterations the shares were computed from.
        generated: arm → candidates of this iteration in the store.
        outcomes: arm → this iteration's oracle calls and verified hits.
    """

    model_config = _STRICT

    kind: str
    shares: dict[str, float]
    before: dict[str, ArmOutcome] = Field(default_factory=dict)
    generated: dict[str, int] = Field(default_factory=dict)
    outcomes: dict[str, ArmOutcome] = Field(default_factory=dict)


def arm_outcomes(picks: Sequence[Candidate], hit_ids: Collection[str], arms: Sequence[str]) -> dict[str, ArmOutcome]:
    """Arm → oracle calls (``picks``: evaluated and failed candidates) and hits among them;
    candidates of no listed arm are left out."""
    calls = dict.fromkeys(arms, 0)
    hits = dict.fromkeys(arms, 0)
    for candidate in picks:
        arm = candidate.provenance.arm or _UNMARKED
        if arm in calls:
            calls[arm] += 1
            hits[arm] += candidate.id in hit_ids
    return {a: ArmOutcome(oracle_calls=calls[a], hits=hits[a]) for a in arms}


def floored_shares(probabilities: Mapping[str, float], floor: float) -> dict[str, float]:
    """``floor + (1 − K·floor) · p`` per arm (``floor`` capped at 1/K), normalised."""
    arms = list(probabilities)
    floor = min(floor, 1.0 / len(arms))
    p = np.array([probabilities[a] for a in arms], dtype=np.float64)
    p = p / p.sum() if p.sum() > 0 else np.full(len(arms), 1.0 / len(arms))
    shares = floor + (1.0 - len(arms) * floor) * p
    return {a: float(s) for a, s in zip(arms, shares / shares.sum(), strict=True)}


def thompson_shares(outcomes: Mapping[str, ArmOutcome], *, floor: float, draws: int, seed: int) -> dict[str, float]:
    """Floored probability that each arm has the highest hit rate under its Beta(1 + hits,
    1 + calls − hits) posterior, from ``draws`` samples seeded by ``seed`` (ties: the first)."""
    arms = list(outcomes)
    rng = np.random.default_rng(seed)
    alpha = np.array([1.0 + outcomes[a].hits for a in arms])
    beta = np.array([1.0 + outcomes[a].oracle_calls - outcomes[a].hits for a in arms])
    samples = rng.beta(alpha, beta, size=(draws, len(arms)))
    wins = np.bincount(np.argmax(samples, axis=1), minlength=len(arms))
    return floored_shares({a: float(w) / draws for a, w in zip(arms, wins, strict=True)}, floor)


def tilted_mixes(arms: Sequence[str], configured: Mapping[str, float], floor: float) -> tuple[dict[str, float], ...]:
    """The arm mixes an rl policy chooses among: the configured shares, then one mix per arm
    that gives it everything but the other arms' floors."""
    out = [dict(configured)]
    for arm in arms:
        out.append(floored_shares({a: float(a == arm) for a in arms}, floor))
    return tuple(out)
