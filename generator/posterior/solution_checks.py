"""Checks on the answer of ``solve-xrd``: should a user trust the best solution for this pattern?

The toy problem's diagnostics (:mod:`.diagnostics`) compare a sampler with the exact posterior;
a measured pattern has no exact posterior, so these checks read what one run of
:func:`~crystaloop.generator.posterior.xrd.solve_pattern` already has: the ranked, refined
solutions (one per chain), the chains' early-stopped answers (``PosteriorConfig.snapshot_step``)
and the KL scores. Solutions are grouped into **modes** (structurally distinct answers, the
matcher's ``same_structure`` preset); a mode's weight is the fraction of solutions in it and its
Rwp the best of its members.

Flags, each a reason to distrust the best solution (thresholds in :class:`SolutionCheckConfig`):

* ``poor_fit``: the best refined Rwp is above ``max_rwp``: nothing sampled explains the pattern;
* ``ambiguous``: another mode's Rwp is within ``tie_rwp`` of the best: the pattern does not tell
  two structures apart;
* ``weak_support``: fewer than ``min_support`` solutions fall in the best solution's mode: the
  guided chains did not agree;
* ``hallucinated``: more than ``max_hallucination`` of the solutions fall in modes whose Rwp is
  worse than the best by over ``ruled_out_rwp`` (modes the pattern rules out);
* ``early_disagrees``: the best early-stopped answer is a different structure from the best final
  one: the answer depends on where sampling stops;
* ``out_of_domain``: the mean KL score is below ``min_kl`` nats: the pattern gave the generator
  nothing to pull on (see :mod:`.sampler`).

The shipped thresholds were calibrated on one half of held-out perov_5/val patterns and are
measured on the other half by ``benchmarks/bench_xrd_checks.py`` (how often each flag fires on a
wrong best solution and on a right one); they are not universal constants. They are **weak
signals**: on those patterns no single check separates wrong best solutions from right ones with a
ROC-AUC much above 0.6, so a flag says "look closer", and its absence proves nothing (the figures
are in ``benchmarks/RESULTS.md``). ``out_of_domain`` is off by default: its threshold depends on
the number of steps and the step sizes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from crystaloop.data.errors import CrystaloopError

if TYPE_CHECKING:
    from crystaloop.generator.posterior.xrd import XRDSolution

__all__ = ["FLAGS", "SolutionCheckConfig", "SolutionChecks", "SolutionMode", "check_solutions", "group_modes"]

FLAGS: dict[str, str] = {
    "poor_fit": "the best Rwp is high: nothing sampled explains the pattern",
    "ambiguous": "another distinct structure fits almost as well",
    "weak_support": "few guided chains agree on the best structure",
    "hallucinated": "most chains ended in structures the pattern rules out",
    "early_disagrees": "the early-stopped answer is a different structure",
    "out_of_domain": "the pattern barely moved the generator off its prior (low KL)",
}
"""Every flag :func:`check_solutions` can raise, with the sentence shown to a user."""


class SolutionCheckConfig(BaseModel):
    """Thresholds of the flags (Rwp is a fraction, KL in nats; see the module docstring).

    ``None`` turns a flag off. Defaults: calibrated by ``benchmarks/bench_xrd_checks.py``
    (RESULTS.md) for the shipped perov_5 teacher at 100 guided steps.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_rwp: float | None = Field(0.46, gt=0.0)
    tie_rwp: float | None = Field(0.005, ge=0.0)
    min_support: int | None = Field(2, ge=1)
    ruled_out_rwp: float = Field(0.05, ge=0.0)
    max_hallucination: float | None = Field(0.75, ge=0.0, le=1.0)
    check_early: bool = True
    min_kl: float | None = Field(None, ge=0.0)


@dataclass(frozen=True)
class SolutionMode:
    """One structurally distinct answer.

    Attributes: members: indices into the ranked solutions (best first); weight: members / all
    solutions; rwp: the best member's Rwp; formula: its reduced formula.
    """

    members: tuple[int, ...]
    weight: float
    rwp: float
    formula: str


