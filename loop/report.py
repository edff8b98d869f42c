"""Iteration reports and what counts as a hit.

A **verified hit** is an evaluated candidate for which the oracle measured every objective
property and every measured value meets its objective (window, threshold), and, where the oracle
measured ``e_above_hull``, it lies within the synthesizability window. When some objective
property is beyond the oracle (a band gap from an MLIP), the candidate can at most be a
**predicted hit**: the measured objectives pass and the unmeasured ones pass on the surrogate's
prediction, reported with that prediction's std and never counted as verified. With a ``sun``
objective (:data:`~crystaloop.loop.config.SUN_PROPERTY`), only S.U.N. candidates
(:mod:`crystaloop.loop.sun`) are verified hits. Every report carries the iteration's S.U.N. summary;
:func:`~crystaloop.loop.sun.campaign_sun` adds them up for the campaign.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Collection, Sequence

from pydantic import BaseModel, ConfigDict, Field

from crystaloop.data.records import Candidate, CandidateStatus, Condition
from crystaloop.loop.allocation import ArmAllocation
from crystaloop.loop.collapse import Adjustment, CollapseStatus
from crystaloop.loop.config import SUN_PROPERTY, CampaignConfig, Objective
from crystaloop.loop.sun import SunSummary

__all__ = [
    "IterationReport",
    "PredictedHit",
    "SurrogateUpdate",
    "ConditionOutcome",
    "classify_hit",
    "stability_basis",
    "measured_values",
    "objective_rank_key",
]


class PredictedHit(BaseModel):
    """A candidate whose unmeasured objectives pass only on the surrogate's prediction."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str
    formula: str
    predicted: dict[str, tuple[float, float, str]] = Field(description="property → (mean, std, units), not verified")


class SurrogateUpdate(BaseModel):
    """What the online surrogate of an iteration learned (stored in the iteration's report).

    Attributes:
        labels: labelled candidates it was fitted on.
        through_iteration: labels come from iterations up to this one (``None``: no labels).
        trigger: why it was (re)fitted: ``every iteration``, ``over-prediction at iteration k``,
            or ``none`` (retraining off and nothing flagged yet).
        properties: property → ``{"labels", "trust", "mae_ensemble", "mae_online"}``, MAEs in
            the property's units over the labels (in-sample for the online model).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    labels: int = 0
    through_iteration: int | None = None
    trigger: str = "none"
    properties: dict[str, dict[str, float]] = Field(default_factory=dict)


class ConditionOutcome(BaseModel):
    """What one generation condition produced in one iteration: candidates stored, how many passed
    the guards, and the guarded score (summed desirability of those that passed over those
    generated; see loop.strategies.condition_bo)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    condition: Condition
    generated: int
    passed: int
    score: float


class IterationReport(BaseModel):
    """Summary of one iteration, stored as JSON with the iteration in the store.

    Attributes:
        generated: candidates of this iteration in the store (new crystals only).
        duplicates_skipped: generated crystals already in the store (known when generation ran
            in this process; ``None`` after a resume that skipped generation).
        rejected_by_reason: guard → rejections (first failing guard of each candidate).
        scored, selected, evaluated, failed: candidates per final status this iteration.
        oracle_calls: measurements attempted (evaluated + failed).
        verified_hits: ids of oracle-verified hits (see the module docstring).
        predicted_hits: candidates passing only on surrogate predictions (never verified).
        best_measured: objective property → best oracle value this iteration.
        diversity: unique, distinct and novel fractions, unique formulas, Vendi score of the
            generated batch (see guards.diversity.collapse_report).
        adjustment: the collapse monitor's adjustment this iteration ran with.
        collapse: the monitor's verdict on this batch and the next iteration's adjustment
            (``None`` with the monitor off).
        residuals: oracle-minus-surrogate watch (see guards.exploitation.residual_watch).
        conditions: each generation condition of this iteration and what it produced (the
            observations of ``condition_search: bo``).
        surrogate: what the online surrogate that scored this iteration had learned (labels,
            trigger, trust, MAEs; see loop.online); ``None`` without a surrogate.
        sun: stable / unique / novel counts of this iteration's evaluated candidates, unique
            against the campaign's earlier iterations (see loop.sun); ``None`` with ``sun.enabled``
            off or in reports written before S.U.N. was classified.
        arms: with a composite generator, the shares this iteration generated with and what
            each arm produced (see loop.allocation); ``None`` otherwise.
        resumed: whether this iteration continued after an interruption.
    """

    model_config = ConfigDict(extra="forbid")

    campaign: str
    iteration: int
    config_hash: str
    generated: int = 0
    duplicates_skipped: int | None = None
    rejected_by_reason: dict[str, int] = Field(default_factory=dict)
    scored: int = 0
    selected: int = 0
    evaluated: int = 0
    failed: int = 0
    oracle_calls: int = 0
    verified_hits: list[str] = Field(default_factory=list)
    predicted_hits: list[PredictedHit] = Field(default_factory=list)
    best_measured: dict[str, float] = Field(default_factory=dict)
    diversity: dict[str, float] = Field(default_factory=dict)
    adjustment: Adjustment = Adjustment()
    collapse: CollapseStatus | None = None
    residuals: dict[str, dict[str, float | bool]] = Field(default_factory=dict)
    surrogate: SurrogateUpdate | None = None
    conditions: list[ConditionOutcome] = Field(default_factory=list)
    sun: SunSummary | None = None
    arms: ArmAllocation | None = None
    resumed: bool = False
    seconds: float = 0.0


