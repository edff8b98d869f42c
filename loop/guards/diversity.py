"""Diversity guard: duplicates and novelty, then near-duplicates by fingerprint distance.

A candidate is refused, with the first reason that applies:

1. ``duplicate``: its canonical hash is already known (kept earlier in the campaign or the
   batch, or listed in ``known_ids``);
2. ``not novel``: it copies a reference structure (the generator's training set): identical
   canonical hash, or a StructureMatcher match within the same reduced formula
   (:class:`~crystaloop.loop.guards.novelty.StructureIndex`); the reason names the match;
3. ``duplicate``: it matches a structure kept earlier (history or batch) under StructureMatcher;
4. ``near-duplicate``: its fingerprint (:mod:`.fingerprints`) lies closer than ``min_distance``
   to something already kept.

The verdict's score is the nearest fingerprint distance (novelty; inf when nothing is kept yet,
0 for a duplicate). :func:`collapse_report` summarises a batch for the iteration report.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from crystaloop.data.records import Candidate, Verdict
from crystaloop.loop.guards.base import GuardContext
from crystaloop.loop.guards.fingerprints import fingerprints, nearest_distance, vendi_score
from crystaloop.loop.guards.novelty import Matcher

__all__ = ["DiversityGuardConfig", "DiversityGuard", "collapse_report"]


class DiversityGuardConfig(BaseModel):
    """Duplicates and novelty (canonical hash, then StructureMatcher) against the campaign's kept
    candidates and the reference structures, and near-duplicates (fingerprint distance) in the batch.

    Attributes:
        min_distance: smallest fingerprint distance to anything kept.
        novelty: compare with StructureMatcher (``False``: canonical hashes only).
        reference: datasets whose structures count as known (a match is "not novel");
            ``None`` → the generator's training split where its checkpoint records one
            (``perov_5/train`` for the shipped perov_5 generators), ``[]`` → none.
        stol, ltol, angle_tol: StructureMatcher tolerances, default the CSP protocol's.
        max_comparisons: StructureMatcher calls per candidate and index at most (the nearest
            known crystals of the same formula by radial profile).
        against_history: compare with the campaign's earlier iterations too (``False``: this
            iteration's batch and the reference only).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = True
    min_distance: float = Field(0.02, ge=0, description="smallest fingerprint distance to anything kept")
    against_history: bool = True
    novelty: bool = True
    reference: tuple[str, ...] | None = None
    stol: float = Field(0.5, gt=0)
    ltol: float = Field(0.3, gt=0)
    angle_tol: float = Field(10.0, gt=0, description="degrees")
    max_comparisons: int = Field(24, ge=1)


class DiversityGuard:
    """Refuses duplicates and near-duplicates; see the module docstring."""

    name = "diversity"
    context_free = False

    def __init__(self, config: DiversityGuardConfig | None = None) -> None:
        self.config = config or DiversityGuardConfig()
        c = self.config
        self.matcher = Matcher(stol=c.stol, ltol=c.ltol, angle_tol=c.angle_tol, max_comparisons=c.max_comparisons) if c.novelty else None

    def check(self, candidate: Candidate, context: GuardContext) -> Verdict:
        if candidate.id in context.known_ids:
            return Verdict(guard=self.name, ok=False, reason=f"duplicate: canonical hash {candidate.id[:12]} already known", score=0.0)
        if context.reference is not None:
            match = context.reference.match(candidate.crystal, candidate.id, matcher=self.matcher)
            if match is not None:
                return Verdict(guard=self.name, ok=False, reason=f"not novel: {match.describe()}", score=0.0)
        match = context.kept.match(candidate.crystal, candidate.id, matcher=self.matcher)
        if match is not None:
            return Verdict(guard=self.name, ok=False, reason=f"duplicate: {match.describe()}", score=0.0)
        distance = nearest_distance(context.fingerprint(candidate), context.kept_fingerprints)
        score = distance if math.isfinite(distance) else None
        if distance < self.config.min_distance:
            return Verdict(
                guard=self.name,
                ok=False,
                reason=f"near-duplicate: fingerprint distance {distance:.3g} < {self.config.min_distance}",
                score=score,
            )
        return Verdict(guard=self.name, ok=True, score=score)


def collapse_report(candidates: Sequence[Candidate], repeats: int | None = None) -> dict[str, float]:
    """Diversity of one iteration's batch, for the report and the collapse monitor.

    Args:
        candidates: the batch as stored (one per canonical hash), after the guards ran.
        repeats: sampled crystals the store already held (in-batch repeats included), when known.

    Returns ``{"n", "sampled", "unique_fraction", "distinct_fraction", "novel_fraction",
    "unique_formulas", "vendi", "vendi_fraction"}``: ``sampled = n + repeats``; unique fraction
    ``n / sampled``; distinct fraction: stored candidates whose diversity verdict is not a
    (near-)duplicate, over ``sampled`` (without a diversity verdict a candidate counts as
    distinct); novel fraction: those not refused as copies of a reference structure, over
    ``n``; Vendi score of the fingerprints and that score over ``n``. A collapsing generator
    shows falling fractions and a Vendi score far below ``n``.
    """
    n = len(candidates)
    sampled = n + (repeats or 0)
    if sampled == 0:
        return {"n": 0, "sampled": 0, "unique_fraction": 0.0, "distinct_fraction": 0.0, "novel_fraction": 0.0, "unique_formulas": 0, "vendi": 0.0, "vendi_fraction": 0.0}
    reasons = [next((v.reason for v in c.verdicts if v.guard == DiversityGuard.name and not v.ok), "") for c in candidates]
    copies = sum(r.startswith(("duplicate", "near-duplicate")) for r in reasons)
    not_novel = sum(r.startswith("not novel") for r in reasons)
    vendi = vendi_score(np.asarray(fingerprints([c.crystal for c in candidates]))) if n else 0.0
    return {
        "n": n,
        "sampled": sampled,
        "unique_fraction": len({c.id for c in candidates}) / sampled,
        "distinct_fraction": (n - copies) / sampled,
        "novel_fraction": (n - not_novel) / n if n else 0.0,
        "unique_formulas": len({c.crystal.reduced_formula for c in candidates}),
        "vendi": vendi,
        "vendi_fraction": vendi / n if n else 0.0,
    }
