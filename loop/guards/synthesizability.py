"""Synthesizability / stability guard: measured hull distance when there is one, a heuristic before.

* With an ``ok`` ``e_above_hull`` Measurement (eV/atom) on the candidate: pass when it is at most
  ``max_e_above_hull`` (default 0.1 eV/atom), the usual metastability window, *and* the
  composition passes the heuristic below: a hull distance says the oracle finds the structure
  stable, not that the composition can be made (issue 19's provoked stability–synthesizability
  gap: charge-imbalanced candidates with good hull values all passed once measured).
* With only an ``unconverged`` one (its relaxation stopped at the step cap): fail, whatever its
  value; an unfinished relaxation is no stability verdict, and the heuristic must not stand in
  for a measurement that was made.
* Without one (before the oracle ran) a cheap heuristic, stated plainly: the composition must
  admit a charge-neutral assignment of SMACT's common oxidation states (the electronegativity
  test left off, that is the validity guard's job; elemental solids pass), and hold at most
  ``max_elements`` distinct elements. It screens out compositions no chemist would attempt; it
  says nothing about whether a structure is stable. Where the surrogate marks a candidate far
  out of distribution (OOD score above 3) and the heuristic is all there is, the reason says so:
  its only merit is a surrogate score far from known chemistry.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from crystaloop.data.records import Candidate, Verdict
from crystaloop.data.validity import smact_default_validity
from crystaloop.loop.guards.base import GuardContext

__all__ = ["SynthesizabilityGuardConfig", "SynthesizabilityGuard", "FAR_FROM_KNOWN_OOD"]

FAR_FROM_KNOWN_OOD = 3.0
"""OOD score above which a heuristic pass is annotated as far from known chemistry."""


class SynthesizabilityGuardConfig(BaseModel):
    """Stability window (eV/atom) when measured, an oxidation-state heuristic before that."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = True
    max_e_above_hull: float = Field(0.1, ge=0, description="eV/atom")
    max_elements: int = Field(5, ge=1, description="heuristic: more distinct elements than this is refused")


class SynthesizabilityGuard:
    """See the module docstring."""

    name = "synthesizability"
    context_free = False

    def __init__(self, config: SynthesizabilityGuardConfig | None = None) -> None:
        self.config = config or SynthesizabilityGuardConfig()

    def composition_problem(self, candidate: Candidate) -> str | None:
        """Why the composition fails the heuristic (too many elements, no charge-neutral
        assignment of common oxidation states), or ``None``."""
        crystal = candidate.crystal
        n_elements = len(crystal.elements)
        if n_elements > self.config.max_elements:
            return f"{n_elements} elements > {self.config.max_elements}"
        if n_elements > 1 and not smact_default_validity(crystal.reduced_formula, use_pauling_test=False):
            return f"no charge-neutral oxidation states for {crystal.reduced_formula}"
        return None

    def check(self, candidate: Candidate, context: GuardContext) -> Verdict:
        hull = [m for m in candidate.measurements if m.property == "e_above_hull" and m.status == "ok"]
        if hull and hull[0].value is not None:
            value = float(hull[0].value)
            ok = value <= self.config.max_e_above_hull
            relation = "≤" if ok else ">"
            reason = f"measured e_above_hull {value:.3g} eV/atom {relation} {self.config.max_e_above_hull} ({hull[0].oracle})"
            problem = self.composition_problem(candidate) if ok else None
            if problem is not None:
                return Verdict(guard=self.name, ok=False, reason=f"{reason}, but {problem}: stable to the oracle, implausible to make", score=value)
            return Verdict(guard=self.name, ok=ok, reason=reason, score=value)
        unconverged = [m for m in candidate.measurements if m.property == "e_above_hull" and m.status == "unconverged"]
        if unconverged:
            m = unconverged[0]
            shown = f"{m.value:.3g} eV/atom" if m.value is not None else "no value"
            return Verdict(
                guard=self.name,
                ok=False,
                reason=f"e_above_hull unconverged ({shown}, {m.oracle}): not a stability verdict; {m.reason}".rstrip("; "),
                score=m.value,
            )
        problem = self.composition_problem(candidate)
        if problem is not None:
            return Verdict(guard=self.name, ok=False, reason=f"heuristic: {problem}")
        ood = context.ood.get(candidate.id)
        note = "heuristic only (oxidation states, element count); not measured"
        if ood is not None and ood > FAR_FROM_KNOWN_OOD:
            note += f"; far from known chemistry (OOD {ood:.3g})"
        return Verdict(guard=self.name, ok=True, reason=note)
