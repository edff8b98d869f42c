"""Structure prototypes built from their Wyckoff positions, for competing phases of a hull.

A :class:`Prototype` is a structure type written as crystallographers tabulate it: a space
group, lattice-parameter ratios and one representative position per Wyckoff orbit, each orbit
labelled with a *role* (``"A"``, ``"B"`` cations, ``"X"`` anion). :meth:`Prototype.build`
fills the roles with elements, expands the orbits with pymatgen's space-group operations,
reduces to the primitive cell and scales it so that the shortest cation–anion distance equals
the sum of the ions' radii (Shannon radii for the given oxidation states, Å; atomic radii for
intermetallics).

The library (:data:`PROTOTYPES`) holds the common ionic and intermetallic types. Internal
parameters are those of the type's archetype (rounded; e.g. rutile's oxygen x ≈ 0.305 from TiO₂,
corundum's from α-Al₂O₃, ilmenite's from FeTiO₃; Wyckoff (1963), *Crystal Structures*, vol. 1–2,
and the AFLOW prototype encyclopedia, Mehl et al., Comput. Mater. Sci. 136, S1, 2017). They are
starting points: the oracle relaxes every built structure.
"""

from __future__ import annotations

import logging
import math
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from crystaloop.data.crystal import Crystal

__all__ = ["Prototype", "PROTOTYPES", "prototypes_for", "ion_radius", "scaled_to_radii", "aflow_binaries"]

logger = logging.getLogger(__name__)

Position = tuple[float, float, float]


@dataclass(frozen=True)
class Prototype:
    """A structure type: space group, lattice ratios and role-labelled Wyckoff positions.

    Attributes:
        name: the type's name (``"rocksalt"``, ``"spinel"``).
        spacegroup: Hermann–Mauguin symbol as pymatgen reads it (hexagonal axes for R groups).
        lattice: (b/a, c/a, α, β, γ): lattice ratios and angles (degrees); a is set by scaling.
        sites: (role, fractional position) per Wyckoff orbit; roles are ``"A"``, ``"B"``, ``"X"``.
        stoichiometry: role → count per formula unit, e.g. ``{"A": 1, "B": 2, "X": 4}``.
    """

    name: str
    spacegroup: str
    lattice: tuple[float, float, float, float, float, float]
    sites: tuple[tuple[str, Position], ...]
    stoichiometry: tuple[tuple[str, int], ...]

    @property
    def roles(self) -> tuple[str, ...]:
        """The roles in the order of :attr:`stoichiometry`."""
        return tuple(role for role, _ in self.stoichiometry)

    def build(self, species: Mapping[str, str], radii: Mapping[str, float]) -> Crystal:
        """The prototype filled with elements, as a primitive cell.

        Args:
            species: role → element symbol, e.g. ``{"A": "Ca", "X": "O"}``.
            radii: role → radius (Å) used for scaling: the shortest distance between sites of
                different roles becomes the sum of their radii; same-role sites are kept at
                least 0.8 × twice their radius apart.

        Raises:
            ValueError: a role is missing from ``species`` or ``radii``, or the expanded cell
                does not have this prototype's stoichiometry.
        """
        from pymatgen.core import Lattice, Structure

        missing = [role for role in self.roles if role not in species or role not in radii]
        if missing:
            raise ValueError(f"prototype {self.name} needs species and radii for roles {self.roles}, missing {missing}")
        b, c, alpha, beta, gamma = self.lattice[0], self.lattice[1], *self.lattice[2:]
        unit = Lattice.from_parameters(1.0, b, c, alpha, beta, gamma)
        structure = Structure.from_spacegroup(
            self.spacegroup, unit, [species[role] for role, _ in self.sites], [pos for _, pos in self.sites]
        )
        structure = structure.get_primitive_structure(tolerance=0.01)
        _check_stoichiometry(self, structure, species)
        return scaled_to_radii(structure, species, radii)


