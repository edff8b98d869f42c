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

from crystaloop.data.records import Candidate, Verdict
from crystaloop.loop.config import DiversityGuardConfig
from crystaloop.loop.guards.base import GuardContext
from crystaloop.loop.guards.fingerprints import fingerprints, nearest_distance, vendi_score
from crystaloop.loop.guards.novelty import Matcher

__all__ = ["DiversityGuard", "collapse_report"]


class DiversityGuard:
    """Refuses duplicates and near-duplicates; see the module docstring."""

    name = "diversity"

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


def collapse_report(candidates: Sequence[Candidate]) -> dict[str, float]:
    """Diversity of a batch: unique fraction by hash, unique reduced formulas, Vendi score.

    Returns ``{"n", "unique_fraction", "unique_formulas", "vendi"}``; a collapsing generator
    shows a falling unique fraction and a Vendi score far below ``n``.
    """
    n = len(candidates)
    if n == 0:
        return {"n": 0, "unique_fraction": 0.0, "unique_formulas": 0, "vendi": 0.0}
    ids = {c.id for c in candidates}
    formulas = {c.crystal.reduced_formula for c in candidates}
    features = fingerprints([c.crystal for c in candidates])
    return {
        "n": n,
        "unique_fraction": len(ids) / n,
        "unique_formulas": len(formulas),
        "vendi": vendi_score(np.asarray(features)),
    }
