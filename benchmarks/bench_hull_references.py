"""Elemental references for e_above_hull: CHGNet energies of the shipped references against the trial-lattice stand-in, and how many dataset structures get a hull.

For each element that has no ``ase.build.bulk`` reference state but a reference in
:func:`crystaloop.surrogates.hull.reference_structure` (the crown S₈ ring for sulfur, ASE's
Δ-test crystals for B, P, Se, Te, Ga, Mn), one run relaxes with CHGNet 0.3.0 (fmax 0.05 eV/Å,
at most 200 steps, one torch thread, nothing cached) that reference and the trial structures of
``missing_reference="trial_lattices"`` (sc, bcc, fcc, diamond, dimer), and reports both energies
(eV/atom): a lower reference energy is a better estimate of the element's ground state.
Coverage rows count the shipped val structures whose elements all have a reference, with the
current rules and with ASE reference states, dimers and atoms alone (the rules before the ring
and the Δ-test crystals). Molecular rows put the dimer-in-a-box reference of H, N, O, F, Cl, Br
and I beside the Δ-test molecular crystal of the same element (cell relaxed), which the hull
does not use. ``--quick`` relaxes B, S and O only.
"""

from __future__ import annotations

import logging

import torch

from crystaloop.data.datasets import load_dataset
from crystaloop.surrogates.hull import (
    ATOMIC_ELEMENTS,
    MOLECULAR_ELEMENTS,
    EnergyAboveHull,
    delta_test_crystal,
    reference_structure,
)
from crystaloop.surrogates.oracles import CHGNetOracle, RelaxConfig

logger = logging.getLogger(__name__)

ELEMENTS = ("B", "P", "S", "Se", "Te", "Ga", "Mn")


def _has_ase_reference(element: str) -> bool:
    """The rule without the S₈ ring and the Δ-test crystals: an ASE bulk state, a dimer or an atom."""
    from ase.build import bulk

    if element in MOLECULAR_ELEMENTS or element in ATOMIC_ELEMENTS:
        return True
    try:
        bulk(element)
    except (ValueError, RuntimeError, KeyError):
        return False
    return True


def _row(element: str, reference: str, energy: float | None, other_energy: float | None, other: str) -> dict:
    difference = energy - other_energy if energy is not None and other_energy is not None else None
    row = {"element": element, "reference": reference, "reference_eV_per_atom": energy, "best_trial_eV_per_atom": other_energy, "best_trial": other, "reference_minus_trial": difference}
    logger.info("%s", row)
    return row


def _energy_rows(hull: EnergyAboveHull, elements: tuple[str, ...]) -> list[dict]:
    """Each element's reference (relaxed as the hull relaxes it) beside its best trial structure."""
    rows = []
    for element in elements:
        reference = hull.reference(element)
        trials = [(r.energy_per_atom, label) for label, r in hull.trial_references(element) if r.status == "ok" and r.energy_per_atom is not None]
        best_trial, best_label = min(trials)
        rows.append(_row(element, reference_structure(element)[1], reference.energy_per_atom, best_trial, best_label))
    return rows


def _molecular_rows(hull: EnergyAboveHull, elements: tuple[str, ...]) -> list[dict]:
    """The dimer-in-a-box reference of each molecular element beside its Δ-test molecular crystal."""
    rows = []
    for element in elements:
        crystal = hull.relax_reference(delta_test_crystal(element), fixed_cell=False)
        label = f"Δ-test molecular crystal ({crystal.final.n_sites if crystal.final else '?'} atoms), not used"
        rows.append(_row(element, f"{reference_structure(element)[1]} (the reference used)", hull.reference(element).energy_per_atom, crystal.energy_per_atom, label))
    return rows


def _coverage_rows() -> list[dict]:
    rows = []
    for name in ("perov_5/val", "carbon_24/val"):
        dataset = load_dataset(name)
        systems = [set(crystal.symbols) for crystal in dataset.crystals]
        elements = set().union(*systems)
        current = {e for e in elements if reference_structure(e)[0] is not None}
        before = {e for e in elements if _has_ase_reference(e)}
        rows.append(
            {
                "element": f"coverage of {name} ({len(dataset)} structures)",
                "reference": f"with a hull now: {sum(s <= current for s in systems) / len(systems):.1%}",
                "best_trial": f"with ASE states, dimers, atoms only: {sum(s <= before for s in systems) / len(systems):.1%}",
            }
        )
    return rows


def run(quick: bool = False) -> list[dict]:
    torch.set_num_threads(1)
    oracle = CHGNetOracle(relax=RelaxConfig(fmax=0.05, max_steps=200), cache=None, threads=1)  # one model load
    hull = EnergyAboveHull(oracle, cache=None)
    molecular = ("O",) if quick else tuple(sorted(MOLECULAR_ELEMENTS))
    return _energy_rows(hull, ("B", "S") if quick else ELEMENTS) + _molecular_rows(hull, molecular) + _coverage_rows()


if __name__ == "__main__":
    from benchmarks.run_all import run_standalone

    run_standalone(run, __doc__)
