"""The project's one structure matcher: pymatgen's ``StructureMatcher`` built from a named preset.

Tolerances live here and only here, as :class:`MatcherTolerances` presets:

* ``"csp"`` (:data:`CSP`), the CSP protocol's (DESIGN.md, "Reference protocols"; CDVAE/DiffCSP):
  site tolerance ``stol=0.5`` (fraction of the average free length per atom, (V/N)^(1/3)),
  lattice length tolerance ``ltol=0.3`` (fraction) and angle tolerance ``angle_tol=10`` degrees;
  a match is ``get_rms_dist`` returning a value. Used by the generator's CSP metrics and the
  benchmarks that report match rates.
* ``"same_structure"`` (:data:`SAME_STRUCTURE`): "is this the same structure?" for the loop's
  novelty / duplicate index (its configurable defaults), S.U.N. uniqueness and the hull's
  check that a relaxation kept the structure. Today the same numbers as ``"csp"``; named apart
  so that changing one is a visible decision, not a side effect.

Primitive cells and volume scaling are on (pymatgen's defaults) in both.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from crystaloop.data.errors import UnknownComponentError

__all__ = [
    "MatcherTolerances",
    "CSP",
    "SAME_STRUCTURE",
    "MATCHER_PRESETS",
    "structure_matcher",
]


@dataclass(frozen=True)
class MatcherTolerances:
    """StructureMatcher tolerances: ``stol`` (fraction of (V/N)^(1/3)), ``ltol`` (fraction of a
    lattice length), ``angle_tol`` (degrees). All must be positive."""

    stol: float
    ltol: float
    angle_tol: float

    def __post_init__(self) -> None:
        for name in ("stol", "ltol", "angle_tol"):
            value = getattr(self, name)
            if not value > 0:
                raise ValueError(f"StructureMatcher tolerance {name} must be > 0, got {value}")


CSP = MatcherTolerances(stol=0.5, ltol=0.3, angle_tol=10.0)
"""The CSP protocol's tolerances (metrics)."""
SAME_STRUCTURE = MatcherTolerances(stol=CSP.stol, ltol=CSP.ltol, angle_tol=CSP.angle_tol)
"""Novelty, duplicates, S.U.N. uniqueness, the hull's "relaxation kept the structure"."""
MATCHER_PRESETS: dict[str, MatcherTolerances] = {"csp": CSP, "same_structure": SAME_STRUCTURE}


def structure_matcher(preset: str = "csp", *, stol: float | None = None, ltol: float | None = None,
                      angle_tol: float | None = None) -> Any:
    """A pymatgen ``StructureMatcher`` (imported on first use) with ``preset``'s tolerances,
    each overridable (a user's configured tolerances).

    Raises:
        UnknownComponentError: ``preset`` is not in :data:`MATCHER_PRESETS`.
        ValueError: a tolerance is not positive (the message names it and its value).
    """
    if preset not in MATCHER_PRESETS:
        raise UnknownComponentError("matcher preset", preset, MATCHER_PRESETS)
    base = MATCHER_PRESETS[preset]
    tolerances = MatcherTolerances(
        stol=base.stol if stol is None else stol,
        ltol=base.ltol if ltol is None else ltol,
        angle_tol=base.angle_tol if angle_tol is None else angle_tol,
    )
    from pymatgen.analysis.structure_matcher import StructureMatcher

    return StructureMatcher(stol=tolerances.stol, ltol=tolerances.ltol, angle_tol=tolerances.angle_tol)
