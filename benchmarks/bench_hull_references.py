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
from crystaloop.surrogates.hull import ATOMIC_ELEMENTS, MOLECULAR_ELEMENTS, reference_structure, trial_structures
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


def _energy_rows(elements: tuple[str, ...]) -> list[dict]:
    oracle = CHGNetOracle(relax=RelaxConfig(fmax=0.05, max_steps=200), cache=None, threads=1)
    rows = []
    for element in elements:
        crystal, source, fixed = reference_structure(element)
        config = oracle.relax_config.model_copy(update={"relax_cell": not fixed})
        (reference,) = oracle.relax([crystal], config=config, use_cache=False)
        trials = []
        for label, trial, trial_fixed in trial_structures(element):
            (result,) = oracle.relax([trial], config=oracle.relax_config.model_copy(update={"relax_cell": not trial_fixed}), use_cache=False)
            if result.status == "ok" and result.energy_per_atom is not None:
                trials.append((result.energy_per_atom, label))
        best_trial, best_label = min(trials)
        rows.append(
            {
                "element": element,
                "reference": source,
                "reference_eV_per_atom": reference.energy_per_atom,
                "best_trial_eV_per_atom": best_trial,
                "best_trial": best_label,
                "reference_minus_trial": reference.energy_per_atom - best_trial,
            }
        )
        logger.info("%s", rows[-1])
    return rows


def _molecular_rows(elements: tuple[str, ...]) -> list[dict]:
    """The dimer-in-a-box reference of each molecular element beside its Δ-test molecular crystal."""
    from ase.collections import dcdft

    from crystaloop.data.crystal import Crystal

    oracle = CHGNetOracle(relax=RelaxConfig(fmax=0.05, max_steps=200), cache=None, threads=1)
    rows = []
    for element in elements:
        dimer, source, _ = reference_structure(element)
        (in_box,) = oracle.relax([dimer], config=oracle.relax_config.model_copy(update={"relax_cell": False}), use_cache=False)
        (crystal,) = oracle.relax([Crystal.from_ase(dcdft[element])], use_cache=False)
        rows.append(
            {
                "element": element,
                "reference": f"{source} (the reference used)",
                "reference_eV_per_atom": in_box.energy_per_atom,
                "best_trial_eV_per_atom": crystal.energy_per_atom,
                "best_trial": f"Δ-test molecular crystal ({crystal.final.n_sites if crystal.final else '?'} atoms), not used",
                "reference_minus_trial": in_box.energy_per_atom - crystal.energy_per_atom if crystal.energy_per_atom is not None else None,
            }
        )
        logger.info("%s", rows[-1])
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
    molecular = ("O",) if quick else tuple(sorted(MOLECULAR_ELEMENTS))
    return _energy_rows(("B", "S") if quick else ELEMENTS) + _molecular_rows(molecular) + _coverage_rows()


if __name__ == "__main__":
    from benchmarks.run_all import run_standalone

    run_standalone(run, __doc__)
