"""The `crystaloop` CLI end to end on a real SQLite store."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from crystaloop.cli import app
from crystaloop.data.store import CandidateStore

runner = CliRunner()


def _invoke(*args: str):
    return runner.invoke(app, list(args), catch_exceptions=False)


def test_import_reports_bad_rows_keeps_good_ones_and_is_idempotent(tmp_path: Path, fixtures_dir: Path) -> None:
    url = f"sqlite:///{tmp_path / 'store.db'}"
    result = _invoke("data", "import", str(fixtures_dir / "mp20_layout.csv"), str(fixtures_dir / "broken"), "--store", url)
    assert result.exit_code == 0, result.output
    assert "read 3, added 3" in result.output
    assert "row 4 (material_id=fixture-bad-cif)" in result.output
    assert "overlapping.cif" in result.output and "huge cell" in result.output

    strict = _invoke("data", "import", str(fixtures_dir / "mp20_layout.csv"), "--store", url, "--strict")
    assert strict.exit_code == 1
    assert "added 0, already stored 3" in strict.output

    with CandidateStore(url) as store:
        assert store.count() == 3
        candidates = store.query()
        measured = {m.property for c in candidates for m in c.measurements}
        assert measured == {"formation_energy_per_atom", "band_gap", "e_above_hull"}
        assert {c.status.value for c in candidates} == {"imported"}


def test_import_with_store_from_environment(tmp_path: Path, fixtures_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    url = f"sqlite:///{tmp_path / 'env.db'}"
    monkeypatch.setenv("CRYSTALOOP_DB_URL", url)
    assert _invoke("data", "import", str(fixtures_dir / "structures")).exit_code == 0
    listing = _invoke("db", "ls", "--elements", "Sr,Ti")
    assert listing.exit_code == 0
    assert "SrTiO3" in listing.output and "NaCl" not in listing.output
    assert "1 of 1 candidates" in listing.output


def test_db_ls_rejects_bad_filters_and_urls(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'x.db'}"
    bad_element = _invoke("db", "ls", "--store", url, "--elements", "Sr,Xx")
    assert bad_element.exit_code == 2 and "Xx" in bad_element.output
    bad_status = _invoke("db", "ls", "--store", url, "--status", "finished")
    assert bad_status.exit_code == 2 and "finished" in bad_status.output
    bad_url = _invoke("db", "ls", "--store", "mongodb://localhost/x")
    assert bad_url.exit_code == 2 and "accepted: sqlite" in bad_url.output


def test_data_info_and_split(tmp_path: Path, fixtures_dir: Path) -> None:
    info = _invoke("data", "info", str(fixtures_dir / "mp20_layout.csv"))
    assert info.exit_code == 0
    assert "3 structures, 2 bad rows" in info.output and "band_gap" in info.output
    split = _invoke("data", "split", str(fixtures_dir / "mp20_layout.csv"), "--out", str(tmp_path / "parts"), "--fractions", "a=0.6,b=0.4", "--seed", "1")
    assert split.exit_code == 0
    assert sorted(p.name for p in (tmp_path / "parts").iterdir()) == ["a.csv.gz", "b.csv.gz"]
    bad = _invoke("data", "split", str(fixtures_dir / "mp20_layout.csv"), "--out", str(tmp_path / "p2"), "--fractions", "a=0.6,b=0.6")
    assert bad.exit_code == 2 and "sum to 1" in bad.output


def test_demo_builds_a_fresh_store(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    first = _invoke("demo", "--out", str(out), "--max-rows", "12", "--no-campaign")
    assert first.exit_code == 0, first.output
    assert "perov_5/train: read 12, added 12" in first.output
    again = _invoke("demo", "--out", str(out), "--max-rows", "12", "--no-campaign")  # a fresh store each time
    assert "perov_5/train: read 12, added 12" in again.output
    with CandidateStore(f"sqlite:///{out / 'store.db'}") as store:
        summary = store.summary()
    assert summary["total"] == json.loads(json.dumps(summary["by_status"]))["imported"] > 40