def scaled_to_radii(structure, species: Mapping[str, str], radii: Mapping[str, float]) -> Crystal:
    """``structure`` (a pymatgen Structure, copied) scaled so that the closest pair of sites of
    different roles sits at the sum of their radii (Å) and like sites stay at least 0.8 × twice
    their radius apart; ``species`` maps role → element, ``radii`` role → radius."""
    structure = structure.copy()
    roles = _site_roles(structure, species)
    structure.scale_lattice(structure.volume * _scale_factor(structure, roles, radii) ** 3)
    return Crystal.from_pymatgen(structure)


def _check_stoichiometry(prototype: Prototype, structure, species: Mapping[str, str]) -> None:
    counts = structure.composition.get_el_amt_dict()
    per_role = {role: counts.get(species[role], 0.0) for role in prototype.roles}
    units = per_role[prototype.roles[0]] / dict(prototype.stoichiometry)[prototype.roles[0]]
    expected = {role: n * units for role, n in prototype.stoichiometry}
    if units <= 0 or any(abs(per_role[r] - expected[r]) > 1e-6 for r in prototype.roles):
        raise ValueError(f"prototype {prototype.name} expanded to {structure.composition.formula}, not {expected}")


def _site_roles(structure, species: Mapping[str, str]) -> list[str]:
    by_element = {element: role for role, element in species.items()}
    return [by_element[site.specie.symbol] for site in structure]


def _scale_factor(structure, roles: list[str], radii: Mapping[str, float]) -> float:
    """Linear factor that puts the closest unlike pair at the sum of radii and keeps like pairs
    at least 0.8 × twice their radius apart."""
    distances = structure.distance_matrix
    n = len(roles)
    factor = 0.0
    unlike = [(distances[i, j], radii[roles[i]] + radii[roles[j]]) for i in range(n) for j in range(n) if roles[i] != roles[j]]
    if unlike:
        d, target = min(unlike, key=lambda item: item[0] / item[1])
        factor = target / d
    like = [(distances[i, j], 1.6 * radii[roles[i]]) for i in range(n) for j in range(i + 1, n) if roles[i] == roles[j]]
    like += _self_image_distances(structure, roles, radii)
    for d, target in like:
        if d > 0:
            factor = max(factor, target / d)
    return factor


def _self_image_distances(structure, roles: list[str], radii: Mapping[str, float]) -> list[tuple[float, float]]:
    """(distance to a site's own nearest periodic image, required distance) per site."""
    shortest = float(np.min(np.linalg.norm(structure.lattice.matrix, axis=1)))
    return [(shortest, 1.6 * radii[role]) for role in set(roles)]


def ion_radius(element: str, oxidation_state: int | None) -> float:
    """Radius (Å) of ``element`` in ``oxidation_state``: its Shannon ionic radius when pymatgen
    knows one (averaged over coordinations), else the average ionic radius, else the atomic
    radius; ``None`` → the atomic radius (metals in intermetallics)."""
    return _ion_radius(element, oxidation_state)


@lru_cache(maxsize=1024)
def _ion_radius(element: str, oxidation_state: int | None) -> float:
    from pymatgen.core import Element, Species

    el = Element(element)
    if oxidation_state is not None:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # "No ionic radius for Co+": handled below
                radius = Species(element, oxidation_state).ionic_radius
        except (ValueError, KeyError):
            radius = None
        if radius is not None and math.isfinite(float(radius)) and float(radius) > 0:
            return float(radius)
        average = float(el.average_ionic_radius)
        if average > 0:
            return average
    atomic = el.atomic_radius
    return float(atomic) if atomic is not None else 1.4


def _p(name: str, sg: str, lattice: tuple[float, ...], sites: tuple, stoichiometry: dict[str, int]) -> Prototype:
    b_a, c_a, *angles = lattice if len(lattice) == 5 else (*lattice, 90.0, 90.0, 90.0)
    return Prototype(name, sg, (b_a, c_a, *angles), tuple(sites), tuple(stoichiometry.items()))


