"""OPTIMADE filters translate to SQL that selects exactly the expected reference crystals, on both backends."""

from __future__ import annotations

import random

import pytest
from sqlalchemy import select

from crystaloop.data.optimade.errors import BadFilterError, FilterNotImplementedError
from crystaloop.data.optimade.filters import FilterTranslator, parse_filter
from crystaloop.data.optimade.search import open_readonly_engine
from crystaloop.data.store.schema import CandidateRow

ALL = {"NaCl", "MgO", "SrTiO3", "BaTiO3", "SrZrO3", "C", "Si"}
PEROVSKITES = {"SrTiO3", "BaTiO3", "SrZrO3"}

# Every example of the issue first, then one or more cases per supported construct.
CASES: list[tuple[str, set[str]]] = [
    ('elements HAS ALL "Sr","Ti"', {"SrTiO3"}),
    ("nelements<=3", ALL),
    ('chemical_formula_reduced="SrTiO3"', {"SrTiO3"}),  # read as "O3SrTi", with a warning
    ('_crystaloop_e_above_hull<0.05 AND _crystaloop_status="evaluated"', {"SrTiO3"}),
    ("elements LENGTH 3", PEROVSKITES),
    ("LENGTH elements = 3", PEROVSKITES),  # list-last form, read with a warning
    ("_crystaloop_e_above_hull IS KNOWN", {"SrTiO3", "BaTiO3"}),
    # numbers
    ("nelements=2", {"NaCl", "MgO"}),
    ("nelements<2", {"C", "Si"}),
    ("nsites=5", PEROVSKITES),
    ("nsites>5 AND nsites<=8", {"NaCl", "MgO"}),
    ("nsites!=5", ALL - PEROVSKITES),
    ("nsites>=2.5", ALL - {"C", "Si"}),
    ("3 > nelements", ALL - PEROVSKITES),  # constant first
    ("nsites > nelements", ALL),  # property against property
    ("space_group_it_number=221", PEROVSKITES),
    ("space_group_it_number IS KNOWN", ALL),
    ("nperiodic_dimensions=3", ALL),
    ("_crystaloop_volume < 20", {"C"}),
    # strings
    ('chemical_formula_reduced="O3SrTi"', {"SrTiO3"}),
    ('chemical_formula_reduced="ClNa"', {"NaCl"}),
    ('chemical_formula_reduced!="ClNa"', ALL - {"NaCl"}),
    ('chemical_formula_reduced<"C"', {"BaTiO3"}),
    ('chemical_formula_anonymous="A3BC"', PEROVSKITES),
    ('chemical_formula_anonymous="AB"', {"NaCl", "MgO"}),
    ('chemical_formula_descriptive="Na4Cl4"', {"NaCl"}),
    ('chemical_formula_descriptive CONTAINS "Ti"', {"SrTiO3", "BaTiO3"}),
    ('chemical_formula_descriptive STARTS WITH "Sr"', {"SrTiO3", "SrZrO3"}),
    ('chemical_formula_descriptive STARTS "Sr"', {"SrTiO3", "SrZrO3"}),
    ('chemical_formula_descriptive ENDS WITH "O3"', PEROVSKITES),
    ('chemical_formula_descriptive ENDS "o3"', set()),  # case-sensitive on both backends
    ('chemical_formula_descriptive CONTAINS "sr"', set()),
    ('chemical_formula_descriptive CONTAINS "%"', set()),  # LIKE wildcards are literal
    ('chemical_formula_descriptive STARTS WITH "_"', set()),
    ('chemical_formula_descriptive = "Sr\\"TiO3"', set()),  # escaped quote inside a string
    ('type="structures"', ALL),
    # lists
    ('elements HAS "Si"', {"Si"}),
    ('elements HAS ANY "Ba","Zr"', {"BaTiO3", "SrZrO3"}),
    ('elements HAS ONLY "Sr","Ti","O"', {"SrTiO3"}),
    ('elements HAS ONLY "Mg","O","Na","Cl"', {"NaCl", "MgO"}),
    ("elements LENGTH >= 2", ALL - {"C", "Si"}),
    ('NOT elements HAS "O"', {"NaCl", "C", "Si"}),
    ('species_at_sites HAS "Na"', {"NaCl"}),
    ("species_at_sites LENGTH 2", {"C", "Si"}),
    ("elements_ratios HAS 1.0", {"C", "Si"}),
    ("elements_ratios HAS > 0.55", PEROVSKITES | {"C", "Si"}),
    ('elements:elements_ratios HAS "O":>0.5', PEROVSKITES),
    ('elements:elements_ratios HAS "O":0.5', {"MgO"}),
    ('elements:elements_ratios HAS ALL "Sr":0.2,"Ti":0.2', {"SrTiO3"}),
    ("structure_features LENGTH 0", ALL),
    ('structure_features HAS "disorder"', set()),
    ("dimension_types HAS 0", set()),
    # logic, parentheses, unknowns
    ('(nelements=1 OR nelements=3) AND NOT elements HAS "C"', {"Si"} | PEROVSKITES),
    ('NOT (nsites=5 OR nsites=8) OR elements HAS "Ba"', {"C", "Si", "BaTiO3"}),
    ("_crystaloop_e_above_hull > 0.05", {"BaTiO3"}),  # the smallest of 0.01 and 0.2 counts
    ("_crystaloop_e_above_hull >= 0.01", {"SrTiO3", "BaTiO3"}),
    ("_crystaloop_e_above_hull = 0.01", {"SrTiO3"}),
    ("_crystaloop_e_above_hull != 0.01", {"BaTiO3"}),
    ("_crystaloop_e_above_hull IS UNKNOWN", ALL - {"SrTiO3", "BaTiO3"}),
    ("NOT _crystaloop_e_above_hull < 0.05", ALL - {"SrTiO3"}),  # unknown compares false, NOT makes it true
    ("_crystaloop_measured_e_above_hull = 0.08", {"BaTiO3"}),
    ("_crystaloop_predicted_band_gap > 2", {"SrZrO3"}),
    ("_crystaloop_predicted_std_band_gap < 0.3", {"SrTiO3"}),
    ("_crystaloop_predicted_band_gap IS KNOWN", {"SrTiO3", "SrZrO3"}),
    ('_crystaloop_status="evaluated"', {"SrTiO3", "BaTiO3"}),
    ('_crystaloop_status="imported" OR _crystaloop_status="failed"', {"NaCl", "C"}),
    ('_crystaloop_campaign="c1"', {"SrTiO3", "BaTiO3", "MgO"}),
    ('_crystaloop_campaign="c1" AND _crystaloop_iteration=1', {"BaTiO3", "MgO"}),
    ("_crystaloop_campaign IS UNKNOWN", {"NaCl"}),
    ("NOT _crystaloop_iteration = 1", {"NaCl", "SrTiO3", "SrZrO3"}),
    ('_crystaloop_failed_guards HAS "smact"', {"MgO"}),
    ('_crystaloop_passed_guards HAS "smact"', {"SrTiO3", "BaTiO3"}),
    ('_crystaloop_passed_guards HAS ALL "smact","min_distance"', set()),
    ("_crystaloop_failed_guards LENGTH 0", ALL - {"MgO"}),
    ('last_modified > "2000-01-01T00:00:00Z"', ALL),
    ('last_modified < "2000-01-01T00:00:00+00:00"', set()),
    ('_crystaloop_created_at >= "2000-01-01"', ALL),
    ("_mp_band_gap > 1", set()),  # another provider's field is unknown
    ("NOT _mp_band_gap > 1", ALL),
    ("_mp_band_gap IS UNKNOWN", ALL),
    ('chemical_formula_hill = "NaCl"', set()),  # standard field not served: unknown
    ("", ALL),
    ("   ", ALL),
]


