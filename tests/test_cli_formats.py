"""``--format table|json|csv`` of the table-printing commands, on real inputs.

For each command: the JSON document parses from stdout alone and carries the rows the table
shows (same count, same first column, in order); the CSV parses to the same rows; every line of
the table at a console width of 80 fits in 80 characters. The table formatter itself is checked
for whole words at width 80 (no word broken across lines) and for the columns it leaves out.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from ase.build import bulk
from rich.console import Console
from typer.testing import CliRunner

import crystaloop.commands.common as common
from crystaloop.cli import app
from crystaloop.commands.common import Column, Output, fitted_table
from crystaloop.data.crystal import Crystal
from crystaloop.data.datasets.loading import shipped_path

runner = CliRunner()
_BOX = set("┏┃┡│└━─┳╇┴┓┩┘")


@pytest.fixture(autouse=True)
def _console_80(monkeypatch: pytest.MonkeyPatch) -> None:
    """The commands' stdout console at 80 columns, as in an 80-column terminal."""
    monkeypatch.setattr(common, "console", Console(width=80, soft_wrap=True))


@pytest.fixture
def store_url(tmp_path: Path, fixtures_dir: Path) -> str:
    url = f"sqlite:///{tmp_path / 'store.db'}"
    imported = runner.invoke(app, ["data", "import", str(fixtures_dir / "mp20_layout.csv"), str(fixtures_dir / "structures"), "--store", url])
    assert imported.exit_code == 0, imported.output
    return url


def _tables(text: str) -> list[list[list[str]]]:
    """The body rows (cells, continuation lines joined) of every rich table in ``text``."""
    tables: list[list[list[str]]] = []
    body = False
    for line in text.splitlines():
        if line.startswith("┡"):
            tables.append([])
            body = True
        elif line.startswith("└"):
            body = False
        elif body and line.startswith("│"):
            cells = [c.strip() for c in line.strip("│").split("│")]
            if cells[0] or not tables[-1]:
                tables[-1].append(cells)
            else:
                tables[-1][-1] = [f"{a} {b}".strip() for a, b in zip(tables[-1][-1], cells, strict=True)]
    return tables


def _check(argv: list[str], table: str, key: str, shown: Callable[[Any], str] = str, *, index: int = 0, has_csv: bool = True) -> dict:
    """Run ``argv`` in the three formats; return the JSON document."""
    as_table = runner.invoke(app, argv, catch_exceptions=False)
    assert as_table.exit_code == 0, as_table.output
    long_lines = [line for line in as_table.stdout.splitlines() if set(line) & _BOX and len(line) > 80]
    assert not long_lines, long_lines
    rows_shown = _tables(as_table.stdout)[index]

    as_json = runner.invoke(app, [*argv, "--format", "json"], catch_exceptions=False)
    assert as_json.exit_code == 0, as_json.output
    document = json.loads(as_json.stdout)  # stdout holds the document and nothing else
    rows = document[table]
    assert [shown(r[key]) for r in rows] == [cells[0] for cells in rows_shown]

    as_csv = runner.invoke(app, [*argv, "--format", "csv"], catch_exceptions=False)
    if not has_csv:
        assert as_csv.exit_code == 2 and "use --format json" in as_csv.output
        return document
    assert as_csv.exit_code == 0, as_csv.output
    parsed = list(csv.DictReader(io.StringIO(as_csv.stdout)))
    assert [r[key] for r in parsed] == ["" if r[key] is None else str(r[key]) for r in rows]
    return document


def test_db_ls_and_db_query(store_url: str) -> None:
    listed = _check(["db", "ls", "--store", store_url], "candidates", "id", lambda i: i[:12])
    assert listed["total"] == len(listed["candidates"]) == 3  # the folder holds the CSV's structures again
    assert {"SrTiO3", "NaCl"} <= {r["formula"] for r in listed["candidates"]}
    argv = ["db", "query", "nsites>=2", "--store", store_url]
    shown = [cells[0] for cells in _tables(runner.invoke(app, argv).stdout)[0]]
    documents = json.loads(runner.invoke(app, [*argv, "--format", "json"]).stdout)["data"]  # OPTIMADE documents
    rows = list(csv.DictReader(io.StringIO(runner.invoke(app, [*argv, "--format", "csv"]).stdout)))
    assert shown == [d["id"][:12] for d in documents] == [r["id"][:12] for r in rows] and len(rows) == 3
    assert [r["chemical_formula_reduced"] for r in rows] == [d["attributes"]["chemical_formula_reduced"] for d in documents]


def test_db_query_json_keeps_its_optimade_documents(store_url: str) -> None:
    result = runner.invoke(app, ["db", "query", 'elements HAS "Sr"', "--store", store_url, "--format", "json"])
    body = json.loads(result.stdout)
    assert body["meta"]["data_returned"] == len(body["data"]) == 1 and body["data"][0]["attributes"]["chemical_formula_reduced"] == "O3SrTi"


def test_data_info(fixtures_dir: Path) -> None:
    document = _check(["data", "info", str(fixtures_dir / "mp20_layout.csv")], "properties", "property")
    assert document["structures"] == 3 and document["bad_rows"] == 2 and len(document["bad_row_reasons"]) == 2
    assert {r["property"] for r in document["properties"]} == {"formation_energy_per_atom", "band_gap", "e_above_hull"}


def test_oracle_relax(fixtures_dir: Path) -> None:
    document = _check(["oracle", "relax", str(fixtures_dir / "structures"), "--oracle", "emt", "--steps", "5"], "relaxations", "structure")
    statuses = {r["structure"]: r["status"] for r in document["relaxations"]}
    assert statuses["NaCl"] == "failed" and "No EMT-potential" in next(r["reason"] for r in document["relaxations"] if r["structure"] == "NaCl")


