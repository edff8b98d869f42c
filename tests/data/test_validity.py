"""The one validity definition: protocol thresholds, and the guard rules as a strict superset."""

from __future__ import annotations

import numpy as np
import pytest

from crystaloop.data.crystal import Crystal
from crystaloop.data.store.testing import base_cells, diamond, perovskite, rock_salt
from crystaloop.data.testing import random_crystal
from crystaloop.data.validity import (
    MIN_CELL_VOLUME,
    MIN_DISTANCE,
    PlausibilityLimits,
    ValidityRules,
    assess_validity,
    compositional_validity,
    structural_problem,
    structural_validity,
)


def _pair(distance: float) -> Crystal:
    """Two Na in a 6 Å cube, ``distance`` Å apart along x."""
    return Crystal.from_symbols(np.eye(3) * 6.0, [[0, 0, 0], [distance / 6.0, 0, 0]], ["Na", "Na"])


def test_protocol_thresholds_in_angstrom() -> None:
    assert (MIN_DISTANCE, MIN_CELL_VOLUME) == (0.5, 0.1)
    assert structural_validity(_pair(0.51)) and not structural_validity(_pair(0.49))
    assert "not above 0.5 Å" in structural_problem(_pair(0.3))
    # a single site: its own nearest image counts (shortest lattice vector of a skewed cell)
    skewed = Crystal(lattice=np.array([[3.0, 0, 0], [2.8, 0.3, 0], [0, 0, 3.0]]), frac_coords=np.zeros((1, 3)), numbers=np.array([11]))
    assert not structural_validity(skewed)
    tiny = Crystal(lattice=np.eye(3) * 0.45, frac_coords=np.zeros((1, 3)), numbers=np.array([1]))
    assert "cell volume" in structural_problem(tiny)
    for cell in base_cells().values():
        assert structural_validity(cell)


def test_compositional_validity_protocol() -> None:
    assert compositional_validity(rock_salt()) and compositional_validity(perovskite()) and compositional_validity(diamond())
    nacl2 = Crystal.from_symbols(np.eye(3) * 4.5, [[0, 0, 0], [0.5, 0.5, 0.5], [0.25, 0.25, 0.25]], ["Na", "Cl", "Cl"])
    assert not compositional_validity(nacl2)


def test_guard_rules_are_a_superset_of_the_protocol() -> None:
    """Anything the protocol calls invalid (structure or composition) the default rules reject."""
    rng = np.random.default_rng(0)
    crystals = [random_crystal(rng, n_sites=int(rng.integers(2, 6)), elements=("Ba", "Ca", "N", "O", "Zn", "Cd", "Na", "Cl"),
                               min_distance=1.0) for _ in range(40)]
    # squeezed copies: some pairs closer than 0.5 Å
    crystals += [Crystal(lattice=c.lattice * s, frac_coords=c.frac_coords, numbers=c.numbers)
                 for c, s in zip(crystals[:20], rng.uniform(0.2, 0.6, 20), strict=True)]
    # BaCaN3 (a CMR perovskite): SMACT 4's default table balances it (Ca+1), the protocol's does not
    cells = crystals + [Crystal.from_symbols(np.eye(3) * 4.0, [[0, 0, 0], [0.5, 0.5, 0.5], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]],
                                             ["Ba", "Ca", "N", "N", "N"])]
    protocol_invalid = 0
    for crystal in cells:
        guard = assess_validity(crystal)
        if not (structural_validity(crystal) and compositional_validity(crystal)):
            protocol_invalid += 1
            assert not guard.ok, crystal
    assert protocol_invalid >= 10  # the check saw real rejections
    bacan3 = assess_validity(cells[-1])
    assert bacan3.failed == "composition" and "protocol test" in bacan3.reason


def test_loosened_plausibility_never_undercuts_the_protocol() -> None:
    loose = ValidityRules(plausibility=PlausibilityLimits(min_distance=0.2), composition="none")
    result = assess_validity(_pair(0.4), loose)
    assert not result.ok and result.failed == "structure" and "structural validity" in result.reason
    assert assess_validity(_pair(0.6), loose).ok


def test_density_window_and_order() -> None:
    salt = rock_salt()
    narrow = ValidityRules(min_density=5.0, max_density=25.0)
    result = assess_validity(salt, narrow)
    assert result.failed == "density" and result.density == pytest.approx(salt.density) and "g/cm³" in result.reason
    overlap = assess_validity(_pair(0.3), narrow)
    assert overlap.failed == "structure" and overlap.reason.startswith("structure: overlapping atoms")
    assert assess_validity(salt).ok and assess_validity(salt).density == pytest.approx(salt.density)
