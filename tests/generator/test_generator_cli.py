"""`crystaloop generate` and `crystaloop generator train|eval|list` end to end on a tiny checkpoint."""

from __future__ import annotations

import csv
import gzip
import json
from pathlib import Path

import pytest
import yaml
from ase.io import read
from pymatgen.io.cif import CifParser
from typer.testing import CliRunner

from crystaloop.cli import app
from crystaloop.data.datasets import shipped_path
from crystaloop.data.store import CandidateStore

runner = CliRunner()

TINY = {"network": {"hidden": 16, "layers": 1, "fourier_frequencies": 2, "time_features": 8, "properties": ["heat_ref", "dir_gap"]},
        "max_atoms": 20,
        "diffusion": {"timesteps": 20}, "train": {"batch_size": 512, "checkpoint_every": 1}}


def _invoke(*args: str):
    return runner.invoke(app, list(args), catch_exceptions=False)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("generator")
    config = folder / "tiny.yaml"
    config.write_text(yaml.safe_dump(TINY))
    out = folder / "tiny.pt"
    with gzip.open(shipped_path("perov_5", "train"), "rt", newline="") as handle:
        rows = list(csv.reader(handle))
    small = folder / "small.csv"
    with small.open("w", newline="") as handle:
        csv.writer(handle).writerows(rows[:301])  # header + 300 structures, the shipped layout
    result = _invoke("generator", "train", "--dataset", str(small), "--validation", str(small), "--config", str(config),
                     "--epochs", "2", "--out", str(out))
    assert result.exit_code == 0, result.output
    assert "trained 2 epochs" in result.output
    return out


def test_generate_writes_cif_extxyz_and_json_and_fills_the_store(checkpoint: Path, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'store.db'}"
    cif = tmp_path / "out.cif"
    result = _invoke("generate", "--composition", "SrTiO3", "-n", "3", "--out", str(cif), "--model", str(checkpoint),
                     "--steps", "10", "--store", url, "--keep-invalid")  # a 2-epoch model: most samples implausible
    assert result.exit_code == 0, result.output
    structures = CifParser(str(cif)).parse_structures(primitive=False)
    assert len(structures) + int("dropped" in result.output) >= 3 - 0 and all(s.composition.reduced_formula == "SrTiO3" for s in structures)
    implausible = result.output.count("SrTiO3: structure:")
    with CandidateStore(url) as store:
        assert store.count() == len(structures) - implausible  # implausible samples are never stored
    xyz = tmp_path / "out.extxyz"
    assert _invoke("generate", "--chemsys", "Ba-Ti-O", "-n", "2", "--num-atoms", "5", "--out", str(xyz), "--model", str(checkpoint),
                   "--steps", "5", "--method", "ddim", "--keep-invalid").exit_code == 0
    frames = read(str(xyz), index=":")
    assert frames and all(set(f.get_chemical_symbols()) <= {"Ba", "Ti", "O"} for f in frames)
    js = tmp_path / "out.json"
    assert _invoke("generate", "--composition", "BaTiO3", "-n", "2", "--out", str(js), "--model", str(checkpoint), "--steps", "5", "--keep-invalid").exit_code == 0
    rows = json.loads(js.read_text())
    ours = [row["properties"]["crystaloop"] for row in rows]  # pymatgen Structure.as_dict() rows
    assert ours and all(o["formula"] == "BaTiO3" and o["generator"] == "generator.diffusion" for o in ours)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--composition", "Xx2O"], "unknown element 'Xx'; allowed: element symbols H..Og"),
        (["--composition", "Sr(Ti"], "is not a chemical formula"),
        (["--composition", "UO2"], "element U is outside this model's vocabulary"),
        (["--composition", "O40Ti20"], "60 atoms per cell exceed this model's maximum of 20"),
        (["--target", "band_gap=2.0"], "cannot condition on ['band_gap']; this model knows: heat_ref, dir_gap"),
        (["--target", "dir_gap"], "must look like name=value"),
        (["--target", "heat_ref=nan"], "finite"),
    ],
)
def test_bad_generate_input_names_the_value_and_what_is_allowed(checkpoint: Path, tmp_path: Path, args: list[str], message: str) -> None:
    result = _invoke("generate", "--out", str(tmp_path / "x.cif"), "--model", str(checkpoint), "--steps", "2", *args)
    assert result.exit_code == 2 and message in result.output


def test_missing_checkpoint_and_bad_extension(tmp_path: Path) -> None:
    missing = _invoke("generate", "--composition", "SrTiO3", "--out", str(tmp_path / "x.cif"), "--model", str(tmp_path / "none.pt"))
    assert missing.exit_code == 2 and "neither a file nor a shipped name; shipped: perov_5, carbon_24, perov_5_consistency, carbon_24_consistency" in missing.output
    bad = _invoke("generate", "--composition", "SrTiO3", "--out", str(tmp_path / "x.pdb"))
    assert bad.exit_code == 2 and "allowed: .cif, .xyz, .extxyz, .json" in bad.output


def test_eval_writes_metrics_and_a_markdown_table(checkpoint: Path, tmp_path: Path) -> None:
    out = tmp_path / "csp"
    result = _invoke("generator", "eval", "--model", str(checkpoint), "--data", "perov_5/val", "--mode", "csp", "--rows", "4",
                     "--k", "2", "--train", str(checkpoint.parent / "small.csv"), "--steps", "5", "--out", str(out))
    assert result.exit_code == 0, result.output
    report = json.loads((out / "results.json").read_text())
    assert [arm["n"] for arm in report["arms"]] == [4, 4, 4] and report["steps"] == 5
    model = report["arms"][0]
    assert 0.0 <= model["match_k1_%"] <= model["match_k2_%"] <= 100.0 and model["structures_per_s"] > 0
    assert "| match k=1 % |" in (out / "results.md").read_text()
    dng = tmp_path / "dng"
    result = _invoke("generator", "eval", "--model", str(checkpoint), "--data", "perov_5/val", "--mode", "dng", "--limit", "6",
                     "--steps", "5", "--coverage-limit", "0", "--out", str(dng))
    assert result.exit_code == 0, result.output
    metrics = json.loads((dng / "results.json").read_text())
    assert metrics["n"] == 6 and 0.0 <= metrics["structural_validity"] <= 100.0 and metrics["smact_version"]
    assert _invoke("generator", "eval", "--model", str(checkpoint), "--data", "perov_5/val", "--mode", "xyz", "--out", str(dng)).exit_code == 2