@dataclass(frozen=True)
class SolutionChecks:
    """What the checks found for one pattern.

    Attributes:
        modes: the distinct answers, best Rwp first (``modes[0]`` holds the best solution).
        support: solutions in the best solution's mode.
        hallucination_rate: fraction of solutions in modes the pattern rules out.
        runner_up_gap: Rwp of the second mode minus the best (``inf`` with one mode).
        early_agrees: whether the best early-stopped answer matches the best final one
            (``None`` without a snapshot).
        mean_kl: mean KL score over the chains, nats.
        flags: the names of the raised flags (keys of :data:`FLAGS`), in that order.
    """

    modes: list[SolutionMode]
    support: int
    hallucination_rate: float
    runner_up_gap: float
    early_agrees: bool | None
    mean_kl: float
    flags: tuple[str, ...] = field(default=())

    @property
    def trusted(self) -> bool:
        """No flag raised."""
        return not self.flags

    def as_dict(self) -> dict:
        """JSON-ready summary (modes as weight / Rwp / formula)."""
        return {"flags": list(self.flags), "support": self.support, "hallucination_rate": self.hallucination_rate,
                "runner_up_gap": None if not np.isfinite(self.runner_up_gap) else self.runner_up_gap,
                "early_agrees": self.early_agrees, "mean_kl": self.mean_kl,
                "modes": [{"weight": m.weight, "rwp": m.rwp, "formula": m.formula, "members": list(m.members)} for m in self.modes]}


def group_modes(solutions: Sequence[XRDSolution], matcher) -> list[SolutionMode]:  # noqa: ANN001 - a pymatgen StructureMatcher
    """Group ranked ``solutions`` (best first) into distinct structures: each joins the first mode
    whose best member ``matcher.fit``s it, else opens a new one. Modes come out best Rwp first."""
    representatives: list[tuple[object, list[int]]] = []
    for index, solution in enumerate(solutions):
        structure = solution.crystal.to_pymatgen()
        for representative, members in representatives:
            if matcher.fit(representative, structure):
                members.append(index)
                break
        else:
            representatives.append((structure, [index]))
    total = len(solutions)
    return [SolutionMode(members=tuple(members), weight=len(members) / total, rwp=solutions[members[0]].rwp,
                         formula=solutions[members[0]].crystal.reduced_formula) for _, members in representatives]


def check_solutions(solutions: Sequence[XRDSolution], kl: np.ndarray, *, early: Sequence[XRDSolution] = (),
                    config: SolutionCheckConfig | None = None, matcher=None) -> SolutionChecks:  # noqa: ANN001
    """Run every check on one pattern's ranked ``solutions`` (best first).

    Args:
        solutions: the refined solutions from ``solve_pattern``, best Rwp first.
        kl: (B,) KL scores of all chains, nats (``PosteriorSamples.kl``).
        early: the chains' early-stopped answers, ranked (``snapshot_solutions``); empty skips
            the early-stopping check.
        config: thresholds; the calibrated defaults when ``None``.
        matcher: a StructureMatcher; the ``same_structure`` preset of :mod:`crystaloop.data.matching` by default.

    Raises:
        CrystaloopError: no solutions (every chain collapsed: there is nothing to check).
    """
    if not solutions:
        raise CrystaloopError("no solutions to check: every chain collapsed")
    config = config or SolutionCheckConfig()
    if matcher is None:
        from crystaloop.data.matching import structure_matcher

        matcher = structure_matcher("same_structure")
    modes = group_modes(solutions, matcher)
    best = modes[0]
    ruled_out = sum(m.weight for m in modes if m.rwp > best.rwp + config.ruled_out_rwp)
    gap = modes[1].rwp - best.rwp if len(modes) > 1 else float("inf")
    early_agrees = None
    if early and config.check_early:
        early_agrees = bool(matcher.fit(early[0].crystal.to_pymatgen(), solutions[0].crystal.to_pymatgen()))
    mean_kl = float(np.mean(kl)) if len(kl) else float("nan")
    raised = {
        "poor_fit": config.max_rwp is not None and best.rwp > config.max_rwp,
        "ambiguous": config.tie_rwp is not None and gap <= config.tie_rwp,
        "weak_support": config.min_support is not None and len(best.members) < config.min_support,
        "hallucinated": config.max_hallucination is not None and ruled_out > config.max_hallucination,
        "early_disagrees": early_agrees is False,
        "out_of_domain": config.min_kl is not None and mean_kl < config.min_kl,
    }
    return SolutionChecks(modes=modes, support=len(best.members), hallucination_rate=float(ruled_out), runner_up_gap=float(gap),
                          early_agrees=early_agrees, mean_kl=mean_kl, flags=tuple(name for name in FLAGS if raised[name]))
