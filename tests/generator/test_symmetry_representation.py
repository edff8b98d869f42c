"""Symmetric representation: round trip on the development splits, invariance of the template,
exact symmetry for any free parameters, errors that name the bad value."""

from __future__ import annotations

import numpy as np
import pytest

from crystaloop.data import testing as transforms
from crystaloop.data.crystal import Crystal
from crystaloop.data.datasets import load_dataset
from crystaloop.data.errors import CrystaloopError, InvalidStructureError
from crystaloop.data.matching import structure_matcher
from crystaloop.generator.symmetry import SymmetricCrystal, describe, from_structure
from crystaloop.generator.symmetry.wyckoff import expand, wyckoff_position


def _perovskite() -> Crystal:
    return Crystal.from_symbols(np.eye(3) * 3.9, [[0, 0, 0], [0.5, 0.5, 0.5], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]],
                                ["Sr", "Ti", "O", "O", "O"])


def test_cubic_perovskite_is_pm3m_with_three_orbits() -> None:
    symmetric = from_structure(_perovskite().to_pymatgen())
    assert symmetric.space_group == 221 and symmetric.crystal_system == "cubic"
    assert symmetric.lattice == pytest.approx((3.9,))
    assert sorted(o.multiplicity for o in symmetric.orbits) == [1, 1, 3]
    assert all(o.free_coordinates(221).size == 0 for o in symmetric.orbits)
    back = symmetric.to_crystal()
    assert back.composition == {"Sr": 1, "Ti": 1, "O": 3}
    assert back.volume == pytest.approx(3.9**3)


@pytest.mark.slow
@pytest.mark.parametrize("dataset", ["perov_5/train", "carbon_24/train"])
def test_round_trip_on_the_training_split(dataset: str) -> None:
    """50 rows of each split: same composition (or the input is a supercell of the description),
    a strict fit under the project's CSP matcher, and a small RMS displacement."""
    matcher = structure_matcher("csp")
    crystals = load_dataset(dataset, max_rows=50).crystals
    fits = 0
    for crystal in crystals:
        symmetric, _ = describe(crystal)
        back = symmetric.to_crystal()
        assert crystal.n_sites % back.n_sites == 0
        factor = crystal.n_sites // back.n_sites
        assert {el: n * factor for el, n in back.composition.items()} == crystal.composition
        a, b = back.to_pymatgen(), crystal.to_pymatgen()
        if matcher.fit(a, b):
            fits += 1
            assert matcher.get_rms_dist(a, b)[0] < 0.05
    assert fits >= len(crystals) - 1  # a supercell input in P1 can miss the matcher's own primitive reduction


@pytest.mark.slow
@pytest.mark.parametrize(("dataset", "allowed_misses"), [("perov_5/train", 0), ("carbon_24/train", 1)])
def test_template_and_lattice_are_invariant_under_rewrites(dataset: str, allowed_misses: int) -> None:
    """Rotated, translated, permuted and re-based inputs give the same template and lattice.

    carbon_24's AIRSS cells sit within 0.1 Å of higher symmetries, so at a tolerance border
    spglib can find a symmetry in one rewrite and not in another (1.5 % of 400 rewrites over
    100 rows; ``benchmarks/bench_template.py`` reports the rate over every row): one such miss
    among these 60 rewrites is allowed there, none on perov_5.
    """
    rng = np.random.default_rng(0)
    misses = 0
    for crystal in load_dataset(dataset, max_rows=15).crystals:
        reference, _ = describe(crystal)
        rewrites = [transforms.random_rotation(crystal, rng), transforms.random_translation(crystal, rng),
                    transforms.permute_sites(crystal, rng)[0], transforms.change_basis(crystal, rng)]
        for rewritten in rewrites:
            other, _ = describe(rewritten)
            if other.template != reference.template:
                misses += 1
                continue
            np.testing.assert_allclose(other.lattice, reference.lattice, rtol=1e-6)
    assert misses <= allowed_misses


def test_symmetry_is_exact_for_any_free_parameters() -> None:
    """Moving the representatives along their triplets and changing the lattice keeps the group."""
    import spglib

    rng = np.random.default_rng(1)
    crystal = load_dataset("carbon_24/train", max_rows=40).crystals
    checked = 0
    for source in crystal:
        symmetric, _ = describe(source)
        if symmetric.space_group < 10:
            continue
        moved = []
        for orbit in symmetric.orbits:
            op = wyckoff_position(symmetric.space_group, orbit.letter).ops[0]
            moved.append(op.operate(orbit.representative + rng.normal(0, 0.01, 3)))
        lattice = tuple(x * (1.02 if i < 3 else 1.0) for i, x in enumerate(symmetric.lattice))
        new = symmetric.with_parameters(lattice, moved).to_crystal(primitive=False)
        found = spglib.get_symmetry_dataset((new.lattice, new.frac_coords, new.numbers), symprec=1e-4)
        assert found is not None and found.number == symmetric.space_group
        checked += 1
    assert checked >= 5


def test_expand_gives_the_multiplicity_and_errors_name_the_value() -> None:
    assert len(expand(227, "a", np.array([0.125, 0.125, 0.125]))) == 8
    with pytest.raises(CrystaloopError, match="no Wyckoff position 'z'"):
        wyckoff_position(221, "z")
    with pytest.raises(CrystaloopError, match="1..230"):
        wyckoff_position(231, "a")
    symmetric = from_structure(_perovskite())
    with pytest.raises(InvalidStructureError, match="cubic lattice takes 1 parameters"):
        SymmetricCrystal(221, (3.9, 3.9), symmetric.orbits)