def test_surrogate_predict(fixtures_dir: Path) -> None:
    document = _check(["surrogate", "predict", str(fixtures_dir / "structures"), "--target", "heat_ref"], "predictions", "structure")
    assert all(r["heat_ref_std"] > 0 and r["ood_score"] >= 0 for r in document["predictions"])


def test_surrogate_eval(tmp_path: Path) -> None:
    source = shipped_path("perov_5", "val")
    with gzip.open(source, "rt") if source.suffix == ".gz" else open(source) as handle:
        lines = handle.read().splitlines(keepends=True)
    header = next(csv.reader([lines[0]]))
    records = list(csv.reader(io.StringIO("".join(lines))))[1:13]
    small = tmp_path / "small.csv"
    with small.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(records)
    document = _check(["surrogate", "eval", "--data", str(small), "--target", "heat_ref", "--out", str(tmp_path / "m.json")], "all_rows", "target")
    assert document["all_rows"][0]["n"] == 12 and document["metrics"] == str(tmp_path / "m.json")


def test_generator_list() -> None:
    document = _check(["generator", "list"], "generators", "name")
    assert "perov_5" in {r["name"] for r in document["generators"]}


def test_hull_add_show_eval(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CRYSTALOOP_CACHE_DIR", str(tmp_path / "cache"))
    known = tmp_path / "known.cif"
    known.write_text(Crystal.from_ase(bulk("CuAl", "rocksalt", a=4.6)).to_pymatgen().to(fmt="cif"))
    added = _check(["hull", "add", str(known), "--oracle", "emt"], "known_phases", "structure")
    assert added["known_phases"][0]["status"] == "ok"
    shown = _check(["hull", "show", "Cu-Al", "--oracle", "emt", "--all", "--out", str(tmp_path / "h.png")], "phases", "formula")
    assert shown["phase_counts"]["known"] >= 1
    evaluated = _check(["hull", "eval", str(known), "--oracle", "emt"], "structures", "id")
    assert evaluated["structures"][0]["e_above_hull"] is not None


@pytest.mark.slow
def test_campaign_run(tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text(json.dumps({
        "name": "formats",
        "objectives": [{"property": "heat_ref", "goal": "minimise", "units": "eV", "threshold": -0.5}],
        "budget": {"iterations": 2, "candidates_per_iteration": 8, "oracle_calls_per_iteration": 2},
        "strategy": {"kind": "random"},
        "generator": {"kind": "dataset-replay", "dataset": "perov_5/val"},
        "oracle": {"kind": "replay", "dataset": "perov_5/val", "measure": ["heat_ref"]},
    }))  # fmt: skip
    argv = ["campaign", "run", str(config), "--store", f"sqlite:///{tmp_path / 's.db'}", "--figures", str(tmp_path / "fig")]
    first = runner.invoke(app, argv, catch_exceptions=False)
    assert first.exit_code == 0, first.output
    assert not [line for line in first.stdout.splitlines() if set(line) & _BOX and len(line) > 80]
    again = runner.invoke(app, [*argv, "--resume", "--format", "json"], catch_exceptions=False)  # nothing left to run: the same reports
    document = json.loads(again.stdout)
    assert [r["iteration"] for r in document["iterations"]] == [int(cells[0]) for cells in _tables(first.stdout)[0]] == [0, 1]
    assert document["campaign"] == "formats" and document["iterations"][0]["generated"] == 8
    refused = runner.invoke(app, [*argv, "--resume", "--format", "csv"])
    assert refused.exit_code == 2 and "use --format json" in refused.output


def test_fitted_table_keeps_words_whole_and_leaves_out_low_priority_columns() -> None:
    words = "decomposes into 0.5 CaO + 0.5 CoF2 with a rather long explanation of the hull coverage class"
    columns = [
        Column("id", "structure identifier", max_width=14),
        Column("formula", "formula"),
        Column("note", "note"),
        Column("extra", "a column nobody needs", priority=1),
        Column("value", "energy (eV/atom)", "{:.4f}", justify="right"),
    ]
    rows = [{"id": "x" * 40, "formula": f"Ca{i}CoO3F", "note": words, "extra": "superfluous-" * 4, "value": -1.0 / (i + 1)} for i in range(3)]
    table, left_out = fitted_table(columns, rows, title="a long title " * 10, width=80)
    console = Console(width=80, record=True, file=io.StringIO())
    console.print(table)
    text = console.export_text()
    assert max(len(line) for line in text.splitlines()) <= 80
    assert left_out == ["a column nobody needs"] and "superfluous" not in text
    cells = " ".join(" ".join(row) for row in _tables(text)[0])
    assert all(word in cells.split() for word in words.split())  # every word whole, none split across lines
    assert "x" * 13 + "…" in text  # the over-long id is cut, with an ellipsis
    wide = Console(width=200, record=True, file=io.StringIO())
    wide_table, none_left = fitted_table(columns, rows, title=None, width=200)
    wide.print(wide_table)
    assert not none_left and "superfluous-" * 4 in wide.export_text()


def test_json_document_is_plain_json() -> None:
    import numpy as np

    out = Output("json")
    out.table("rows", [Column("x", "x")], [{"x": np.float32(1.5), "y": float("nan"), "z": [np.int64(2)], "p": Path("a/b")}])
    out.add(total=np.int64(1))
    assert json.loads(out.render()) == {"rows": [{"x": 1.5, "y": None, "z": [2], "p": "a/b"}], "total": 1}
    with pytest.raises(ValueError, match="rows"):
        out.add(rows=1)