_HEX = (120.0,)
PROTOTYPES: tuple[Prototype, ...] = (
    # AX
    _p("rocksalt", "Fm-3m", (1, 1), (("A", (0, 0, 0)), ("X", (0.5, 0.5, 0.5))), {"A": 1, "X": 1}),
    _p("caesium_chloride", "Pm-3m", (1, 1), (("A", (0, 0, 0)), ("X", (0.5, 0.5, 0.5))), {"A": 1, "X": 1}),
    _p("zincblende", "F-43m", (1, 1), (("A", (0, 0, 0)), ("X", (0.25, 0.25, 0.25))), {"A": 1, "X": 1}),
    _p("wurtzite", "P6_3mc", (1, 1.633, 90, 90, 120), (("A", (1 / 3, 2 / 3, 0)), ("X", (1 / 3, 2 / 3, 0.375))), {"A": 1, "X": 1}),
    _p("nickel_arsenide", "P6_3/mmc", (1, 1.39, 90, 90, 120), (("A", (0, 0, 0)), ("X", (1 / 3, 2 / 3, 0.25))), {"A": 1, "X": 1}),
    # AX2 and A2X
    _p("fluorite", "Fm-3m", (1, 1), (("A", (0, 0, 0)), ("X", (0.25, 0.25, 0.25))), {"A": 1, "X": 2}),
    _p("rutile", "P4_2/mnm", (1, 0.644), (("A", (0, 0, 0)), ("X", (0.305, 0.305, 0))), {"A": 1, "X": 2}),
    _p("cadmium_iodide", "P-3m1", (1, 1.6, 90, 90, 120), (("A", (0, 0, 0)), ("X", (1 / 3, 2 / 3, 0.25))), {"A": 1, "X": 2}),
    _p("antifluorite", "Fm-3m", (1, 1), (("X", (0, 0, 0)), ("A", (0.25, 0.25, 0.25))), {"A": 2, "X": 1}),
    # A2X3, A3X2
    _p("corundum", "R-3c", (1, 2.73, 90, 90, 120), (("A", (0, 0, 0.3523)), ("X", (0.306, 0, 0.25))), {"A": 2, "X": 3}),
    _p(
        "lanthanum_oxide",
        "P-3m1",
        (1, 1.56, 90, 90, 120),
        (("A", (1 / 3, 2 / 3, 0.245)), ("X", (1 / 3, 2 / 3, 0.645)), ("X", (0, 0, 0))),
        {"A": 2, "X": 3},
    ),
    _p(
        "anti_lanthanum_oxide",
        "P-3m1",
        (1, 1.56, 90, 90, 120),
        (("X", (1 / 3, 2 / 3, 0.245)), ("A", (1 / 3, 2 / 3, 0.645)), ("A", (0, 0, 0))),
        {"A": 3, "X": 2},
    ),
    # AX3, A3X
    _p("rhenium_trioxide", "Pm-3m", (1, 1), (("A", (0, 0, 0)), ("X", (0.5, 0, 0))), {"A": 1, "X": 3}),
    _p("anti_rhenium_trioxide", "Pm-3m", (1, 1), (("X", (0, 0, 0)), ("A", (0.5, 0, 0))), {"A": 3, "X": 1}),
    # A3X4 (the spinel with both cation sites filled by one element: Co3O4, Fe3O4); Fd-3m in
    # origin choice 1 (pymatgen's default setting), oxygen u = 0.3875 (MgAl2O4)
    _p(
        "spinel_binary",
        "Fd-3m",
        (1, 1),
        (("A", (0, 0, 0)), ("A", (0.625, 0.625, 0.625)), ("X", (0.3875, 0.3875, 0.3875))),
        {"A": 3, "X": 4},
    ),
    # intermetallics AB, A3B (no anion: roles A and B)
    _p("b2_intermetallic", "Pm-3m", (1, 1), (("A", (0, 0, 0)), ("B", (0.5, 0.5, 0.5))), {"A": 1, "B": 1}),
    _p("l1_2_intermetallic", "Pm-3m", (1, 1), (("B", (0, 0, 0)), ("A", (0, 0.5, 0.5))), {"A": 3, "B": 1}),
    # ternary ABX3, AB2X4, ABX2, A2BX4
    _p(
        "perovskite",
        "Pm-3m",
        (1, 1),
        (("A", (0.5, 0.5, 0.5)), ("B", (0, 0, 0)), ("X", (0.5, 0, 0))),
        {"A": 1, "B": 1, "X": 3},
    ),
    _p(
        "ilmenite",
        "R-3",
        (1, 2.77, 90, 90, 120),
        (("A", (0, 0, 0.355)), ("B", (0, 0, 0.146)), ("X", (0.317, 0.020, 0.245))),
        {"A": 1, "B": 1, "X": 3},
    ),
    _p(
        "spinel",
        "Fd-3m",
        (1, 1),
        (("A", (0, 0, 0)), ("B", (0.625, 0.625, 0.625)), ("X", (0.3875, 0.3875, 0.3875))),
        {"A": 1, "B": 2, "X": 4},
    ),
    _p(
        "alpha_sodium_ferrite",
        "R-3m",
        (1, 5.0, 90, 90, 120),
        (("A", (0, 0, 0.5)), ("B", (0, 0, 0)), ("X", (0, 0, 0.26))),
        {"A": 1, "B": 1, "X": 2},
    ),
    _p(
        "delafossite",
        "R-3m",
        (1, 5.67, 90, 90, 120),
        (("A", (0, 0, 0)), ("B", (0, 0, 0.5)), ("X", (0, 0, 0.1066))),
        {"A": 1, "B": 1, "X": 2},
    ),
    _p(
        "potassium_nickel_fluoride",
        "I4/mmm",
        (1, 3.27),
        (("A", (0, 0, 0.352)), ("B", (0, 0, 0)), ("X", (0, 0.5, 0)), ("X", (0, 0, 0.152))),
        {"A": 2, "B": 1, "X": 4},
    ),
)
"""The prototype library: 5 AX, 3 AX₂, A₂X, 2 A₂X₃, A₃X₂, AX₃, A₃X, A₃X₄, 2 intermetallic and
6 ternary types."""


