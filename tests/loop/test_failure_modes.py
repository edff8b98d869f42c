"""Each guard catches its provoked failure and lets an unprovoked case through (issue 19).

* exploitation: a region (every candidate containing Zn) where the surrogate was measured to be
  confidently over-optimistic, against a campaign whose misses are ordinary everywhere;
* collapse: near-copies of one structure against distinct perovskites;
* synthesizability: a charge-imbalanced composition with a good measured hull value against a
  charge-balanced one.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from crystaloop.data.crystal import Crystal
from crystaloop.data.records import Candidate, Measurement, Provenance
from crystaloop.data.store.testing import base_cells, perovskite, perturbed_crystals
from crystaloop.loop.collapse import Adjustment, assess
from crystaloop.loop.config import CollapseMonitorConfig, Objective
from crystaloop.loop.guards import (
    DiversityGuard,
    ExploitationGuard,
    GuardContext,
    ResidualHistory,
    SynthesizabilityGuard,
    collapse_report,
    screen,
)
from crystaloop.loop.guards.exploitation import optimism

PROV = Provenance(component="test")
HEAT = Objective(property="heat_all", goal="minimise", threshold=0.5, units="eV")


def _measured(crystal: Crystal, predicted: float, measured: float, std: float = 0.3) -> Candidate:
    return Candidate(
        crystal=crystal,
        provenance=PROV,
        predictions={"heat_all": (predicted, std, "eV")},
        measurements=(Measurement(oracle="replay", property="heat_all", value=measured, units="eV"),),
    )


def _history(zn_miss: float, rng: np.random.Generator) -> ResidualHistory:
    """Twelve measured perovskites: four with Zn on the B site missed by ``zn_miss`` eV in the
    surrogate's favour, the rest by ordinary noise (std 0.3 eV, the stated std)."""
    candidates = []
    for a in ("Sr", "Ba", "Ca", "K"):
        candidates.append(_measured(perovskite(a_site=a, b_site="Zn"), -0.5, -0.5 + zn_miss + 0.3 * rng.normal()))
        for b in ("Ti", "Zr"):
            candidates.append(_measured(perovskite(a_site=a, b_site=b), 0.0, 0.3 * rng.normal()))
    return ResidualHistory.from_candidates(candidates, (HEAT,))


def _context(candidate: Candidate, history: ResidualHistory) -> GuardContext:
    return GuardContext(predictions={candidate.id: {"heat_all": (-1.0, 0.3, "eV")}}, reference_std={"heat_all": 0.3}, residuals=history)


def test_optimism_signs_follow_the_goal():
    assert optimism(1.0, 0.0, 0.5, HEAT) == pytest.approx(2.0)  # minimise: measured worse than predicted
    assert optimism(0.0, 1.0, 0.5, HEAT.model_copy(update={"goal": "maximise", "threshold": None})) == pytest.approx(2.0)
    window = Objective(property="dir_gap", goal="target", window=(1.5, 2.5), units="eV")
    assert optimism(3.5, 2.0, 0.5, window) == pytest.approx(2.0) and optimism(2.0, 3.5, 0.5, window) < 0


def test_exploitation_guard_refuses_a_region_the_surrogate_was_shown_to_flatter():
    rng = np.random.default_rng(0)
    guard = ExploitationGuard()
    trapped, elsewhere = Candidate(crystal=perovskite(a_site="Rb", b_site="Zn"), provenance=PROV), Candidate(crystal=perovskite(a_site="Rb", b_site="Hf"), provenance=PROV)
    provoked = _history(zn_miss=1.5, rng=rng)
    verdict = guard.check(trapped, _context(trapped, provoked))
    assert not verdict.ok and "Zn" in verdict.reason and verdict.score > guard.max_local_optimism
    assert guard.check(elsewhere, _context(elsewhere, provoked)).ok  # no false alarm outside the region
    calm = _history(zn_miss=0.0, rng=rng)
    assert guard.check(trapped, _context(trapped, calm)).ok  # ordinary misses: no alarm
    # the shipped signals alone (no residual history) never see a confidently wrong surrogate
    assert guard.check(trapped, _context(trapped, None)).ok
    # too few measured Zn candidates to judge: pass
    few = ResidualHistory(provoked.elements[:2], {"heat_all": provoked.optimism["heat_all"][:2]})
    assert guard.check(trapped, _context(trapped, few)).ok


def test_collapse_is_caught_and_a_diverse_batch_is_not():
    rng = np.random.default_rng(0)
    copies = perturbed_crystals(base_cells()["SrTiO3"], 12, rng, displacement=0.003, strain=0.0)
    distinct = [perovskite(a_site=a, b_site=b) for a in ("Sr", "Ba", "Ca") for b in ("Ti", "Zr", "Hf", "Sn")]
    monitor = CollapseMonitorConfig()
    for crystals, collapsed in ((copies, True), (distinct, False)):
        results = screen([Candidate(crystal=c, provenance=PROV) for c in crystals], [DiversityGuard()], GuardContext())
        refused = sum(not r.ok for r in results)
        assert refused >= (len(crystals) - 1 if collapsed else 0) and (collapsed or refused == 0)
        batch = [replace(r.candidate, verdicts=r.verdicts) for r in results]
        status = assess(collapse_report(batch), Adjustment(), monitor)
        assert status.collapsed is collapsed
        assert (status.next.guidance_factor < 1) is collapsed


def test_synthesizability_guard_refuses_an_implausible_composition_even_with_a_good_hull():
    guard = SynthesizabilityGuard()
    stable = Measurement(oracle="replay", property="e_above_hull", value=0.0, units="eV/atom")
    imbalanced = perovskite(a_site="K", b_site="Li")  # K+ Li+ O3: no charge-neutral assignment
    before = guard.check(Candidate(crystal=imbalanced, provenance=PROV), GuardContext())
    assert not before.ok and "charge-neutral" in before.reason
    after = guard.check(Candidate(crystal=imbalanced, provenance=PROV, measurements=(stable,)), GuardContext())
    assert not after.ok and "implausible to make" in after.reason and after.score == 0.0
    good = guard.check(Candidate(crystal=perovskite(), provenance=PROV, measurements=(stable,)), GuardContext())
    assert good.ok and "measured" in good.reason