def classify_hit(candidate: Candidate, config: CampaignConfig, measurable: Sequence[str], sun_ids: Collection[str] | None = None) -> str | None:
    """``"verified"``, ``"predicted"`` or ``None`` for one candidate (see the module docstring);
    ``sun_ids``: the S.U.N. candidates, the measured value of a ``sun`` objective (``None``: not
    classified, so a ``sun`` objective has no hit)."""
    if candidate.status != CandidateStatus.EVALUATED:
        return None
    measured = {m.property: m.value for m in candidate.measurements if m.status == "ok" and m.value is not None}
    if sun_ids is not None:
        measured[SUN_PROPERTY] = 1.0 if candidate.id in sun_ids else 0.0
    hull = measured.get("e_above_hull")
    if hull is not None and config.guards.synthesizability.enabled and hull > config.guards.synthesizability.max_e_above_hull:
        return None
    verdict = "verified"
    for objective in config.objectives:
        if objective.property in measured:
            if not objective.satisfied(measured[objective.property]):
                return None
        elif objective.property in measurable:
            return None  # the oracle should have measured it and did not
        elif objective.property in candidate.predictions and objective.satisfied(candidate.predictions[objective.property][0]):
            verdict = "predicted"
        else:
            return None
    return verdict


def rejection_counts(candidates: Sequence[Candidate], guard_order: Sequence[str]) -> dict[str, int]:
    """Guard → number of rejected candidates whose first failing guard (in run order) it was."""
    counts: Counter[str] = Counter()
    rank = {name: i for i, name in enumerate(guard_order)}
    for candidate in candidates:
        failing = sorted((v for v in candidate.verdicts if not v.ok), key=lambda v: rank.get(v.guard, len(rank)))
        if failing:
            counts[failing[0].guard] += 1
    return dict(sorted(counts.items()))


STABILITY_PROPERTIES = ("e_above_hull", "formation_energy_vs_elements")
"""Properties a hull gives: a stability verdict, or (elements-only hull) a formation energy."""


def stability_basis(candidate: Candidate) -> dict[str, str] | None:
    """What a candidate's hull measurement says and rests on, for tables: ``property``,
    ``value`` (eV/atom), ``coverage`` and ``decomposition`` (``"0.5 CaO + 0.5 CoF2"``);
    ``None`` when it has no hull measurement."""
    for m in candidate.measurements:
        if m.property in STABILITY_PROPERTIES:
            decomposition = m.details.get("decomposition", [])
            products = " + ".join(f"{d['fraction']:.3g} {d['formula']}" for d in decomposition)
            value = f"{m.value:.3f}" if m.value is not None else m.status
            return {"property": m.property, "value": value, "coverage": str(m.details.get("coverage", "unknown")), "decomposition": products}
    return None


def measured_values(candidate: Candidate) -> dict[str, float]:
    """Property → the oracle's value, over the candidate's ``ok`` measurements."""
    return {m.property: m.value for m in candidate.measurements if m.status == "ok" and m.value is not None}


def _objective_cost(objective: Objective, value: float) -> float:
    if objective.goal == "maximise":
        return -value
    if objective.goal == "minimise":
        return value
    low, high = objective.window or (0.0, 0.0)
    return abs(value - 0.5 * (low + high))


def objective_rank_key(candidate: Candidate, objective: Objective) -> tuple[int, float]:
    """Sort key of "best first" tables and pictures: ``(0, cost)`` when the oracle measured the
    objective, ``(1, cost)`` on the surrogate's prediction alone, ``(2, 0)`` with neither; the
    cost is the value (minimise), its negative (maximise) or its distance from the target
    window's centre."""
    measured = measured_values(candidate).get(objective.property)
    if measured is not None:
        return (0, _objective_cost(objective, measured))
    predicted = candidate.predictions.get(objective.property)
    if predicted is not None and math.isfinite(predicted[0]):
        return (1, _objective_cost(objective, float(predicted[0])))
    return (2, 0.0)
