"""`crystaloop db query` uses the API's translator: table, JSON and CIF output, exit code 2 on bad filters."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from crystaloop.cli import app

runner = CliRunner()


def _query(url: str, *args: str):
    return runner.invoke(app, ["db", "query", *args, "--store", url])


def test_query_formats(known_store) -> None:
    result = _query(known_store.url, 'elements HAS ALL "Sr","Ti" OR elements HAS "Ba"')
    assert result.exit_code == 0, result.output
    assert "2 of 2 structures" in result.output and "O3SrTi" in result.output and "BaO3Ti" in result.output

    result = _query(known_store.url, "nsites=5", "--format", "json", "--limit", "2", "--sort", "-_crystaloop_e_above_hull")
    assert result.exit_code == 0, result.output
    body = json.loads(result.stdout)
    assert body["meta"] == {"data_returned": 3, "more_data_available": True}
    assert [d["attributes"]["_crystaloop_e_above_hull"] for d in body["data"]] == [0.08, 0.01]

    result = _query(known_store.url, 'chemical_formula_reduced="ClNa"', "--format", "cif")
    assert result.exit_code == 0, result.output
    from pymatgen.io.cif import CifParser

    (structure,) = CifParser.from_str(result.stdout).parse_structures(primitive=False)
    assert structure.composition.reduced_formula == "NaCl" and len(structure) == 8
    assert known_store.ids["NaCl"] in result.stdout


def test_query_warns_and_fails_cleanly(known_store) -> None:
    result = _query(known_store.url, 'chemical_formula_reduced="SrTiO3"')
    assert result.exit_code == 0 and "FieldValueNormalised" in result.output
    for bad, message in (
        ('elements HAS ALL "Sr",', "cannot parse"),
        ("crazyfield = 1", "not a known or searchable"),
        ("a.b = 1", "Not Implemented"),
    ):
        result = _query(known_store.url, bad)
        assert result.exit_code == 2, (bad, result.output)
        assert "bad filter" in result.output and message in " ".join(result.output.split())
    result = _query(known_store.url, "nsites=1", "--format", "xml")
    assert result.exit_code == 2 and "allowed: table, json, csv, cif" in result.output
    result = _query(known_store.url, "nsites=1", "--sort", "elements")
    assert result.exit_code == 2 and "cannot be used for sorting" in " ".join(result.output.split())


def test_serve_help_lists_its_options() -> None:
    result = runner.invoke(app, ["serve", "--help"])
    assert result.exit_code == 0
    for option in ("--host", "--port", "--store"):
        assert option in result.output
