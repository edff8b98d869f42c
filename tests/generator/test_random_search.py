"""Random symmetric search: validity, stoichiometry, condition, determinism, de-duplication."""

from __future__ import annotations

import pytest

from crystaloop.data.crystal import check_plausible
from crystaloop.data.errors import CrystaloopError
from crystaloop.data.records import Condition
from crystaloop.generator.base import Generator
from crystaloop.generator.chemistry import is_charge_balanced
from crystaloop.generator.random_search import RandomSearchGenerator, compatible_space_groups


def test_csp_outputs_are_valid_with_the_exact_cell() -> None:
    gen = RandomSearchGenerator(space_groups=range(1, 75))
    assert isinstance(gen, Generator)
    out = gen.sample(4, Condition(composition={"Sr": 1, "Ti": 1, "O": 3}), seed=0)
    assert len(out) >= 3
    for c in out:
        assert c.crystal.composition == {"Sr": 1, "Ti": 1, "O": 3}
        check_plausible(c.crystal)
        assert c.crystal.min_pair_distance() > 0.8
        assert 20 < c.crystal.volume < 400
    assert len({c.id for c in out}) == len(out)


def test_de_novo_is_charge_balanced_within_limits_and_deterministic() -> None:
    gen = RandomSearchGenerator(max_atoms=8, exclude=("Mn",), space_groups=range(1, 75))
    condition = Condition(chemical_system=("Li", "Mn", "O"))
    a = gen.sample(4, condition, seed=7)
    b = gen.sample(4, condition, seed=7)
    assert [x.id for x in a] == [x.id for x in b]
    for c in a:
        assert set(c.crystal.elements) <= {"Li", "O"} and c.crystal.n_sites <= 8
        assert is_charge_balanced(c.crystal.composition)
        check_plausible(c.crystal)


def test_num_atoms_and_errors() -> None:
    gen = RandomSearchGenerator(max_atoms=6, space_groups=range(1, 75))
    out = gen.sample(2, Condition(chemical_system=("Mg", "O"), num_atoms=4), seed=1)
    assert all(c.crystal.composition == {"Mg": 2, "O": 2} for c in out)
    with pytest.raises(CrystaloopError, match="composition or a chemical system"):
        gen.sample(1, None, seed=0)
    with pytest.raises(CrystaloopError, match="no charge-balanced composition"):
        RandomSearchGenerator(max_atoms=2).sample(1, Condition(chemical_system=("Al", "O")), seed=0)
    with pytest.raises(CrystaloopError, match="space groups"):
        RandomSearchGenerator(space_groups=[0, 231])


def test_compatible_space_groups() -> None:
    groups = compatible_space_groups((1, 1, 3))
    assert 221 in groups and 225 not in groups


def test_registered_in_the_loop() -> None:
    from crystaloop.generator.random_search import RandomSearchChoice
    from crystaloop.generator.registry import make_generator

    gen = make_generator(RandomSearchChoice(max_atoms=10, space_groups=(1, 2, 221)))
    assert isinstance(gen, RandomSearchGenerator) and gen.space_groups == (1, 2, 221)


def test_outputs_pass_the_protocols_structural_validity() -> None:
    """The protocol's structural check (:func:`crystaloop.data.validity.structural_validity`) and the
    generator's own charge balance; SMACT's compositional validity is not promised (the generator's
    common-oxidation-state balance admits averaged states such as Ti3N4O3 with N at -1.5)."""
    from crystaloop.data.validity import structural_validity

    gen = RandomSearchGenerator(max_atoms=10, space_groups=range(1, 75))
    out = gen.sample(6, Condition(chemical_system=("Ca", "Ti", "N", "O")), seed=2)
    out += gen.sample(3, Condition(composition={"Mg": 2, "Si": 1, "O": 4}), seed=2)
    assert len(out) >= 6
    for c in out:
        assert structural_validity(c.crystal) and is_charge_balanced(c.crystal.composition), c.crystal.reduced_formula
        check_plausible(c.crystal)
    assert len({c.crystal.canonical_hash() for c in out}) == len(out)
