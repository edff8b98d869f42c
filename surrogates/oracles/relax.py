"""Relax one structure with any ASE calculator, with guards that turn bad runs into failures.

:func:`relax_atoms` runs an ASE optimizer (FIRE or BFGS, optionally on a ``FrechetCellFilter``
so the cell relaxes too) and checks, in order of cost:

* before any calculation: no two sites closer than ``min_distance`` (Å), periodic images
  included (overlapping atoms make most calculators return garbage rather than raise);
* after every energy evaluation: energy and forces finite (NaN detection) and
  ``|E| / N ≤ max_abs_energy_per_atom`` (eV/atom, an exploding model);
* between optimizer steps: the wall-clock ``timeout_s`` (no signals are used, so a single
  calculator call that hangs is not interrupted; give DFT calculators their own time limit);
* after the run: the volume changed by at most ``max_volume_factor`` either way, the cell
  distorted by at most ``max_cell_strain`` (largest principal Green–Lagrange strain between
  the input and the final cell, dimensionless, :func:`max_cell_strain`) and no two sites
  closer than ``min_distance``.

A run that passes every check but stopped at ``max_steps`` without reaching ``fmax`` is marked
``capped`` (the oracle reports it as ``unconverged``: its energy is kept for inspection, never
used as a converged one). ``max_steps=0`` asks for the input's energy and is never capped.

Each failed check gives an :class:`Outcome` with ``ok=False`` and a reason naming the value
and the limit; exceptions from the calculator propagate to the caller, which decides whether
they are a failed calculation or an infrastructure fault (:mod:`.base`).
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import ase
    from ase.calculators.calculator import Calculator

    from crystaloop.surrogates.oracles.base import RelaxConfig

__all__ = ["Outcome", "relax_atoms", "single_point_atoms", "closest_pair", "max_force", "max_cell_strain"]

logger = logging.getLogger(__name__)


@dataclass
class Outcome:
    """What one relaxation (or single point) of an ``ase.Atoms`` produced.

    Attributes:
        ok: every check passed.
        reason: why it failed, or a note on a successful run (``"not converged ..."``).
        atoms: the final atoms (relaxed in place); ``None`` when the run never started.
        energy_per_atom: final energy, eV/atom.
        initial_energy_per_atom: energy of the input structure, eV/atom.
        fmax: final largest force the optimizer saw, eV/Å (with the cell filter this includes
            the cell's generalised forces, the virial divided by the cell's deformation scale).
        initial_fmax: the same for the input structure, eV/Å.
        steps: optimizer steps taken.
        converged: the optimizer reached ``fmax`` within ``max_steps``.
        capped: the optimizer stopped at ``max_steps > 0`` without reaching ``fmax``.
        cell_strain: largest principal Green–Lagrange strain of the cell, input → final
            (dimensionless; 0 for a fixed cell).
    """

    ok: bool
    reason: str = ""
    atoms: ase.Atoms | None = None
    energy_per_atom: float | None = None
    initial_energy_per_atom: float | None = None
    fmax: float | None = None
    initial_fmax: float | None = None
    steps: int = 0
    converged: bool = False
    capped: bool = False
    cell_strain: float = 0.0


def max_cell_strain(initial_cell: np.ndarray, final_cell: np.ndarray) -> float:
    """Largest principal Green–Lagrange strain (dimensionless, absolute value) taking the cell
    ``initial_cell`` to ``final_cell`` (3×3, rows are lattice vectors, Å).

    With rows as vectors, ``final = initial @ M``; the deformation gradient is ``F = Mᵀ`` and the
    strain ``E = (FᵀF − I) / 2 = (M Mᵀ − I) / 2``. A vector stretched by a factor ``s`` has a
    principal strain ``(s² − 1) / 2``: 0.5 is a stretch by √2 ≈ 1.41, −0.375 a halving.
    """
    initial = np.asarray(initial_cell, dtype=np.float64)
    final = np.asarray(final_cell, dtype=np.float64)
    m = np.linalg.solve(initial, final)
    strain = 0.5 * (m @ m.T - np.eye(3))
    return float(np.abs(np.linalg.eigvalsh(0.5 * (strain + strain.T))).max())


def closest_pair(atoms: ase.Atoms, cutoff: float) -> tuple[int, int, float] | None:
    """The closest pair of sites (i, j, distance in Å) nearer than ``cutoff``, periodic images
    included, or ``None`` when no pair is that close."""
    from ase.neighborlist import neighbor_list

    i, j, d = neighbor_list("ijd", atoms, cutoff, self_interaction=False)
    if d.size == 0:
        return None
    k = int(np.argmin(d))
    return int(i[k]), int(j[k]), float(d[k])


def max_force(forces: np.ndarray) -> float:
    """Largest per-row force norm of an (M, 3) array, eV/Å."""
    forces = np.asarray(forces, dtype=np.float64).reshape(-1, 3)
    return float(np.sqrt((forces**2).sum(axis=1)).max()) if forces.size else 0.0


def _overlap_reason(atoms: ase.Atoms, min_distance: float, when: str) -> str | None:
    if min_distance <= 0:
        return None
    pair = closest_pair(atoms, min_distance)
    if pair is None:
        return None
    i, j, d = pair
    symbols = atoms.get_chemical_symbols()
    return (
        f"overlapping atoms {when}: sites {i} ({symbols[i]}) and {j} ({symbols[j]}) are {d:.3f} Å apart; "
        f"the minimum allowed is {min_distance} Å"
    )


def _energy_reason(energy: float, n_atoms: int, limit: float, when: str) -> str | None:
    if not math.isfinite(energy):
        return f"energy is {energy} (not finite) {when}"
    per_atom = energy / n_atoms
    if abs(per_atom) > limit:
        return f"energy exploded {when}: {per_atom:.4g} eV/atom exceeds the limit of ±{limit} eV/atom"
    return None


def single_point_atoms(atoms: ase.Atoms, calculator: Calculator, config: RelaxConfig) -> Outcome:
    """Energy of ``atoms`` as given (no relaxation), with the overlap, NaN and explosion checks."""
    reason = _overlap_reason(atoms, config.min_distance, "in the input")
    if reason:
        return Outcome(ok=False, reason=reason)
    atoms.calc = calculator
    energy = float(atoms.get_potential_energy())
    reason = _energy_reason(energy, len(atoms), config.max_abs_energy_per_atom, "for the input structure")
    if reason:
        return Outcome(ok=False, reason=reason, atoms=atoms)
    return Outcome(
        ok=True, atoms=atoms, energy_per_atom=energy / len(atoms), initial_energy_per_atom=energy / len(atoms)
    )


def relax_atoms(atoms: ase.Atoms, calculator: Calculator, config: RelaxConfig) -> Outcome:
    """Relax ``atoms`` in place with ``calculator`` under ``config``; see the module docstring.

    Exceptions raised by the calculator or the optimizer propagate unchanged.
    """
    start = time.perf_counter()
    n = len(atoms)
    reason = _overlap_reason(atoms, config.min_distance, "in the input")
    if reason:
        return Outcome(ok=False, reason=reason)
    atoms.calc = calculator
    initial_volume = float(atoms.get_volume())
    initial_cell = np.array(atoms.cell)
    e0 = float(atoms.get_potential_energy())
    reason = _energy_reason(e0, n, config.max_abs_energy_per_atom, "for the input structure")
    if reason:
        return Outcome(ok=False, reason=reason, atoms=atoms)
    forces0 = atoms.get_forces()
    if not np.all(np.isfinite(forces0)):
        return Outcome(ok=False, reason="forces are not finite for the input structure", atoms=atoms)
    outcome = Outcome(ok=True, atoms=atoms, initial_energy_per_atom=e0 / n, energy_per_atom=e0 / n)

    target = atoms
    if config.relax_cell:
        from ase.filters import FrechetCellFilter

        target = FrechetCellFilter(atoms)
    outcome.initial_fmax = max_force(target.get_forces())
    outcome.fmax = outcome.initial_fmax
    if config.max_steps == 0:
        outcome.converged = outcome.initial_fmax < config.fmax
        return outcome

    optimizer = _make_optimizer(config.optimizer, target)
    for converged in optimizer.irun(fmax=config.fmax, steps=config.max_steps):
        outcome.steps = int(optimizer.nsteps)
        energy = float(atoms.get_potential_energy())
        reason = _energy_reason(energy, n, config.max_abs_energy_per_atom, f"at step {outcome.steps}")
        if reason is None and not np.all(np.isfinite(atoms.get_forces())):
            reason = f"forces are not finite at step {outcome.steps}"
        if reason:
            outcome.ok, outcome.reason = False, reason
            return outcome
        outcome.energy_per_atom = energy / n
        if converged:
            outcome.converged = True
            break
        elapsed = time.perf_counter() - start
        if elapsed > config.timeout_s:
            outcome.ok = False
            outcome.reason = f"timed out after {elapsed:.3g} s at step {outcome.steps} (limit {config.timeout_s} s)"
            return outcome
    outcome.fmax = max_force(target.get_forces())

    ratio = float(atoms.get_volume()) / initial_volume
    if not 1.0 / config.max_volume_factor <= ratio <= config.max_volume_factor:
        outcome.ok = False
        outcome.reason = (
            f"volume changed by a factor of {ratio:.3g} during relaxation; "
            f"allowed 1/{config.max_volume_factor}..{config.max_volume_factor}"
        )
        return outcome
    outcome.cell_strain = max_cell_strain(initial_cell, np.array(atoms.cell))
    if outcome.cell_strain > config.max_cell_strain:
        outcome.ok = False
        outcome.reason = (
            f"cell distorted during relaxation: largest principal Green-Lagrange strain {outcome.cell_strain:.3g} "
            f"exceeds max_cell_strain {config.max_cell_strain}"
        )
        return outcome
    reason = _overlap_reason(atoms, config.min_distance, "after relaxation")
    if reason:
        outcome.ok, outcome.reason = False, reason
        return outcome
    if not outcome.converged:
        outcome.capped = True
        outcome.reason = (
            f"not converged after {outcome.steps} steps (max_steps {config.max_steps}; fmax {outcome.fmax:.3g} eV/Å "
            f"> {config.fmax} eV/Å); energy of the last step"
        )
    return outcome


def _make_optimizer(name: str, target: object):
    from ase.optimize import BFGS, FIRE

    optimizers = {"FIRE": FIRE, "BFGS": BFGS}
    return optimizers[name](target, logfile=None)
