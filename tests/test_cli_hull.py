"""`crystaloop hull add | show | eval` end to end with the EMT oracle on Cu–Al (a real SQLite cache)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from ase.build import bulk
from typer.testing import CliRunner

from crystaloop.cli import app
from crystaloop.data.crystal import Crystal

runner = CliRunner()


@pytest.fixture
def cache_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "cache"
    monkeypatch.setenv("CRYSTALOOP_CACHE_DIR", str(folder))
    return folder


def _cif(path: Path, structure: str, a: float) -> Path:
    path.write_text(Crystal.from_ase(bulk("CuAl", structure, a=a)).to_pymatgen().to(fmt="cif"))
    return path


def test_add_show_and_eval_share_one_hull(tmp_path: Path, cache_dir: Path) -> None:
    known = _cif(tmp_path / "known.cif", "rocksalt", 4.6)
    added = runner.invoke(app, ["hull", "add", str(known), "--oracle", "emt"], catch_exceptions=False)
    assert added.exit_code == 0, added.output
    assert "1 of 1 structures added" in added.output

    figure = tmp_path / "cual.png"
    shown = runner.invoke(app, ["hull", "show", "Cu-Al", "--oracle", "emt", "--all", "--out", str(figure)], catch_exceptions=False)
    assert shown.exit_code == 0, shown.output
    assert "prototype" in shown.output and "known" in shown.output and "known.cif" in shown.output
    assert "2 elements, 3 prototype, 1 known" in shown.output
    assert figure.stat().st_size > 1000

    candidate = _cif(tmp_path / "cand.cif", "cesiumchloride", 3.0)
    out = tmp_path / "results.json"
    evaluated = runner.invoke(app, ["hull", "eval", str(candidate), "--oracle", "emt", "--out", str(out)], catch_exceptions=False)
    assert evaluated.exit_code == 0, evaluated.output
    assert "read 1 structures from" in evaluated.output
    (record,) = json.loads(out.read_text())
    assert record["id"] == "cand" and record["formula"] == "AlCu"
    assert record["coverage"] == "known" and record["status"] == "ok"
    assert record["e_above_hull"] >= 0 and record["e_above_hull"] == pytest.approx(max(0.0, record["hull_distance"]))
    assert sum(d["fraction"] for d in record["decomposition"]) == pytest.approx(1.0)
    assert (cache_dir / "oracle.db").exists()


def test_bad_system_and_unreadable_file_exit_with_a_message(tmp_path: Path, cache_dir: Path) -> None:
    bad = runner.invoke(app, ["hull", "show", "Cu-Xx", "--oracle", "emt"])
    assert bad.exit_code == 2 and "Xx" in bad.output
    broken = tmp_path / "broken.cif"
    broken.write_text("data_nothing\n")
    result = runner.invoke(app, ["hull", "eval", str(broken), "--oracle", "emt"])
    assert result.exit_code == 2 and "no readable structure" in result.output


def test_known_phases_from_a_stores_imported_structures(tmp_path: Path, cache_dir: Path) -> None:
    from crystaloop.data.records import Candidate, CandidateStatus, Provenance
    from crystaloop.data.store import CandidateStore

    url = f"sqlite:///{tmp_path / 'store.db'}"
    crystals = [Crystal.from_ase(bulk("CuAl", "rocksalt", a=4.6)), Crystal.from_ase(bulk("Ni", "fcc", a=3.5))]
    provenance = Provenance(component="data.import", version="test", source="fixture")
    with CandidateStore(url) as store:
        store.add_many([Candidate(crystal=c, provenance=provenance, status=CandidateStatus.IMPORTED) for c in crystals])
    added = runner.invoke(app, ["hull", "add", "--from-store", url, "--system", "Cu-Al", "--oracle", "emt"], catch_exceptions=False)
    assert added.exit_code == 0, added.output
    assert "1 of 1 structures added" in added.output  # Ni lies outside Cu-Al
    nothing = runner.invoke(app, ["hull", "add", "--oracle", "emt"])
    assert nothing.exit_code == 2 and "--from-store" in nothing.output
