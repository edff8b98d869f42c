"""S.U.N.: which evaluated candidates are stable, unique and novel, per iteration and per campaign.

* **stable**: the candidate's ``e_above_hull`` measurement (eV/atom) has status ``ok`` and a value
  at most :attr:`~crystaloop.loop.config.SunConfig.stable_e_above_hull` (0.1 by default; the
  stricter :attr:`~crystaloop.loop.config.SunConfig.strict_e_above_hull`, 0.0 by default, is
  reported alongside). ``unconverged`` and ``failed`` measurements never count, nor does a hull of
  elements alone: its measurement is a ``formation_energy_vs_elements``, or its details say
  ``coverage: elements``. Measurements without a coverage class (stores written before hulls
  recorded their basis) count, and are reported as coverage ``unknown``.
* **unique**: no structural match among the campaign's earlier evaluated candidates (evaluation
  order: iteration, then id, the order the engine measures them); the first of a matching group
  is unique.
* **novel**: no structural match in the reference structures (the generator's training split, by
  default the diversity guard's reference) nor among the store's imported candidates.

Matching is the loop's one definition, :class:`~crystaloop.loop.guards.novelty.StructureIndex`
with a :class:`~crystaloop.loop.guards.novelty.Matcher` (canonical hash, then pymatgen's
StructureMatcher within the same reduced formula only).
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from crystaloop.data.records import Candidate, CandidateStatus, Measurement
from crystaloop.data.store import CandidateFilter, CandidateStore
from crystaloop.loop.config import SUN_PROPERTY, CampaignConfig, SunConfig
from crystaloop.loop.guards.novelty import Matcher, StructureIndex

if TYPE_CHECKING:
    from crystaloop.loop.components import Components

__all__ = [
    "HULL_PROPERTY",
    "FORMATION_PROPERTY",
    "COVERAGE_CLASSES",
    "SunVerdict",
    "SunSummary",
    "stability",
    "classify_sun",
    "summarise_sun",
    "campaign_sun",
    "with_sun_labels",
    "sun_reference",
    "imported_structures",
    "iteration_sun",
]

logger = logging.getLogger(__name__)

HULL_PROPERTY = "e_above_hull"
FORMATION_PROPERTY = "formation_energy_vs_elements"
COVERAGE_CLASSES = ("elements", "prototype", "known", "campaign")
"""Coverage classes of a hull measurement (``details["coverage"]``): elements only, prototype
competing phases present, user-added known phases present, campaign structures."""
UNKNOWN_COVERAGE = "unknown"
_ALL = 100_000


@dataclass(frozen=True)
class Stability:
    """The stability part of a verdict: ``value`` in eV/atom (``None`` without an ``ok`` hull
    measurement), ``coverage`` one of :data:`COVERAGE_CLASSES`, ``unknown`` or ``""`` (nothing usable)."""

    stable: bool
    stable_strict: bool
    value: float | None
    coverage: str
    reason: str = ""


@dataclass(frozen=True)
class SunVerdict:
    """One evaluated candidate's S.U.N. classification.

    Attributes:
        id, formula, iteration: the candidate.
        e_above_hull: the ``ok`` value in eV/atom, ``None`` without one.
        coverage: the hull measurement's coverage class (see :class:`Stability`).
        stable, stable_strict: at the configured and at the strict threshold.
        unique, novel: see the module docstring.
        reasons: why each failing part failed.
    """

    id: str
    formula: str
    iteration: int | None
    e_above_hull: float | None
    coverage: str
    stable: bool
    stable_strict: bool
    unique: bool
    novel: bool
    reasons: tuple[str, ...] = ()

    @property
    def sun(self) -> bool:
        return self.stable and self.unique and self.novel

    @property
    def sun_strict(self) -> bool:
        return self.stable_strict and self.unique and self.novel


def _details(measurement: Measurement) -> dict:
    details = getattr(measurement, "details", None)
    return details if isinstance(details, dict) else {}


def stability(candidate: Candidate, config: SunConfig) -> Stability:
    """Whether ``candidate``'s e_above_hull measurement makes it stable (see the module docstring)."""
    hull = [m for m in candidate.measurements if m.property == HULL_PROPERTY]
    usable = [m for m in hull if m.status == "ok" and m.value is not None]
    if not usable:
        if hull:
            m = hull[-1]
            return Stability(False, False, None, "", f"e_above_hull {m.status}" + (f": {m.reason}" if m.reason else ""))
        if any(m.property == FORMATION_PROPERTY for m in candidate.measurements):
            return Stability(False, False, None, "elements", "hull of elements only (formation energy vs elements): no stability verdict")
        return Stability(False, False, None, "", "no e_above_hull measurement")
    m = usable[-1]
    value = float(m.value)
    coverage = str(_details(m).get("coverage", UNKNOWN_COVERAGE))
    if coverage == "elements":
        return Stability(False, False, value, coverage, "hull of elements only: no stability verdict")
    stable, strict = value <= config.stable_e_above_hull, value <= config.strict_e_above_hull
    reason = "" if stable else f"e_above_hull {value:.3g} eV/atom > {config.stable_e_above_hull:g} eV/atom"
    return Stability(stable, strict, value, coverage, reason)


