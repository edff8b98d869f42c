"""Structural and compositional validity: the project's one definition and its thresholds.

Three nested levels, all computed here (DESIGN.md, "One definition per concept"):

1. **Protocol validity**, the meaning of the published generator metrics (CDVAE, Xie et al.,
   ICLR 2022; DESIGN.md "Reference protocols"), :func:`structural_validity` and
   :func:`compositional_validity`:

   * structural: every interatomic distance, periodic images included (also a site's distance
     to its own nearest image, i.e. the shortest lattice vector), is above
     :data:`MIN_DISTANCE` = 0.5 Å, and the cell volume is above :data:`MIN_CELL_VOLUME` = 0.1 Å³;
   * compositional: SMACT charge neutrality with the Pauling electronegativity order test over
     SMACT's default oxidation-state table (``smact.Element.oxidation_states``, as CDVAE's
     ``smact_validity``); single-element crystals and compositions of SMACT metals only
     (alloys) are valid.

2. **Plausibility** (:class:`PlausibilityLimits`, :func:`check_plausible`): what a structure
   must meet to be read from a file or emitted by a cheap generator: at most 1000 sites,
   lattice vectors up to 200 Å, 0.1–500 Å³ per atom, no two sites closer than 0.5 Å (all
   tunable: an import of high-pressure phases may lower the distance).

3. **Guard validity** (:func:`assess_validity` with :class:`ValidityRules`), what the loop's
   validity guard rejects: protocol validity, *always*, plus plausibility, a density window
   (g/cm³) and, on top of the protocol's composition test, SMACT 4's own ``smact_validity``
   (its default ICSD-24 oxidation-state filter). It is a strict superset of the protocol: a
   sample the benchmark calls invalid is never valid to the guard (a guard configured with
   ``smact`` off drops the compositional test altogether, by choice).

Every threshold is a module constant below, in Å (distances, lengths), Å³ (cell volume) and
Å³/atom (volume per atom).
"""

from __future__ import annotations

import functools
import itertools
import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from crystaloop.data.errors import InvalidStructureError

if TYPE_CHECKING:
    from crystaloop.data.crystal import Crystal

__all__ = [
    "MIN_DISTANCE",
    "MIN_CELL_VOLUME",
    "PlausibilityLimits",
    "check_plausible",
    "structural_validity",
    "structural_problem",
    "compositional_validity",
    "smact_default_validity",
    "ValidityRules",
    "Validity",
    "assess_validity",
]

# ------------------------------------------------------------------------------- thresholds
MIN_DISTANCE = 0.5
"""Protocol: every interatomic distance (periodic images included) must exceed this, Å."""
MIN_CELL_VOLUME = 0.1
"""Protocol: the cell volume must exceed this, Å³ (per cell, not per atom)."""

PLAUSIBLE_MIN_DISTANCE = MIN_DISTANCE  # Å, shortest allowed distance (inclusive)
PLAUSIBLE_MAX_LATTICE_LENGTH = 200.0  # Å, longest allowed lattice vector
PLAUSIBLE_MAX_SITES = 1000  # sites per cell
PLAUSIBLE_MIN_VOLUME_PER_ATOM = 0.1  # Å³/atom
PLAUSIBLE_MAX_VOLUME_PER_ATOM = 500.0  # Å³/atom


