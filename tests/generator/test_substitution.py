"""Substitution generator: charge balance, stoichiometry, condition, determinism, de-duplication
and the ICSD-probability ranking, on a tiny library built from the prototypes (no MLIP)."""

from __future__ import annotations

import pytest

from crystaloop.data.crystal import check_plausible
from crystaloop.data.errors import CrystaloopError
from crystaloop.data.prototypes import PROTOTYPES, ion_radius
from crystaloop.data.records import Condition
from crystaloop.generator.base import Generator
from crystaloop.generator.chemistry import is_charge_balanced, oxidation_guess, reduced, scorer
from crystaloop.generator.substitution import SubstitutionGenerator


def _built(name: str, species: dict[str, str], states: dict[str, int]):
    prototype = next(p for p in PROTOTYPES if p.name == name)
    return prototype.build(species, {role: ion_radius(el, states[role]) for role, el in species.items()})


@pytest.fixture(scope="module")
def library():
    return [
        _built("perovskite", {"A": "Sr", "B": "Ti", "X": "O"}, {"A": 2, "B": 4, "X": -2}),
        _built("rocksalt", {"A": "Mg", "X": "O"}, {"A": 2, "X": -2}),
        _built("spinel", {"A": "Mg", "B": "Al", "X": "O"}, {"A": 2, "B": 3, "X": -2}),
    ]


@pytest.fixture(scope="module")
def generator(library):
    return SubstitutionGenerator(library, labels=["SrTiO3", "MgO", "MgAl2O4"], max_atoms=16)


def _assert_valid(candidates):
    for c in candidates:
        check_plausible(c.crystal)  # no overlapping atoms, sane volume
        assert is_charge_balanced(c.crystal.composition), c.crystal.reduced_formula


def test_implements_the_port(generator) -> None:
    assert isinstance(generator, Generator)


def test_csp_respects_stoichiometry_and_cell(generator) -> None:
    condition = Condition(composition={"Ba": 2, "Zr": 2, "O": 6})
    out = generator.sample(4, condition, seed=0)
    assert out
    for c in out:
        assert reduced(c.crystal.composition) == reduced(condition.composition)
    assert out[0].crystal.composition == {"Ba": 2, "Zr": 2, "O": 6}  # a supercell of the 5-atom parent
    assert "SrTiO3" in out[0].provenance.source
    _assert_valid(out)


def test_partial_substitution_splits_a_site_set(generator) -> None:
    out = generator.sample(3, Condition(composition={"Ca": 1, "Ti": 1, "O": 2, "N": 1}), seed=0)
    assert out and all(c.crystal.composition == {"Ca": 1, "Ti": 1, "O": 2, "N": 1} for c in out)
    assert "O→N" in out[0].provenance.source
    _assert_valid(out)


def test_ranking_puts_likely_substitution_first(generator, library) -> None:
    table = scorer()
    assert table.log_prob("Sr", "Ba", 2) > table.log_prob("Sr", "Zn", 2)
    only = SubstitutionGenerator(library[:1], prototypes=False, partial=False)
    ranked = only.ranked(Condition(chemical_system=("Ba", "Zn", "Ti", "O")))
    formulas = [s.crystal.composition for s in ranked]
    assert formulas.index({"Ba": 1, "Ti": 1, "O": 3}) < formulas.index({"Zn": 1, "Ti": 1, "O": 3})
    assert all("O" in f for f in formulas)  # no metal on the anion's sites
    assert ranked == sorted(ranked, key=lambda s: -s.log_prob)


def test_de_novo_respects_system_exclusions_and_atom_limit(library) -> None:
    gen = SubstitutionGenerator(library, exclude=("Ca",), max_atoms=6)
    out = gen.sample(30, Condition(chemical_system=("Ca", "Ba", "Sr", "Ti", "Zr", "O")), seed=1)
    assert out
    for c in out:
        assert set(c.crystal.elements) <= {"Ba", "Sr", "Ti", "Zr", "O"}
        assert c.crystal.n_sites <= 6
    _assert_valid(out)


def test_no_condition_uses_probable_replacements(library) -> None:
    out = SubstitutionGenerator(library[:2], replacements=2, partial_bases=10).sample(6, None, seed=0)
    assert len(out) == 6
    _assert_valid(out)


