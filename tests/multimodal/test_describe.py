"""The fast describer on structures whose chemistry is known: symmetry, coordination, dimensionality."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from crystaloop.data.crystal import Crystal
from crystaloop.data.testing import change_basis, permute_sites, random_rotation
from crystaloop.multimodal.describe import crystal_facts, crystal_system, describe, describe_many


def _load(fixtures_dir: Path, name: str) -> Crystal:
    from pymatgen.core import Structure

    return Crystal.from_pymatgen(Structure.from_file(fixtures_dir / "structures" / name))


def _graphite(a: float = 2.46, c: float = 6.7) -> Crystal:
    lattice = [[a, 0, 0], [-a / 2, a * np.sqrt(3) / 2, 0], [0, 0, c]]
    frac = [[0, 0, 0.25], [0, 0, 0.75], [1 / 3, 2 / 3, 0.25], [2 / 3, 1 / 3, 0.75]]
    return Crystal.from_symbols(lattice, frac, ["C"] * 4)


def _chain() -> Crystal:
    """Isolated zig-zag-free chains of Se along a (2.4 Å apart), 6 Å between chains."""
    return Crystal.from_symbols(np.diag([2.4, 6.0, 6.0]), [[0, 0, 0]], ["Se"])


def test_rock_salt(fixtures_dir: Path) -> None:
    facts = crystal_facts(_load(fixtures_dir, "NaCl.cif"))
    assert (facts.formula, facts.spacegroup_number, facts.crystal_system) == ("NaCl", 225, "cubic")
    na = next(e for e in facts.environments if e.element == "Na")
    assert na.coordination == 6 and na.neighbours == (("Cl", 6),) and na.geometry == "octahedral"
    assert na.bond_length == pytest.approx(2.82, abs=0.02)
    assert facts.dimensionality == 3 and facts.density == pytest.approx(2.16, abs=0.03)


def test_perovskite_and_diamond(fixtures_dir: Path) -> None:
    srtio3 = crystal_facts(_load(fixtures_dir, "SrTiO3.cif"))
    ti = next(e for e in srtio3.environments if e.element == "Ti")
    sr = next(e for e in srtio3.environments if e.element == "Sr")
    assert srtio3.spacegroup_symbol == "Pm-3m"
    assert (ti.coordination, ti.geometry, sr.coordination, sr.geometry) == (6, "octahedral", 12, "cuboctahedral")
    diamond = crystal_facts(_load(fixtures_dir, "POSCAR_diamond"))
    assert diamond.spacegroup_number == 227 and diamond.environments[0].geometry == "tetrahedral"
    assert diamond.environments[0].coordination == 4


def test_dimensionality_of_layers_and_chains() -> None:
    graphite = crystal_facts(_graphite())
    assert graphite.dimensionality == 2 and graphite.crystal_system == "hexagonal"
    assert {(e.coordination, e.geometry) for e in graphite.environments} == {(3, "trigonal planar")}
    chain = crystal_facts(_chain())
    assert chain.dimensionality == 1 and chain.environments[0].geometry == "linear"


def test_description_names_the_facts_and_does_not_depend_on_the_setting(fixtures_dir: Path) -> None:
    crystal = _load(fixtures_dir, "SrTiO3.cif")
    text = describe(crystal)
    for phrase in ("SrTiO3", "cubic", "Pm-3m", "(No. 221)", "six O atoms", "three-dimensional", "g/cm³"):
        assert phrase in text
    rng = np.random.default_rng(0)
    for moved in (random_rotation(crystal, rng), change_basis(crystal, rng), permute_sites(crystal, rng)[0]):
        assert describe(moved) == text


def test_variants_are_seeded_keep_the_formula_and_vary() -> None:
    crystal = _graphite()
    first = [describe(crystal, rng=np.random.default_rng(s)) for s in range(12)]
    assert first == [describe(crystal, rng=np.random.default_rng(s)) for s in range(12)]
    assert all("C" in v.replace(".", " ").split() for v in first) and len(set(first)) > 4
    grouped = describe_many([crystal, _chain()], variants=2, seed=3)
    assert [len(g) for g in grouped] == [3, 3] and grouped[0][0] == describe(crystal)


def test_crystal_system_bounds() -> None:
    assert [crystal_system(n) for n in (1, 3, 16, 75, 143, 168, 195)] == [
        "triclinic", "monoclinic", "orthorhombic", "tetragonal", "trigonal", "hexagonal", "cubic",
    ]  # fmt: skip
    with pytest.raises(ValueError, match="231"):
        crystal_system(231)