# ---------------------------------------------------------------------------- plausibility
class PlausibilityLimits(BaseModel):
    """Bounds a structure must meet to be imported: distances in Å, volume in Å³ per site."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    min_distance: float = Field(PLAUSIBLE_MIN_DISTANCE, gt=0, description="shortest allowed interatomic distance, Å")
    max_lattice_length: float = Field(PLAUSIBLE_MAX_LATTICE_LENGTH, gt=0, description="longest allowed lattice vector, Å")
    max_sites: int = Field(PLAUSIBLE_MAX_SITES, gt=0, description="most sites allowed in one cell")
    min_volume_per_site: float = Field(PLAUSIBLE_MIN_VOLUME_PER_ATOM, gt=0, description="smallest allowed cell volume per site, Å³")
    max_volume_per_site: float = Field(PLAUSIBLE_MAX_VOLUME_PER_ATOM, gt=0, description="largest allowed cell volume per site, Å³")


def check_plausible(crystal: Crystal, limits: PlausibilityLimits | None = None) -> None:
    """Raise :class:`InvalidStructureError` if ``crystal`` breaks any of ``limits``.

    Checks, in order of cost: number of sites, lattice vector lengths, volume per site and the
    shortest interatomic distance (periodic images included).
    """
    limits = limits or PlausibilityLimits()
    if crystal.n_sites > limits.max_sites:
        raise InvalidStructureError(f"{crystal.n_sites} sites exceed the limit of {limits.max_sites}")
    lengths = np.linalg.norm(crystal.lattice, axis=1)
    if lengths.max() > limits.max_lattice_length:
        raise InvalidStructureError(
            f"lattice vector of {lengths.max():.4g} Å exceeds the limit of {limits.max_lattice_length} Å (huge cell)"
        )
    per_site = crystal.volume / crystal.n_sites
    if not limits.min_volume_per_site <= per_site <= limits.max_volume_per_site:
        raise InvalidStructureError(
            f"volume per site {per_site:.4g} Å³ is outside the allowed "
            f"[{limits.min_volume_per_site}, {limits.max_volume_per_site}] Å³"
        )
    from crystaloop.data.graphs import minimum_image_distances

    distances = minimum_image_distances(crystal)
    if distances.size and distances.min() < limits.min_distance:
        i, j = np.unravel_index(int(np.argmin(distances)), distances.shape)
        raise InvalidStructureError(
            f"overlapping atoms: sites {i} ({crystal.symbols[i]}) and {j} ({crystal.symbols[j]}) are "
            f"{distances[i, j]:.3f} Å apart; the minimum allowed is {limits.min_distance} Å"
        )


# ------------------------------------------------------------------------ protocol validity
def structural_problem(crystal: Crystal) -> str | None:
    """Why ``crystal`` fails the protocol's structural validity, or ``None`` when it passes.

    Cell volume above :data:`MIN_CELL_VOLUME` Å³, then every distance (periodic images
    included; for a single site the shortest lattice vector) above :data:`MIN_DISTANCE` Å.
    """
    if not crystal.volume > MIN_CELL_VOLUME:
        return f"cell volume {crystal.volume:.4g} Å³ is not above {MIN_CELL_VOLUME} Å³ (structural validity)"
    shortest = crystal.min_pair_distance()
    if not shortest > MIN_DISTANCE:
        return f"shortest interatomic distance {shortest:.3f} Å is not above {MIN_DISTANCE} Å (structural validity)"
    return None


def structural_validity(crystal: Crystal) -> bool:
    """The protocol's structural validity: distances > 0.5 Å (images included), volume > 0.1 Å³."""
    return structural_problem(crystal) is None


@functools.cache
def _smact_tables() -> tuple[dict[str, tuple[int, ...]], dict[str, float | None]]:
    """SMACT's default oxidation states and Pauling electronegativities by element symbol."""
    from smact import Element

    from crystaloop.data.crystal import element_symbol

    oxidation, electronegativity = {}, {}
    for z in range(1, 104):
        symbol = element_symbol(z)
        try:
            element = Element(symbol)
        except Exception:  # SMACT has no data for some heavy elements
            continue
        oxidation[symbol] = tuple(element.oxidation_states or ())
        electronegativity[symbol] = element.pauling_eneg
    return oxidation, electronegativity