def test_outputs_are_unique_and_deterministic(library) -> None:
    gen = SubstitutionGenerator(library[:2], temperature=1.0, max_atoms=16, partial_bases=10, prototypes=False)
    condition = Condition(chemical_system=("Ba", "Ca", "Sr", "Ti", "Zr", "Mg", "O"))
    a = gen.sample(25, condition, seed=3)
    b = gen.sample(25, condition, seed=3)
    c = gen.sample(25, condition, seed=4)
    assert [x.id for x in a] == [x.id for x in b]
    assert len({x.id for x in a}) == len(a)
    assert [x.id for x in a] != [x.id for x in c]


def test_duplicate_library_entries_give_one_output(library) -> None:
    gen = SubstitutionGenerator([library[0], library[0]], prototypes=False)
    out = gen.sample(5, Condition(composition={"Ba": 1, "Ti": 1, "O": 3}), seed=0)
    assert len({c.crystal.canonical_hash() for c in out}) == len(out)
    assert sum("Sr→Ba" in c.provenance.source and "Ti" not in c.provenance.source.split(":")[1] for c in out) == 1


def test_clear_errors(generator) -> None:
    with pytest.raises(CrystaloopError, match="not charge-balanced"):
        generator.sample(1, Condition(composition={"Na": 1, "Cl": 2}), seed=0)
    with pytest.raises(CrystaloopError, match="excluded"):
        SubstitutionGenerator(prototypes=True, exclude=("O",)).sample(1, Condition(composition={"Mg": 1, "O": 1}), seed=0)
    with pytest.raises(CrystaloopError, match="no charge-balanced substitution"):
        SubstitutionGenerator(generator.library, prototypes=False).sample(1, Condition(chemical_system=("Na", "Cl"), num_atoms=3), seed=0)


def test_prototypes_alone_cover_a_composition() -> None:
    out = SubstitutionGenerator(prototypes=True).sample(3, Condition(composition={"Ca": 1, "F": 2}), seed=0)
    assert out and all(reduced(c.crystal.composition) == (("Ca", 1), ("F", 2)) for c in out)
    assert any("fluorite" in c.provenance.source for c in out)
    assert oxidation_guess({"Ca": 1, "F": 2}) == {"Ca": 2.0, "F": -1.0}


def test_registered_in_the_loop() -> None:
    from pydantic import TypeAdapter

    from crystaloop.generator.registry import GeneratorChoice, make_generator

    choice = TypeAdapter(GeneratorChoice).validate_python({"kind": "substitution", "exclude": ["Pb"], "max_atoms": 12})
    gen = make_generator(choice)
    assert isinstance(gen, SubstitutionGenerator) and gen.exclude == {"Pb"} and gen.max_atoms == 12
    with pytest.raises(ValueError, match="library"):  # a substitution setting on the diffusion kind
        TypeAdapter(GeneratorChoice).validate_python({"kind": "diffusion", "library": ["perov_5/train"]})
    with pytest.raises(ValueError, match="needs library"):
        TypeAdapter(GeneratorChoice).validate_python({"kind": "substitution", "prototypes": False})


def test_every_ranked_substitution_is_balanced_keeps_its_parents_sites_and_is_unique(library) -> None:
    """Not only the first few outputs: the whole ranked list of a broad system."""
    system = ("Ba", "Ca", "Sr", "Ti", "Zr", "Mg", "O")
    generator = SubstitutionGenerator(library, labels=["SrTiO3", "MgO", "MgAl2O4"], prototypes=False, max_atoms=16, partial_bases=10)
    ranked = generator.ranked(Condition(chemical_system=system))
    assert len(ranked) > 20
    sites = dict(zip(["SrTiO3", "MgO", "MgAl2O4"], [c.n_sites for c in library], strict=True))
    for s in ranked:
        composition = s.crystal.composition
        assert is_charge_balanced(composition), (s.origin, composition)
        assert set(composition) <= set(system)
        parent = next(label for label in sites if s.origin.startswith(label))
        assert s.crystal.n_sites == sites[parent], (s.origin, composition)  # ion exchange keeps every site
        check_plausible(s.crystal)
    assert len({s.crystal.canonical_hash() for s in ranked}) == len(ranked)
