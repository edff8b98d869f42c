"""`crystaloop surrogate ...` and `crystaloop oracle relax` end to end."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from crystaloop.cli import app

runner = CliRunner()


def _invoke(*args: str):
    return runner.invoke(app, list(args), catch_exceptions=False)


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("surrogate")
    config = folder / "tiny.yaml"
    config.write_text("hidden: 8\nlayers: 1\nn_gaussians: 8\nbatch_size: 32\nensemble_size: 2\n")
    out = folder / "model.pt"
    result = _invoke("surrogate", "train", "--data", "perov_5/val", "--target", "heat_ref", "--out", str(out), "--epochs", "3", "--config", str(config), "--threads", "1")
    assert result.exit_code == 0, result.output
    assert "calibration split" in result.output and "heat_ref" in result.output
    return out


def test_eval_writes_metrics_and_a_plot(trained: Path, tmp_path: Path, fixtures_dir: Path) -> None:
    out = tmp_path / "metrics.json"
    result = _invoke("surrogate", "eval", "--model", str(trained), "--data", "perov_5/train", "--out", str(out))
    assert result.exit_code == 0, result.output
    metrics = json.loads(out.read_text())
    assert metrics["heat_ref"]["n"] == 3030 and metrics["heat_ref"]["mae"] > 0
    assert (tmp_path / "metrics-heat_ref.png").stat().st_size > 10_000
    missing = _invoke("surrogate", "eval", "--model", str(trained), "--data", str(fixtures_dir / "mp20_layout.csv"), "--out", str(out))
    assert missing.exit_code == 2 and "no column(s) ['heat_ref']" in missing.output


def test_predict_table_with_uncertainty(trained: Path, fixtures_dir: Path) -> None:
    result = _invoke("surrogate", "predict", str(fixtures_dir / "structures" / "SrTiO3.cif"), "--model", str(trained))
    assert result.exit_code == 0, result.output
    assert "SrTiO3" in result.output and "±" in result.output and "OOD score" in result.output
    broken = _invoke("surrogate", "predict", str(fixtures_dir / "broken" / "overlapping.cif"), "--model", str(trained))
    assert broken.exit_code == 2 and "no readable structure" in broken.output


def test_bad_options_are_named(tmp_path: Path) -> None:
    bad_arch = _invoke("surrogate", "train", "--data", "perov_5/val", "--target", "heat_ref", "--out", str(tmp_path / "m.pt"), "--architecture", "schnet")
    assert bad_arch.exit_code == 2 and "schnet" in bad_arch.output
    no_model = _invoke("surrogate", "predict", "x.cif", "--model", "nonexistent-model")
    assert no_model.exit_code == 2 and "allowed" in no_model.output


def test_oracle_relax_reports_status_per_structure(tmp_path: Path, fixtures_dir: Path) -> None:
    out = tmp_path / "relaxed.extxyz"
    result = _invoke("oracle", "relax", str(fixtures_dir / "structures"), "--oracle", "emt", "--steps", "5", "--out", str(out))
    assert result.exit_code == 0, result.output
    assert "NaCl" in result.output and "SrTiO3" in result.output
    assert out.exists()
    unknown = _invoke("oracle", "relax", str(fixtures_dir / "structures"), "--oracle", "vasp-magic")
    assert unknown.exit_code == 2 and "chgnet" in unknown.output