def compositional_validity(crystal: Crystal) -> bool:
    """The protocol's compositional validity: SMACT charge neutrality with the Pauling
    electronegativity order test over SMACT's default oxidation states (CDVAE's rule).

    Single-element crystals are valid; compositions of SMACT metals only are valid (alloys); an
    element SMACT has no data for makes the composition invalid.
    """
    from smact.screening import pauling_test

    counts = crystal.composition
    symbols = list(counts)
    if len(symbols) == 1:
        return True
    oxidation, electronegativity = _smact_tables()
    if any(s not in oxidation for s in symbols):
        return False
    import smact

    if all(s in smact.metals for s in symbols):
        return True
    gcd = np.gcd.reduce(list(counts.values()))
    stoichiometry = [counts[s] // gcd for s in symbols]
    for states in itertools.product(*(oxidation[s] for s in symbols)):
        if sum(q * n for q, n in zip(states, stoichiometry, strict=True)) != 0:
            continue
        enegs = [electronegativity[s] for s in symbols]
        if any(e is None for e in enegs):
            return True
        if pauling_test(states, enegs):
            return True
    return False


@functools.lru_cache(maxsize=4096)
def smact_default_validity(reduced_formula: str, use_pauling_test: bool = True) -> bool:
    """SMACT 4's own ``smact_validity`` of a reduced formula with its defaults (ICSD-24
    oxidation states, alloys valid), with the Pauling electronegativity test unless
    ``use_pauling_test`` is off (charge neutrality only); cached, SMACT's warnings silenced."""
    from smact.screening import smact_validity

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return bool(smact_validity(reduced_formula, use_pauling_test=use_pauling_test))


# --------------------------------------------------------------------------- guard validity
class ValidityRules(BaseModel):
    """What :func:`assess_validity` checks on top of protocol validity, which always applies.

    Attributes:
        plausibility: plausibility limits (checked first); ``None`` to skip them.
        min_density, max_density: density window in g/cm³; ``None`` for no bound.
        composition: ``"strict"`` (protocol compositional validity and SMACT 4's default
            ``smact_validity``), ``"protocol"`` (the protocol's test only) or ``"none"``.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    plausibility: PlausibilityLimits | None = Field(default_factory=PlausibilityLimits)
    min_density: float | None = Field(None, gt=0)
    max_density: float | None = Field(None, gt=0)
    composition: Literal["strict", "protocol", "none"] = "strict"


@dataclass(frozen=True)
class Validity:
    """The outcome of :func:`assess_validity`.

    Attributes:
        ok: every check passed.
        failed: which check failed first (``None`` when ``ok``).
        reason: the failure in words, prefixed by its kind (``"structure: ..."``); ``None`` when ok.
        density: mass density in g/cm³ where it was computed (every failure after the structural checks).
    """

    ok: bool
    failed: Literal["structure", "density", "composition"] | None = None
    reason: str | None = None
    density: float | None = None


def assess_validity(crystal: Crystal, rules: ValidityRules | None = None) -> Validity:
    """Check ``crystal`` against protocol validity plus ``rules`` (default: plausibility and
    the strict composition test); the first failure wins, checks ordered by cost.

    Order: plausibility (sites, lattice lengths, volume per atom, shortest distance), protocol
    structural validity, density window, composition (protocol test, then SMACT 4's default).
    Protocol validity is never skipped, so a crystal the CDVAE metrics call invalid never passes.
    """
    rules = rules or ValidityRules()
    if rules.plausibility is not None:
        try:
            check_plausible(crystal, rules.plausibility)
        except InvalidStructureError as exc:
            return Validity(ok=False, failed="structure", reason=f"structure: {exc.problem}")
    problem = structural_problem(crystal)
    if problem is not None:
        return Validity(ok=False, failed="structure", reason=f"structure: {problem}")
    density = crystal.density
    low = rules.min_density if rules.min_density is not None else -np.inf
    high = rules.max_density if rules.max_density is not None else np.inf
    if not low <= density <= high:
        return Validity(
            ok=False, failed="density", density=density,
            reason=f"density {density:.3g} g/cm³ outside [{rules.min_density}, {rules.max_density}]",
        )
    if rules.composition != "none" and len(crystal.elements) > 1:
        reason = f"composition {crystal.reduced_formula} fails SMACT charge neutrality / electronegativity"
        if not compositional_validity(crystal):
            reason += " (protocol test, SMACT's default oxidation states)"
        elif rules.composition == "strict" and not smact_default_validity(crystal.reduced_formula):
            reason += " (SMACT 4 smact_validity, ICSD-24 oxidation states)"
        else:
            reason = ""
        if reason:
            return Validity(ok=False, failed="composition", density=density, reason=reason)
    return Validity(ok=True, density=density)