def _ids(url: str, text: str) -> tuple[set[str], list]:
    engine = open_readonly_engine(url)
    try:
        translation = FilterTranslator(engine.dialect.name).translate(text)
        stmt = select(CandidateRow.id)
        if translation.where is not None:
            stmt = stmt.where(translation.where)
        with engine.connect() as conn:
            return set(conn.execute(stmt).scalars()), translation.warnings
    finally:
        engine.dispose()


def test_filters_select_the_expected_crystals(known_store) -> None:
    failures = []
    for text, expected in CASES:
        ids, _ = _ids(known_store.url, text)
        got = known_store.names(ids)
        if got != expected:
            failures.append(f"{text!r}: expected {sorted(expected)}, got {sorted(got)}")
    assert not failures, "\n".join(failures)


def test_filters_with_ids(known_store) -> None:
    sto = known_store.ids["SrTiO3"]
    assert known_store.names(_ids(known_store.url, f'id="{sto}"')[0]) == {"SrTiO3"}
    assert known_store.names(_ids(known_store.url, f'immutable_id="{sto}"')[0]) == {"SrTiO3"}
    assert known_store.names(_ids(known_store.url, f'id STARTS WITH "{sto[:10]}"')[0]) == {"SrTiO3"}
    assert known_store.names(_ids(known_store.url, f'"{sto}" = id')[0]) == {"SrTiO3"}
    assert known_store.names(_ids(known_store.url, f'id != "{sto}"')[0]) == ALL - {"SrTiO3"}


