"""Writing what the commands produce: generated candidates and relaxed structures, by extension
(.cif, .xyz/.extxyz, .json; see :mod:`crystaloop.data.datasets.files` for the layouts)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

from crystaloop.commands.common import exit_on_error

__all__ = ["candidate_info", "write_candidates", "write_relaxed"]

logger = logging.getLogger(__name__)


def candidate_info(candidate) -> dict:  # noqa: ANN001 - a data.records.Candidate
    """Provenance (generator, version, checkpoint, config hash, seed), condition and status of a candidate."""
    p = candidate.provenance
    info = {"generator": p.component, "version": p.version or None, "checkpoint": p.checkpoint_hash,
            "config_hash": p.config_hash, "seed": p.seed, "campaign": p.campaign, "source": p.source,
            "status": str(getattr(candidate.status, "value", candidate.status))}
    if candidate.condition is not None:
        info["condition"] = candidate.condition.model_dump(mode="json", exclude_none=True)
    if candidate.verdicts:
        info["verdicts"] = [f"{v.guard}: {'ok' if v.ok else 'failed'}{' (' + v.reason + ')' if v.reason else ''}" for v in candidate.verdicts]
    return {k: v for k, v in info.items() if v is not None}


def write_candidates(path: Path, candidates: Sequence) -> None:
    """Write candidates with their provenance: symmetrised CIF blocks, extxyz frames or pymatgen JSON."""
    from crystaloop.data.datasets.files import write_structure_file

    with exit_on_error():
        write_structure_file(path, [c.crystal for c in candidates], ids=[c.id for c in candidates],
                             info=[candidate_info(c) for c in candidates])


def write_relaxed(path: Path, oracle, ids: Sequence[str], relaxations: Sequence) -> int:  # noqa: ANN001
    """Write each relaxed structure with energy (eV), forces (eV/Å) and stress (eV/Å³) from the
    oracle's calculator on the final cell, and status, reason, steps, fmax and energy per atom
    in its info; returns how many were written (failed relaxations have no structure)."""
    from crystaloop.data.datasets.files import write_structure_file

    crystals, kept_ids, info, results = [], [], [], []
    for ident, relaxation in zip(ids, relaxations, strict=True):
        if relaxation.final is None:
            continue
        crystals.append(relaxation.final)
        kept_ids.append(str(ident))
        info.append({"oracle": oracle.name, "status": relaxation.status, "reason": relaxation.reason or None,
                     "steps": relaxation.steps, "fmax": relaxation.fmax, "energy_per_atom": relaxation.energy_per_atom,
                     "initial_hash": relaxation.initial_hash})
        results.append(_single_point(oracle, relaxation.final))
    if crystals:  # an extxyz without frames is unreadable; write nothing instead
        write_structure_file(path, crystals, ids=kept_ids, info=info, results=results)
    return len(crystals)


def _single_point(oracle, crystal) -> dict | None:  # noqa: ANN001
    atoms = crystal.to_ase()
    atoms.calc = oracle.calculator
    try:
        return {"energy": float(atoms.get_potential_energy()), "forces": atoms.get_forces(), "stress": atoms.get_stress()}
    except Exception as exc:  # noqa: BLE001 - a calculator failing on one cell must not lose the others
        logger.warning("no energy/forces/stress for %s: %s", crystal.reduced_formula, exc)
        return None
