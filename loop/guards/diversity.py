"""Diversity guard: exact duplicates by canonical hash, near-duplicates by fingerprint distance.

A candidate is refused when its canonical hash is already known (store, training set, earlier in
the batch) or when its fingerprint (:mod:`.fingerprints`) lies closer than ``min_distance`` to
something already kept. The verdict's score is that nearest distance (novelty; inf when
nothing is kept yet). :func:`collapse_report` summarises a batch for the iteration report.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from crystaloop.data.records import Candidate, Verdict
from crystaloop.loop.config import DiversityGuardConfig
from crystaloop.loop.guards.base import GuardContext
from crystaloop.loop.guards.fingerprints import fingerprints, nearest_distance, vendi_score

__all__ = ["DiversityGuard", "collapse_report"]


class DiversityGuard:
    """Refuses duplicates and near-duplicates; see the module docstring."""

    name = "diversity"

    def __init__(self, config: DiversityGuardConfig | None = None) -> None:
        self.config = config or DiversityGuardConfig()

    def check(self, candidate: Candidate, context: GuardContext) -> Verdict:
        if candidate.id in context.known_ids:
            return Verdict(guard=self.name, ok=False, reason=f"duplicate: canonical hash {candidate.id[:12]} already known", score=0.0)
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
