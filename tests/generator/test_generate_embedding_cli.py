"""`crystaloop generate --xrd FILE | --text "..."` end to end on the shipped multimodal generator."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pymatgen.core import Structure
from typer.testing import CliRunner

from crystaloop.cli import app
from crystaloop.data.crystal import Crystal
from crystaloop.data.datasets import load_dataset
from crystaloop.data.xrd_grid import DEFAULT_GRID
from crystaloop.multimodal.xrd import simulate_pattern
from crystaloop.multimodal.xrd_io import write_xy

runner = CliRunner()
FAST = ("--steps", "20", "--method", "ddim")


@pytest.fixture(scope="module")
def target() -> Crystal:
    return load_dataset("perov_5/val", max_rows=1).crystals[0]


@pytest.fixture(scope="module")
def pattern_file(target: Crystal, tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("xrd")
    return write_xy(folder / "measured.xy", DEFAULT_GRID.two_theta(), 1000.0 * simulate_pattern(target), header="simulated")


def _formula(crystal: Crystal) -> str:
    return "".join(f"{element}{count}" for element, count in crystal.composition.items())


def test_generate_from_a_pattern_predicts_structures_of_the_composition(target: Crystal, pattern_file: Path, tmp_path: Path) -> None:
    out = tmp_path / "out.json"
    result = runner.invoke(app, ["generate", "--xrd", str(pattern_file), "--composition", _formula(target), "-n", "3",
                                 "--out", str(out), *FAST, "--keep-invalid"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    rows = json.loads(out.read_text())  # pymatgen Structure.as_dict() rows
    assert len(rows) == 3
    for row in rows:
        crystal = Crystal.from_pymatgen(Structure.from_dict(row))
        condition = row["properties"]["crystaloop"]["condition"]
        assert crystal.composition == target.composition
        assert len(condition["embedding"]) == 64 and condition["composition"] == target.composition


def test_xrd_and_text_together_a_model_without_embedding_and_a_malformed_pattern_are_refused(
    pattern_file: Path, tmp_path: Path
) -> None:
    out = str(tmp_path / "out.cif")
    both = runner.invoke(app, ["generate", "--xrd", str(pattern_file), "--text", "a cubic perovskite", "--out", out])
    assert both.exit_code != 0 and "at most one of --xrd and --text" in both.output
    plain = runner.invoke(app, ["generate", "--xrd", str(pattern_file), "--composition", "SrTiO3", "--model", "perov_5",
                                "--out", out, *FAST])
    assert plain.exit_code != 0 and "takes no embedding" in plain.output
    broken = tmp_path / "broken.xy"
    broken.write_text("10.0 5\n10.05 seven\n10.1 3\n")
    bad = runner.invoke(app, ["generate", "--xrd", str(broken), "--composition", "SrTiO3", "--out", out, *FAST])
    assert bad.exit_code != 0 and "broken.xy" in bad.output
    assert not Path(out).exists()


@pytest.mark.slow
def test_generate_from_text_with_guidance(tmp_path: Path) -> None:
    out = tmp_path / "out.cif"
    text = "SrTiO3 crystallizes in the cubic Pm-3m space group. Ti is bonded to six O atoms in an octahedral geometry."
    result = runner.invoke(app, ["generate", "--text", text, "--composition", "SrTiO3", "-n", "2", "--guidance", "2",
                                 "--out", str(out), *FAST, "--keep-invalid"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert out.read_text().count("\ndata_") + out.read_text().startswith("data_") == 2
