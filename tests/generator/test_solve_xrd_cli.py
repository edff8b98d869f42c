"""`crystaloop solve-xrd PATTERN` end to end: ranked solutions, plot, summary, clear errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from crystaloop.cli import app
from crystaloop.data.crystal import Crystal
from crystaloop.data.datasets import load_dataset
from crystaloop.data.xrd_forward import powder_pattern_of
from crystaloop.data.xrd_grid import DEFAULT_GRID
from crystaloop.generator.posterior.solution_checks import FLAGS
from crystaloop.multimodal.xrd_io import write_xy

runner = CliRunner()
FAST = ("--steps", "10", "--refine-iterations", "4")


@pytest.fixture(scope="module")
def target() -> Crystal:
    return load_dataset("perov_5/val", max_rows=2).crystals[1]


@pytest.fixture(scope="module")
def pattern_file(target: Crystal, tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("solve")
    return write_xy(folder / "measured.xy", DEFAULT_GRID.two_theta(), 500.0 * powder_pattern_of(target), header="simulated")


@pytest.mark.slow
def test_solve_xrd_writes_ranked_solutions_a_plot_and_a_summary(target: Crystal, pattern_file: Path, tmp_path: Path) -> None:
    out = tmp_path / "solutions.cif"
    formula = "".join(f"{element}{count}" for element, count in target.composition.items())
    result = runner.invoke(app, ["solve-xrd", str(pattern_file), "--composition", formula, "-n", "2", "--out", str(out), *FAST],
                           catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert out.read_text().count("data_") >= 1
    assert out.with_suffix(".png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    summary = json.loads(out.with_suffix(".summary.json").read_text())
    rwps = [row["rwp"] for row in summary["solutions"]]
    assert rwps == sorted(rwps) and all(0 <= r <= 1 for r in rwps)
    assert all(row["formula"] == target.reduced_formula for row in summary["solutions"]) and summary["mean_kl"] >= 0
    assert "OOD score" in result.output
    checks = summary["checks"]  # the checks on the best solution: modes cover every solution, flags are known names
    assert sum(len(mode["members"]) for mode in checks["modes"]) == len(rwps) and checks["modes"][0]["rwp"] == rwps[0]
    assert set(checks["flags"]) <= set(FLAGS) and ("no flag raised" in result.output) == (not checks["flags"])
    assert checks["early_agrees"] in (True, False)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--composition", "SrTiO3", "--chemsys", "Sr-Ti-O"], "exactly one of --composition"),
        ([], "exactly one of --composition"),
        (["--composition", "SrXx3"], "SrXx3"),
        (["--composition", "SrTiO3", "--out", "x.pdb"], "unknown extension"),
    ],
)
def test_solve_xrd_refuses_bad_requests(pattern_file: Path, args: list[str], message: str) -> None:
    result = runner.invoke(app, ["solve-xrd", str(pattern_file), *args, *FAST])
    assert result.exit_code == 2 and message in result.output


def test_solve_xrd_refuses_a_malformed_pattern_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.xy"
    bad.write_text("2theta intensity\n10 abc\n")
    result = runner.invoke(app, ["solve-xrd", str(bad), "--composition", "SrTiO3", *FAST])
    assert result.exit_code == 2 and "bad.xy" in result.output
