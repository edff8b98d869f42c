"""MLIPOracle: an unconverged relaxation gives unconverged measurements, never an ok hull distance."""

from __future__ import annotations

import numpy as np
from ase.build import bulk

from crystaloop.data.crystal import Crystal
from crystaloop.data.records import Candidate, Provenance
from crystaloop.loop.guards import GuardContext, SynthesizabilityGuard
from crystaloop.surrogates.oracles import RelaxConfig
from crystaloop.surrogates.oracles.mlip import MLIPOracle
from crystaloop.surrogates.oracles.registry import emt_oracle


def _distorted_cu() -> Crystal:
    """Conventional fcc Cu, expanded by 8 % and rattled: far from converged after 4 steps."""
    atoms = bulk("Cu", "fcc", a=3.61 * 1.08, cubic=True)
    atoms.rattle(stdev=0.08, seed=3)
    return Crystal.from_ase(atoms)


def test_unconverged_relaxation_is_reported_as_unconverged_and_fails_the_stability_guard() -> None:
    oracle = MLIPOracle(emt_oracle(relax=RelaxConfig(fmax=0.05, max_steps=4)), ["energy_per_atom", "e_above_hull"])
    assert oracle.hull.reference("Cu").status == "ok"  # the fcc reference converges within the cap
    energy, hull = oracle.evaluate([_distorted_cu()])
    assert energy.status == "unconverged" and energy.value is not None and np.isfinite(energy.value)
    assert hull.property == "e_above_hull" and hull.status == "unconverged" and hull.value is not None
    assert "unconverged relaxation" in hull.reason and not hull.usable
    candidate = Candidate(crystal=_distorted_cu(), provenance=Provenance(component="t"), measurements=(energy, hull))
    verdict = SynthesizabilityGuard().check(candidate, GuardContext())
    assert not verdict.ok and "unconverged" in verdict.reason and "not a stability verdict" in verdict.reason
