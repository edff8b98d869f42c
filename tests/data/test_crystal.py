"""Crystal record: construction checks, lossless conversions, derived quantities."""

from __future__ import annotations

import numpy as np
import pytest

from crystaloop.data.crystal import Crystal, PlausibilityLimits, atomic_number, check_plausible, element_symbol
from crystaloop.data.errors import InvalidStructureError

ROCKSALT_FRAC = [[0, 0, 0], [0, 0.5, 0.5], [0.5, 0, 0.5], [0.5, 0.5, 0], [0.5, 0, 0], [0.5, 0.5, 0.5], [0, 0, 0.5], [0, 0.5, 0]]


def nacl() -> Crystal:
    return Crystal.from_symbols(np.eye(3) * 5.64, ROCKSALT_FRAC, ["Na"] * 4 + ["Cl"] * 4)


def skewed(rng: np.random.Generator) -> Crystal:
    lattice = np.array([[4.1, 0.0, 0.0], [1.3, 3.9, 0.0], [-0.7, 0.8, 5.2]]) + rng.normal(0, 0.05, (3, 3))
    return Crystal(lattice, rng.random((6, 3)), [8, 8, 22, 22, 38, 12])


def test_coordinates_are_wrapped_into_unit_interval() -> None:
    crystal = Crystal(np.eye(3) * 4, [[1.25, -0.25, 3.0], [-1e-18, 0.999999999999999999, 0.5]], [11, 17])
    assert np.all(crystal.frac_coords >= 0) and np.all(crystal.frac_coords < 1)
    np.testing.assert_allclose(crystal.frac_coords[0], [0.25, 0.75, 0.0])
    assert crystal.frac_coords[1, 0] == 0.0


def test_arrays_are_read_only() -> None:
    crystal = nacl()
    with pytest.raises(ValueError):
        crystal.frac_coords[0, 0] = 0.3


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"lattice": np.eye(2)}, "shape (3, 3)"),
        ({"frac_coords": np.zeros((2, 2))}, "shape (N, 3)"),
        ({"numbers": [11]}, "numbers must have shape"),
        ({"numbers": [11, 0]}, "atomic number 0"),
        ({"numbers": [11, 119]}, "atomic number 119"),
        ({"numbers": [11.5, 17]}, "integers"),
        ({"lattice": [[1, 0, 0], [2, 0, 0], [0, 0, 1]]}, "degenerate"),
        ({"frac_coords": [[0, 0, np.nan], [0.5, 0.5, 0.5]]}, "NaN"),
        ({"lattice": np.diag([4.0, np.inf, 4.0])}, "NaN or infinite"),
    ],
)
def test_bad_construction_names_the_problem(kwargs: dict, message: str) -> None:
    base = {"lattice": np.eye(3) * 4, "frac_coords": [[0, 0, 0], [0.5, 0.5, 0.5]], "numbers": [11, 17]}
    with pytest.raises(InvalidStructureError, match=message.replace("(", r"\(").replace(")", r"\)")):
        Crystal(**{**base, **kwargs})


def test_empty_crystal_is_refused() -> None:
    with pytest.raises(InvalidStructureError, match="at least one site"):
        Crystal(np.eye(3), np.zeros((0, 3)), np.zeros(0, dtype=int))


def test_pymatgen_round_trip_is_lossless() -> None:
    crystal = skewed(np.random.default_rng(0))
    back = Crystal.from_pymatgen(crystal.to_pymatgen())
    np.testing.assert_array_equal(back.lattice, crystal.lattice)
    np.testing.assert_allclose(back.frac_coords, crystal.frac_coords, atol=1e-14)
    np.testing.assert_array_equal(back.numbers, crystal.numbers)


def test_ase_round_trip_is_lossless() -> None:
    crystal = skewed(np.random.default_rng(1))
    atoms = crystal.to_ase()
    assert all(atoms.pbc)
    back = Crystal.from_ase(atoms)
    np.testing.assert_allclose(back.lattice, crystal.lattice, atol=1e-14)
    np.testing.assert_allclose(back.frac_coords, crystal.frac_coords, atol=1e-12)
    np.testing.assert_array_equal(back.numbers, crystal.numbers)
    np.testing.assert_allclose(atoms.get_positions(), crystal.cart_coords, atol=1e-12)


def test_ase_without_periodicity_is_refused() -> None:
    atoms = nacl().to_ase()
    atoms.pbc = [True, True, False]
    with pytest.raises(InvalidStructureError, match="periodic"):
        Crystal.from_ase(atoms)


def test_dict_round_trip() -> None:
    crystal = skewed(np.random.default_rng(2))
    back = Crystal.from_dict(crystal.to_dict())
    np.testing.assert_array_equal(back.frac_coords, crystal.frac_coords)
    assert back == crystal


def test_derived_quantities_agree_with_pymatgen() -> None:
    crystal = nacl()
    structure = crystal.to_pymatgen()
    assert crystal.volume == pytest.approx(structure.volume)
    # ASE and pymatgen tabulate slightly different standard atomic masses (~5e-5 relative).
    assert crystal.density == pytest.approx(structure.density, rel=1e-4)
    assert crystal.reduced_formula == "NaCl"
    assert crystal.composition == {"Na": 4, "Cl": 4}
    assert crystal.elements == ["Cl", "Na"]
    assert crystal.spacegroup_number() == 225
    assert crystal.lattice_parameters == pytest.approx((5.64, 5.64, 5.64, 90, 90, 90))


def test_min_pair_distance_includes_periodic_images() -> None:
    # Two atoms near opposite faces are close through the boundary, far inside the cell.
    crystal = Crystal(np.eye(3) * 5.0, [[0.02, 0.5, 0.5], [0.98, 0.5, 0.5]], [6, 6])
    assert crystal.min_pair_distance() == pytest.approx(0.2)
    assert nacl().min_pair_distance() == pytest.approx(2.82)


def test_check_plausible_refuses_overlap_and_huge_cells() -> None:
    check_plausible(nacl())
    overlap = Crystal(np.eye(3) * 5.0, [[0.0, 0.0, 0.0], [0.05, 0.0, 0.0]], [11, 17])
    with pytest.raises(InvalidStructureError, match=r"overlapping atoms: sites 0 \(Na\) and 1 \(Cl\) are 0.250 Å apart"):
        check_plausible(overlap)
    huge = Crystal(np.diag([1e4, 4.0, 4.0]), [[0, 0, 0]], [11])
    with pytest.raises(InvalidStructureError, match="huge cell"):
        check_plausible(huge)
    with pytest.raises(InvalidStructureError, match="sites exceed"):
        check_plausible(nacl(), PlausibilityLimits(max_sites=4))


def test_limits_reject_unknown_keys() -> None:
    with pytest.raises(ValueError, match="extra"):
        PlausibilityLimits(min_dist=0.3)  # type: ignore[call-arg]


def test_element_lookup_names_the_bad_symbol() -> None:
    assert atomic_number("Sr") == 38 and element_symbol(38) == "Sr"
    with pytest.raises(InvalidStructureError, match="'Xx'"):
        atomic_number("Xx")
    with pytest.raises(InvalidStructureError, match="119"):
        element_symbol(119)