def test_normalising_and_unknown_prefixes_warn(known_store) -> None:
    _, warnings = _ids(known_store.url, 'chemical_formula_reduced="SrTiO3"')
    assert [w.title for w in warnings] == ["FieldValueNormalised"] and "O3SrTi" in warnings[0].detail
    _, warnings = _ids(known_store.url, "_zzz_field = 1")
    assert [w.title for w in warnings] == ["UnknownProviderProperty"]
    _, warnings = _ids(known_store.url, "_mp_band_gap = 1")  # a registered provider: no warning
    assert warnings == []
    _, warnings = _ids(known_store.url, "LENGTH elements 2")
    assert [w.title for w in warnings] == ["NonStandardSyntax"]


@pytest.mark.parametrize(
    ("text", "error", "match"),
    [
        ("crazyfield = 2", BadFilterError, "not a known or searchable quantity"),
        ("_crystaloop_nope = 1", BadFilterError, "not a crystaloop field"),
        ('nsites = "5"', BadFilterError, "is a number"),
        ("chemical_formula_reduced = 5", BadFilterError, "is a string"),
        ('elements = "Si"', BadFilterError, "use HAS"),
        ("nsites HAS 3", BadFilterError, "not a list"),
        ('last_modified > "yesterday"', BadFilterError, "RFC 3339"),
        ("nsites = TRUE", BadFilterError, "boolean"),
        ("nsites ===", BadFilterError, "cannot parse"),
        ("nsites = 1; DROP TABLE candidates", BadFilterError, "cannot parse"),
        ('elements HAS ALL "Si",', BadFilterError, "cannot parse"),
        ("nsites CONTAINS 1", BadFilterError, "needs a string field"),
        ("elements HAS 1", BadFilterError, "element symbols"),
        ("a.b = 1", FilterNotImplementedError, "nested"),
        ('elements:nsites HAS "Si":1', FilterNotImplementedError, "zip"),
        ("lattice_vectors HAS 1", FilterNotImplementedError, "not supported"),
        ('"a" = "b"', FilterNotImplementedError, "string constant"),
        ("nsites = " + " OR nsites = ".join(str(i) for i in range(300)), BadFilterError, "characters long|more than"),
        ("elements HAS ANY " + ",".join(['"H"'] * 201), BadFilterError, "more than 200"),
        ("nsites=1\x00", BadFilterError, "NUL"),
    ],
)
def test_bad_and_unsupported_filters(text: str, error: type, match: str) -> None:
    with pytest.raises(error, match=match) as caught:
        FilterTranslator("postgresql").translate(text)
    assert caught.value.status == (501 if error is FilterNotImplementedError else 400)
    assert caught.value.parameter == "filter"


