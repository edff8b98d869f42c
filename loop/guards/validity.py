"""Validity guards: campaign constraints, structural plausibility, SMACT compositional validity.

* :class:`ConstraintGuard` (``constraints``): allowed elements / chemical systems and sites per
  cell from the campaign config.
* :class:`ValidityGuard` (``validity``): :func:`~crystaloop.data.crystal.check_plausible`
  (pair distances, volume per site, cell size), a density window (g/cm³) and, for compounds of
  two or more elements, SMACT 4 validity (charge neutrality with SMACT's default oxidation-state
  table plus the Pauling electronegativity order; metals and alloys pass as SMACT allows).
  Elemental solids (one element, e.g. carbon polymorphs) skip the SMACT test: charge
  neutrality says nothing about them.
"""

from __future__ import annotations

import logging

from pydantic import BaseModel, ConfigDict, Field

from crystaloop.data.crystal import PlausibilityLimits
from crystaloop.data.records import Candidate, Verdict
from crystaloop.loop.guards.base import GuardContext

__all__ = ["ValidityGuardConfig", "ConstraintGuard", "ValidityGuard"]

logger = logging.getLogger(__name__)


class ValidityGuardConfig(BaseModel):
    """Structural and compositional validity (distances in Å, densities in g/cm³)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = True
    min_distance: float = Field(0.5, gt=0)
    min_density: float = Field(0.5, gt=0)
    max_density: float = Field(25.0, gt=0)
    smact: bool = Field(True, description="require SMACT charge neutrality + electronegativity order")


class ConstraintGuard:
    """Rejects candidates outside the campaign's elements, chemical systems or size range."""

    name = "constraints"
    context_free = True

    def check(self, candidate: Candidate, context: GuardContext) -> Verdict:
        c = context.constraints
        crystal = candidate.crystal
        if not c.min_atoms <= crystal.n_sites <= c.max_atoms:
            return Verdict(
                guard=self.name,
                ok=False,
                reason=f"{crystal.n_sites} sites outside the allowed [{c.min_atoms}, {c.max_atoms}]",
            )
        if not c.allows(crystal.elements):
            allowed = c.elements if c.elements is not None else ["-".join(s) for s in c.chemical_systems or ()]
            return Verdict(
                guard=self.name, ok=False, reason=f"elements {crystal.elements} outside the allowed {list(allowed)}"
            )
        return Verdict(guard=self.name, ok=True)


class ValidityGuard:
    """Structural and compositional validity; see the module docstring."""

    name = "validity"
    context_free = True

    def __init__(self, config: ValidityGuardConfig | None = None) -> None:
        self.config = config or ValidityGuardConfig()
        self._limits = PlausibilityLimits(min_distance=self.config.min_distance)

    def check(self, candidate: Candidate, context: GuardContext) -> Verdict:
        # the one definition (crystaloop.data.validity): CDVAE protocol validity always, plus
        # plausibility, the density window and SMACT 4's default test (a stricter superset)
        from crystaloop.data.validity import ValidityRules, assess_validity

        rules = ValidityRules(plausibility=self._limits, min_density=self.config.min_density,
                              max_density=self.config.max_density,
                              composition="strict" if self.config.smact else "none")
        result = assess_validity(candidate.crystal, rules)
        score = result.density if result.failed in (None, "density") else None
        return Verdict(guard=self.name, ok=result.ok, reason=result.reason or "", score=score)
