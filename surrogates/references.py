"""Elemental reference structures for hulls: what each element's zero of energy is built from.

:func:`reference_structure` gives, per element, the structure whose relaxed energy is that
element's reference (see :mod:`crystaloop.surrogates.hull` for the order of preference and the
citations); :func:`trial_structures` gives the stand-ins for elements without one.
"""

from __future__ import annotations

import numpy as np

from crystaloop.data.crystal import Crystal, atomic_number

__all__ = [
    "reference_structure",
    "dimer_structure",
    "trial_structures",
    "delta_test_crystal",
    "MOLECULAR_ELEMENTS",
    "ATOMIC_ELEMENTS",
    "SULFUR_RING",
]

MOLECULAR_ELEMENTS = frozenset({"H", "N", "O", "F", "Cl", "Br", "I"})
"""Elements whose reference is a dimer in a box (when ASE has no bulk reference state)."""
SULFUR_RING = (8, 2.05, 108.0)
"""Crown S₈ ring of α-sulfur, sulfur's reference: atoms, S–S bond (Å), S–S–S angle (degrees)."""
ATOMIC_ELEMENTS = frozenset({"He", "Ne", "Ar", "Kr", "Xe", "Rn"})
"""Elements whose reference is a single atom in a box (when ASE has no bulk reference state)."""


def reference_structure(element: str, *, box_size: float = 12.0) -> tuple[Crystal | None, str, bool]:
    """The unrelaxed reference structure ASE gives for ``element``.

    Returns:
        (crystal or ``None``, a description of its source, whether the cell must stay fixed).
    """
    from ase import Atoms
    from ase.build import bulk
    from ase.data import reference_states

    z = atomic_number(element)
    state = reference_states[z] or {}
    try:
        atoms = bulk(element)
    except (ValueError, RuntimeError, KeyError):  # no (usable) crystal reference state
        atoms = None
    if atoms is not None:
        return Crystal.from_ase(atoms), f"ase.build.bulk({element!r}), {state.get('symmetry')}", False
    centre = box_size / 2.0
    if element in MOLECULAR_ELEMENTS:
        return dimer_structure(element, box_size=box_size), f"{element}2 dimer in a {box_size} Å box", True
    if element == "S":
        atoms = Atoms("S8", positions=_crown_ring(*SULFUR_RING) + centre, cell=[box_size] * 3, pbc=True)
        return Crystal.from_ase(atoms), f"crown S8 ring in a {box_size} Å box", True
    if element in ATOMIC_ELEMENTS:
        atoms = Atoms([element], positions=[(centre, centre, centre)], cell=[box_size] * 3, pbc=True)
        return Crystal.from_ase(atoms), f"{element} atom in a {box_size} Å box", True
    delta_test = delta_test_crystal(element)
    if delta_test is not None:
        return delta_test, f"ase.collections.dcdft[{element!r}] (Δ-test crystal, {delta_test.n_sites} atoms)", False
    return None, f"ASE has neither a buildable reference state nor a Δ-test crystal for {element}", False


def dimer_structure(element: str, *, box_size: float = 12.0) -> Crystal:
    """A dimer of ``element`` (ASE's bond length, or twice the covalent radius, Å) centred in a
    periodic cubic box of edge ``box_size`` Å."""
    from ase import Atoms
    from ase.data import covalent_radii, reference_states

    z = atomic_number(element)
    bond = float((reference_states[z] or {}).get("d") or 2.0 * covalent_radii[z])
    centre = box_size / 2.0
    positions = [(centre - bond / 2, centre, centre), (centre + bond / 2, centre, centre)]
    return Crystal.from_ase(Atoms([element, element], positions=positions, cell=[box_size] * 3, pbc=True))


def _crown_ring(n_atoms: int, bond: float, angle_degrees: float) -> np.ndarray:
    """(n, 3) Cartesian positions (Å, centred on 0) of a crown ring: atoms alternate between two
    parallel regular n/2-gons, rotated by half a step, with the given bond length and angle."""
    step = 2.0 * np.pi / n_atoms
    radius = bond * np.sqrt((1.0 - np.cos(np.radians(angle_degrees))) / (1.0 - np.cos(2.0 * step)))
    height = np.sqrt(bond**2 - 2.0 * radius**2 * (1.0 - np.cos(step)))
    k = np.arange(n_atoms)
    return np.column_stack([radius * np.cos(k * step), radius * np.sin(k * step), np.where(k % 2, 0.5, -0.5) * height])


def delta_test_crystal(element: str) -> Crystal | None:
    """The element's crystal in ASE's Δ-test collection, or ``None`` if it has none."""
    from ase.collections import dcdft

    if element not in dcdft.names:
        return None
    return Crystal.from_ase(dcdft[element])


def trial_structures(element: str, *, box_size: float = 12.0) -> list[tuple[str, Crystal, bool]]:
    """(label, structure, fixed cell) of the trial references for ``element``: sc, bcc, fcc and
    diamond cells with a nearest-neighbour distance of twice the covalent radius, and a dimer in
    a cubic box of ``box_size`` Å."""
    from ase import Atoms
    from ase.build import bulk
    from ase.data import covalent_radii

    d = 2.0 * float(covalent_radii[atomic_number(element)])
    lattices = {"sc": d, "bcc": 2.0 * d / np.sqrt(3.0), "fcc": np.sqrt(2.0) * d, "diamond": 4.0 * d / np.sqrt(3.0)}
    trials = [(name, Crystal.from_ase(bulk(element, name, a=a)), False) for name, a in lattices.items()]
    centre = box_size / 2.0
    dimer = Atoms(
        [element, element],
        positions=[(centre - d / 2, centre, centre), (centre + d / 2, centre, centre)],
        cell=[box_size] * 3,
        pbc=True,
    )
    trials.append(("dimer", Crystal.from_ase(dimer), True))
    return trials