def test_translation_binds_values_never_inlines_them() -> None:
    from sqlalchemy.dialects import postgresql

    where = FilterTranslator("postgresql").translate('chemical_formula_descriptive = "x\'); DROP TABLE candidates; --"').where
    sql = str(select(CandidateRow.id).where(where).compile(dialect=postgresql.dialect()))
    assert "DROP" not in sql and "%(" in sql


def test_parse_is_cached() -> None:
    assert parse_filter("nsites = 1") is parse_filter("nsites = 1")


def test_translator_refuses_unknown_dialect() -> None:
    with pytest.raises(BadFilterError, match="allowed: sqlite, postgresql"):
        FilterTranslator("mysql")


def _random_filter(rng: random.Random, depth: int = 0) -> str:
    """A random filter over every construct of the grammar (valid OPTIMADE, any field names)."""
    props = ["nsites", "elements", "_crystaloop_x", "chemical_formula_reduced", "a_b2"]
    values = ['"Si"', '"a\\"b"', "3", "-2.5", "1e5", "+4", '""', "nelements"]
    ops = ["=", "!=", "<", "<=", ">", ">="]
    if depth < 3 and rng.random() < 0.5:
        joiner = rng.choice([" AND ", " OR "])
        inner = joiner.join(_random_filter(rng, depth + 1) for _ in range(2))
        return ("NOT " if rng.random() < 0.3 else "") + (f"({inner})" if rng.random() < 0.5 else inner)
    p, v, q = rng.choice(props), rng.choice(values), rng.choice(props)
    forms = [
        f"{p} {rng.choice(ops)} {v}",
        f"{p} IS {rng.choice(['KNOWN', 'UNKNOWN'])}",
        f"{p} {rng.choice(['CONTAINS', 'STARTS', 'STARTS WITH', 'ENDS', 'ENDS WITH'])} {v}",
        f"{p} HAS {rng.choice(['', '< ', '= '])}{v}",
        f"{p} HAS {rng.choice(['ALL', 'ANY', 'ONLY'])} {v},>{rng.choice(values)}",
        f"{p} LENGTH {rng.choice(['', '>= ', '= '])}{rng.randint(-3, 9)}",
        f"{p}:{q} HAS {v}:{rng.choice(values)}",
        f"{p}:{q} HAS {rng.choice(['ALL', 'ANY', 'ONLY'])} {v}:{v},{v}:>{v}",
        f"{rng.choice(['3', '-1.5'])} {rng.choice(ops)} {q}",
        f"{p}.sub {rng.choice(ops)} {v}",
    ]
    return ("NOT " if rng.random() < 0.2 else "") + rng.choice(forms)


def _signature(node):
    from lark import Tree

    if isinstance(node, Tree):
        return (str(node.data), tuple(_signature(c) for c in node.children))
    return (node.type, str(node))


def test_fast_parser_gives_the_reference_parsers_trees() -> None:
    """The LALR parser of optimade's grammar and optimade's own LarkParser (Earley) agree exactly."""
    from lark.exceptions import LarkError
    from optimade.filterparser import LarkParser

    from crystaloop.data.optimade.parsing import _parsers

    fast, _ = _parsers()
    reference = LarkParser(version=(1, 2, 0))
    rng = random.Random(11)
    corpus = [text for text, _ in CASES if text.strip()] + [_random_filter(rng) for _ in range(300)]
    parsed = 0
    for text in corpus:
        outcomes = []
        for parser in (fast, reference.lark):
            try:
                outcomes.append(_signature(parser.parse(text)))
            except LarkError:  # both must refuse the same texts
                outcomes.append("refused")
        assert outcomes[0] == outcomes[1], text
        parsed += isinstance(outcomes[0], tuple)
    assert parsed > 250  # most of the corpus is valid: the comparison is not vacuous
    for bad in ("nsites ===", 'elements HAS ALL "Si",', "(nsites=1", "NOT", 'x = "unterminated'):
        with pytest.raises(LarkError):
            fast.parse(bad)
        with pytest.raises(LarkError):
            reference.lark.parse(bad)
