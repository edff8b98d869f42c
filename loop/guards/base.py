"""The guard port and the context guards read: ``Guard.check(candidate, context) -> Verdict``.

Guards are pure given their :class:`GuardContext`: all they need to know about the store, the
batch and the surrogate is in it. :func:`screen` runs a list of guards over a batch in a fixed
order (sorted by candidate id, so a resumed run reaches the same verdicts) and adds each
accepted candidate to the context, which is how batch diversity is checked.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol, runtime_checkable

import numpy as np

from crystaloop.data.records import Candidate, Verdict
from crystaloop.loop.constraints import Constraints
from crystaloop.loop.guards.fingerprints import FINGERPRINT_DIM, fingerprint
from crystaloop.loop.guards.novelty import StructureIndex

if TYPE_CHECKING:
    from crystaloop.loop.guards.exploitation import ResidualHistory

__all__ = ["Guard", "GuardContext", "ScreenResult", "screen"]


@runtime_checkable
class Guard(Protocol):
    """Decides on one candidate; ``name`` is the key its verdict is stored under.
    ``context_free``: the verdict needs only the candidate and the constraints (no predictions,
    no history), so the loop runs it before scoring too."""

    name: str
    context_free: bool

    def check(self, candidate: Candidate, context: GuardContext) -> Verdict: ...


@dataclass
class GuardContext:
    """What guards may know beyond the candidate itself.

    Attributes:
        constraints: the campaign's allowed elements, systems and sizes.
        known_ids: canonical hashes already known (store, training set): exact duplicates.
        kept_fingerprints: (k, d) fingerprints of structures already kept (history and the
            accepted part of this batch); grown by :meth:`accept`.
        kept: the kept structures themselves (history and accepted batch) for tolerant
            matching; grown by :meth:`accept`.
        reference: known structures outside the campaign (the generator's training set); a
            match there makes a candidate "not novel". Shared, never grown by a screen.
        predictions: candidate id → property → (mean, std, units) from the surrogate.
        reference_std: property → typical std (the pool's median), for relative thresholds.
        ood: candidate id → OOD score (≈ 1 in distribution).
        residuals: how far off the surrogate was on the campaign's measured candidates
            (:class:`~crystaloop.loop.guards.exploitation.ResidualHistory`); ``None``: unknown.
    """

    constraints: Constraints = field(default_factory=Constraints)
    known_ids: set[str] = field(default_factory=set)
    kept_fingerprints: np.ndarray = field(default_factory=lambda: np.zeros((0, FINGERPRINT_DIM)))
    kept: StructureIndex = field(default_factory=StructureIndex)
    reference: StructureIndex | None = None
    predictions: Mapping[str, Mapping[str, tuple[float, float, str]]] = field(default_factory=dict)
    reference_std: Mapping[str, float] = field(default_factory=dict)
    ood: Mapping[str, float] = field(default_factory=dict)
    residuals: ResidualHistory | None = None
    _fingerprints: dict[str, np.ndarray] = field(default_factory=dict, repr=False)

    def fingerprint(self, candidate: Candidate) -> np.ndarray:
        """The candidate's fingerprint (computed once per context)."""
        if candidate.id not in self._fingerprints:
            self._fingerprints[candidate.id] = fingerprint(candidate.crystal)
        return self._fingerprints[candidate.id]

    def accept(self, candidate: Candidate) -> None:
        """Count ``candidate`` as kept: later candidates are compared with it."""
        self.known_ids.add(candidate.id)
        self.kept.add(candidate.crystal, candidate.id, canonical_hash=candidate.id)
        self.kept_fingerprints = np.vstack([self.kept_fingerprints, self.fingerprint(candidate)[None, :]])


@dataclass(frozen=True)
class ScreenResult:
    """Verdicts of every guard on one candidate; ``ok`` when all passed."""

    candidate: Candidate
    verdicts: tuple[Verdict, ...]

    @property
    def ok(self) -> bool:
        return all(v.ok for v in self.verdicts)

    @property
    def first_failure(self) -> Verdict | None:
        return next((v for v in self.verdicts if not v.ok), None)


def screen(candidates: Sequence[Candidate], guards: Sequence[Guard], context: GuardContext) -> list[ScreenResult]:
    """Run every guard on every candidate, in id order; accepted ones join the context.

    Returns one :class:`ScreenResult` per candidate, in id order. All guards run on every
    candidate, so each rejection records all of its reasons.
    """
    results = []
    for candidate in sorted(candidates, key=lambda c: c.id):
        verdicts = tuple(guard.check(candidate, context) for guard in guards)
        result = ScreenResult(candidate, verdicts)
        if result.ok:
            context.accept(candidate)
        results.append(result)
    return results