def _order(candidates: Iterable[Candidate]) -> list[Candidate]:
    """Evaluated candidates in evaluation order: iteration (unknown last), then id."""
    evaluated = [c for c in candidates if c.status == CandidateStatus.EVALUATED]
    return sorted(evaluated, key=lambda c: (c.provenance.iteration is None, c.provenance.iteration or 0, c.id))


def classify_sun(
    candidates: Sequence[Candidate],
    reference_structures: Iterable[StructureIndex],
    config: SunConfig,
    *,
    earlier: Sequence[Candidate] = (),
    matcher: Matcher | None = None,
) -> list[SunVerdict]:
    """S.U.N. verdicts of the evaluated ``candidates``, in evaluation order (others are skipped).

    Args:
        candidates: the candidates to classify (one campaign's).
        reference_structures: indexes of known structures; a match in any one is "not novel".
        config: thresholds (eV/atom).
        earlier: evaluated candidates of the same campaign measured before ``candidates`` (for
            uniqueness only; not classified themselves).
        matcher: the structure matcher; default the CSP protocol's tolerances.
    """
    matcher = matcher or Matcher(max_comparisons=config.max_comparisons)
    references = list(reference_structures)
    seen = StructureIndex()
    for c in _order(earlier):
        seen.add(c.crystal, c.id, canonical_hash=c.id)
    verdicts = []
    for c in _order(candidates):
        stable = stability(c, config)
        reasons = [stable.reason] if stable.reason else []
        duplicate = seen.match(c.crystal, c.id, matcher=matcher)
        if duplicate is not None:
            reasons.append(f"not unique: {duplicate.describe()}")
        known = next((m for m in (index.match(c.crystal, c.id, matcher=matcher) for index in references) if m is not None), None)
        if known is not None:
            reasons.append(f"not novel: {known.describe()}")
        seen.add(c.crystal, c.id, canonical_hash=c.id)
        verdicts.append(
            SunVerdict(
                id=c.id, formula=c.crystal.reduced_formula, iteration=c.provenance.iteration, e_above_hull=stable.value,
                coverage=stable.coverage, stable=stable.stable, stable_strict=stable.stable_strict,
                unique=duplicate is None, novel=known is None, reasons=tuple(reasons),
            )
        )
    return verdicts


class SunSummary(BaseModel):
    """S.U.N. counts over evaluated candidates (one iteration, or a whole campaign).

    Attributes:
        stable_e_above_hull, strict_e_above_hull: the thresholds, eV/atom.
        reference_structures: known structures novelty was checked against (training split and
            imported candidates of the classified formulas).
        oracle_calls: measurements attempted (evaluated + failed), the denominator of the rates.
        classified: evaluated candidates classified.
        stable, stable_strict, unique, novel, sun, sun_strict: candidates with each property.
        coverage: hull coverage class → candidates (``unknown``: no class recorded).
        sun_ids, sun_strict_ids: ids of the S.U.N. candidates at each threshold.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    stable_e_above_hull: float
    strict_e_above_hull: float
    reference_structures: int = 0
    oracle_calls: int = 0
    classified: int = 0
    stable: int = 0
    stable_strict: int = 0
    unique: int = 0
    novel: int = 0
    sun: int = 0
    sun_strict: int = 0
    coverage: dict[str, int] = Field(default_factory=dict)
    sun_ids: list[str] = Field(default_factory=list)
    sun_strict_ids: list[str] = Field(default_factory=list)

    def per_100_calls(self, strict: bool = False) -> float:
        """S.U.N. candidates per 100 oracle calls (NaN without calls)."""
        hits = self.sun_strict if strict else self.sun
        return 100.0 * hits / self.oracle_calls if self.oracle_calls else float("nan")

    def describe(self) -> str:
        """One line: ``S.U.N. 2 at 0.1 / 1 at 0 eV/atom (25 / 12.5 per 100 oracle calls); …``."""
        coverage = ", ".join(f"{k} {v}" for k, v in sorted(self.coverage.items())) or "none"
        return (
            f"S.U.N. {self.sun} at {self.stable_e_above_hull:g} / {self.sun_strict} at {self.strict_e_above_hull:g} eV/atom "
            f"({self.per_100_calls():.3g} / {self.per_100_calls(strict=True):.3g} per 100 oracle calls); "
            f"of {self.classified} evaluated: stable {self.stable}, unique {self.unique}, novel {self.novel}; hull coverage: {coverage}"
        )


def summarise_sun(verdicts: Sequence[SunVerdict], oracle_calls: int, config: SunConfig, reference_structures: int = 0) -> SunSummary:
    """Counts of ``verdicts`` with ``oracle_calls`` as the rates' denominator."""
    return SunSummary(
        stable_e_above_hull=config.stable_e_above_hull,
        strict_e_above_hull=config.strict_e_above_hull,
        reference_structures=reference_structures,
        oracle_calls=oracle_calls,
        classified=len(verdicts),
        stable=sum(v.stable for v in verdicts),
        stable_strict=sum(v.stable_strict for v in verdicts),
        unique=sum(v.unique for v in verdicts),
        novel=sum(v.novel for v in verdicts),
        sun=sum(v.sun for v in verdicts),
        sun_strict=sum(v.sun_strict for v in verdicts),
        coverage=dict(sorted(Counter(v.coverage for v in verdicts if v.coverage).items())),
        sun_ids=[v.id for v in verdicts if v.sun],
        sun_strict_ids=[v.id for v in verdicts if v.sun_strict],
    )