def prototypes_for(stoichiometry: Mapping[str, int]) -> list[Prototype]:
    """Prototypes whose role counts per formula unit are ``stoichiometry`` (e.g. ``{"A": 2, "X": 3}``)."""
    wanted = {role: n for role, n in stoichiometry.items() if n}
    return [p for p in PROTOTYPES if dict(p.stoichiometry) == wanted]


def aflow_binaries(n_cation: int, n_anion: int) -> list[tuple[str, object]]:
    """(AFLOW label, pymatgen Structure with species ``A`` → Li, ``X`` → Cl placeholders) of the
    binary prototypes in pymatgen's copy of the AFLOW library (Mehl et al., 2017) with
    ``n_cation : n_anion`` atoms per formula unit (the element with ``n_cation`` atoms per unit
    becomes the cation). Used for stoichiometries :data:`PROTOTYPES` lacks
    (A₂X₅, AX₄...). The library loads once (~7 s)."""
    out = []
    for label, structure in _aflow_library():
        amounts = structure.composition.get_el_amt_dict()
        if len(amounts) != 2:
            continue
        (e1, n1), (e2, n2) = sorted(amounts.items())
        for cation, nc, anion, na in ((e1, n1, e2, n2), (e2, n2, e1, n1)):
            if nc * n_anion == na * n_cation and (n_cation != n_anion or cation == e1):
                placeholder = structure.copy()
                placeholder.replace_species({cation: "Li", anion: "Cl"})
                out.append((label, placeholder))
    return out


@lru_cache(maxsize=1)
def _aflow_library() -> tuple[tuple[str, object], ...]:
    import os

    import pymatgen.analysis.prototypes as aflow
    from monty.serialization import loadfn

    entries = loadfn(os.path.join(os.path.dirname(aflow.__file__), "aflow_prototypes.json.gz"))
    return tuple((str(e["tags"].get("aflow", "")), e["snl"].structure) for e in entries)
