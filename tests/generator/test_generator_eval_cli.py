"""`crystaloop generator eval --mode csp`: the model and both no-learning baselines on the same rows,
k=1 and k, results files and symmetrised CIFs that carry their space group; bad input named."""

from __future__ import annotations

import csv
import gzip
import json
import re
from pathlib import Path

import pytest
import yaml
from pymatgen.io.cif import CifParser
from pymatgen.symmetry.analyzer import SpacegroupAnalyzer
from typer.testing import CliRunner

from crystaloop.cli import app
from crystaloop.data.datasets import shipped_path
from crystaloop.generator.csp import BASELINE_RANDOM, BASELINE_RULE

runner = CliRunner()


def _invoke(*args: str):
    return runner.invoke(app, list(args), catch_exceptions=False)


@pytest.fixture(scope="module")
def small_train(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The first 300 rows of perov_5/train, the shipped layout (the baselines' training split)."""
    with gzip.open(shipped_path("perov_5", "train"), "rt", newline="") as handle:
        rows = list(csv.reader(handle))
    path = tmp_path_factory.mktemp("eval") / "train.csv"
    with path.open("w", newline="") as handle:
        csv.writer(handle).writerows(rows[:301])
    return path


@pytest.fixture(scope="module")
def truth_run(tmp_path_factory: pytest.TempPathFactory, small_train: Path) -> tuple[Path, str]:
    """A campaign-style generator config that hands out the test rows themselves (the ground truth)."""
    folder = tmp_path_factory.mktemp("truth")
    config = folder / "truth.yaml"
    config.write_text(yaml.safe_dump({"generator": {"kind": "dataset-replay", "dataset": "perov_5/val"}}))
    out = folder / "out"
    result = _invoke("generator", "eval", "--generator", str(config), "--data", "perov_5/val", "--train", str(small_train),
                     "--rows", "4", "--k", "3", "--seed", "1", "--out", str(out))
    assert result.exit_code == 0, result.output
    return out, result.output


def test_all_three_arms_on_the_same_rows_and_the_truth_scores_100(truth_run: tuple[Path, str]) -> None:
    out, output = truth_run
    report = json.loads((out / "results.json").read_text())
    arms = {arm["arm"]: arm for arm in report["arms"]}
    assert list(arms) == ["model", BASELINE_RULE, BASELINE_RANDOM]
    assert {arm["n"] for arm in arms.values()} == {4} and {arm["n_k3"] for arm in arms.values()} == {4}
    assert report["rows"] == 4 and report["k"] == 3 and report["seed"] == 1
    model = arms["model"]
    assert model["match_k1_%"] == model["fit_k1_%"] == model["match_k3_%"] == model["fit_k3_%"] == 100.0
    for arm in arms.values():
        assert arm["match_k1_%"] <= arm["match_k3_%"] and arm["fit_k1_%"] <= arm["fit_k3_%"] and arm["structures_per_s"] > 0
    for name in ("model", "template rule", "random same-size", "match", "RMSE"):
        assert name in output
    with (out / "results.csv").open() as handle:
        assert [row["arm"] for row in csv.DictReader(handle)] == list(arms)
    assert "| model | 4 | 100.0 | 100.0 |" in (out / "results.md").read_text()


def test_k1_cifs_are_symmetrised_and_carry_the_space_group_they_parse_back_with(truth_run: tuple[Path, str]) -> None:
    out, _ = truth_run
    files = sorted((out / "cifs").glob("*.cif"))
    assert len(files) == 3
    seen = set()
    for path in files:
        text = path.read_text()
        claimed = [int(n) for n in re.findall(r"_symmetry_Int_Tables_number\s+(\d+)", text)]
        symbols = re.findall(r"_symmetry_space_group_name_H-M\s+'?([^'\n]+)'?", text)
        structures = CifParser(str(path)).parse_structures(primitive=False)
        assert len(structures) == len(claimed) == len(symbols) and structures
        assert [s.composition.reduced_formula for s in structures] == re.findall(r"# test_formula: (\S+)", text)
        for structure, number, symbol in zip(structures, claimed, symbols, strict=True):
            analyzer = SpacegroupAnalyzer(structure, symprec=0.1)
            assert analyzer.get_space_group_number() == number
            assert analyzer.get_space_group_symbol() == symbol.strip()
            seen.add(number)
    assert seen - {1}  # perov_5's ground truth is not all P1: the writer found and kept the symmetry


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--data", "nope/val"], "no dataset at 'nope/val'"),
        (["--data", "perov_5/test"], "unknown split of perov_5 'test'; allowed: train, val"),
        (["--k", "0"], "--k must be at least 1"),
        (["--rows", "0"], "--rows must be at least 1"),
        (["--model", "no_such_model"], "--model no_such_model: "),
        (["--model", "composite"], "kind 'composite' needs its settings"),
        (["--mode", "both"], "--mode must be csp or dng"),
    ],
)
def test_bad_input_exits_with_the_message_and_no_traceback(tmp_path: Path, args: list[str], message: str) -> None:
    base = {"--model": "random_search", "--data": "perov_5/val", "--out": str(tmp_path / "out"), "--rows": "2"}
    for option, value in zip(args[::2], args[1::2], strict=True):
        base[option] = value
    result = _invoke("generator", "eval", *[part for pair in base.items() for part in pair])
    assert result.exit_code == 2, result.output
    assert message in result.output and "Traceback" not in result.output


def test_unknown_kind_in_a_generator_config_names_the_kinds(tmp_path: Path) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text(yaml.safe_dump({"kind": "oracle-of-delphi"}))
    result = _invoke("generator", "eval", "--generator", str(config), "--data", "perov_5/val", "--out", str(tmp_path / "o"))
    assert result.exit_code == 2 and "unknown kind; allowed: diffusion" in result.output