_COUNTS = ("oracle_calls", "classified", "stable", "stable_strict", "unique", "novel", "sun", "sun_strict")


def campaign_sun(summaries: Iterable[SunSummary | None]) -> SunSummary | None:
    """The campaign's totals from its iterations' summaries (uniqueness is campaign-wide, so the
    counts add up); ``None`` when no iteration has one. Thresholds are the first summary's."""
    parts = [s for s in summaries if s is not None]
    if not parts:
        return None
    coverage: Counter[str] = Counter()
    for s in parts:
        coverage.update(s.coverage)
    return SunSummary(
        stable_e_above_hull=parts[0].stable_e_above_hull,
        strict_e_above_hull=parts[0].strict_e_above_hull,
        reference_structures=max(s.reference_structures for s in parts),
        coverage=dict(sorted(coverage.items())),
        sun_ids=[i for s in parts for i in s.sun_ids],
        sun_strict_ids=[i for s in parts for i in s.sun_strict_ids],
        **{k: sum(getattr(s, k) for s in parts) for k in _COUNTS},
    )


def with_sun_labels(values: np.ndarray, candidates: Sequence[Candidate], config: CampaignConfig, sun_ids: Collection[str] | None) -> np.ndarray:
    """``values`` (n, m) of the objectives with each ``sun`` objective's column filled: 1.0 for
    candidates in ``sun_ids``, else 0.0 (``sun_ids`` ``None``: left as is, NaN)."""
    columns = [j for j, o in enumerate(config.objectives) if o.property == SUN_PROPERTY]
    if not columns or sun_ids is None or not len(candidates):
        return values
    out = np.array(values, dtype=np.float64, copy=True)
    flags = np.array([1.0 if c.id in sun_ids else 0.0 for c in candidates])
    for j in columns:
        out[:, j] = flags
    return out


# ---------------------------------------------------------------------------- the loop's view
def sun_reference(components: Components, config: CampaignConfig) -> StructureIndex | None:
    """Known structures for novelty: ``sun.reference`` datasets, else the diversity guard's
    reference, else the generator's training split (memoised in ``components.cache``)."""
    from crystaloop.loop.components import training_split

    specs = config.sun.reference
    if specs is None:
        if components.reference is not None:
            return components.reference
        split = training_split(components.generator)
        specs = (split,) if split is not None else ()
    if not specs:
        return None
    key = ("sun-reference", tuple(specs))
    if key not in components.cache:
        components.cache[key] = StructureIndex.from_datasets(specs)
    return components.cache[key]


def imported_structures(store: CandidateStore, formulas: Iterable[str]) -> StructureIndex:
    """The store's imported candidates (status ``imported``) of these reduced formulas."""
    index = StructureIndex()
    for formula in sorted(set(formulas)):
        for c in store.query(CandidateFilter(status=[CandidateStatus.IMPORTED], reduced_formula=formula, limit=_ALL)):
            index.add(c.crystal, f"imported {c.id[:12]} ({c.provenance.source or 'no source'})", canonical_hash=c.id)
    return index


def iteration_sun(
    components: Components, store: CandidateStore, config: CampaignConfig, index: int, evaluated: Sequence[Candidate], oracle_calls: int
) -> SunSummary | None:
    """S.U.N. summary of iteration ``index``'s ``evaluated`` candidates, unique against the
    campaign's earlier iterations; ``None`` with ``sun.enabled`` off. StructureMatcher tolerances
    are the diversity guard's."""
    if not config.sun.enabled:
        return None
    everything = store.query(CandidateFilter(campaign=config.name, status=[CandidateStatus.EVALUATED], limit=_ALL))
    earlier = [c for c in everything if c.provenance.iteration is not None and c.provenance.iteration < index]
    reference = sun_reference(components, config)
    references = [reference] if reference is not None else []
    if config.sun.against_imported:
        references.append(imported_structures(store, (c.crystal.reduced_formula for c in evaluated)))
    diversity = config.guards.diversity
    matcher = Matcher(stol=diversity.stol, ltol=diversity.ltol, angle_tol=diversity.angle_tol, max_comparisons=config.sun.max_comparisons)
    verdicts = classify_sun(evaluated, references, config.sun, earlier=earlier, matcher=matcher)
    for v in verdicts:
        logger.debug("%s %s: S.U.N. %s%s", v.id[:12], v.formula, v.sun, f" ({'; '.join(v.reasons)})" if v.reasons else "")
    summary = summarise_sun(verdicts, oracle_calls, config.sun, sum(len(r) for r in references))
    logger.info("iteration %d of %s: %s", index, config.name, summary.describe())
    return summary
