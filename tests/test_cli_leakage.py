"""`surrogate eval` and `generator eval` warn when evaluation rows trained the model and report the held-out rows (issue 21)."""

from __future__ import annotations

import csv
import gzip
import json
from pathlib import Path

from typer.testing import CliRunner

from crystaloop.cli import app
from crystaloop.data.datasets import shipped_path
from crystaloop.surrogates.ensemble import PropertyEnsemble

runner = CliRunner()


def _invoke(*args: str):
    return runner.invoke(app, list(args), catch_exceptions=False)


def _rows(name: str, split: str) -> list[list[str]]:
    with gzip.open(shipped_path(name, split), "rt", newline="") as handle:
        return list(csv.reader(handle))


def _write(path: Path, header: list[str], rows: list[list[str]]) -> Path:
    with path.open("w", newline="") as handle:
        csv.writer(handle).writerows([header, *rows])
    return path


def test_eval_warns_on_overlap_with_recorded_training_hashes(tmp_path: Path) -> None:
    header, *rows = _rows("perov_5", "val")
    train = _write(tmp_path / "train.csv", header, rows[:60])
    mixed = _write(tmp_path / "mixed.csv", header, rows[30:90])  # rows 30-59 trained the model
    config = tmp_path / "tiny.yaml"
    config.write_text("hidden: 8\nlayers: 1\nn_gaussians: 8\nbatch_size: 32\nensemble_size: 2\n")
    model = tmp_path / "model.pt"
    trained = _invoke("surrogate", "train", "--data", str(train), "--target", "heat_ref", "--out", str(model), "--epochs", "2", "--config", str(config), "--threads", "1")
    assert trained.exit_code == 0, trained.output
    assert len(PropertyEnsemble.load(model).metadata["train_structure_hashes"]) >= 55

    out = tmp_path / "metrics.json"
    result = _invoke("surrogate", "eval", "--model", str(model), "--data", str(mixed), "--out", str(out))
    assert result.exit_code == 0, result.output
    assert "30 of 60 rows (50%)" in result.output and "held out: the 30 rows not in training" in result.output
    metrics = json.loads(out.read_text())
    assert metrics["training_overlap"]["rows_in_training"] == 30
    assert metrics["held_out_rows"]["heat_ref"]["n"] == 30 and metrics["heat_ref"]["n"] == 60

    clean = _invoke("surrogate", "eval", "--model", str(model), "--data", str(_write(tmp_path / "new.csv", header, rows[100:120])), "--out", str(out))
    assert clean.exit_code == 0 and "trained this model" not in clean.output
    assert "held_out_rows" not in json.loads(out.read_text())


def test_eval_of_a_shipped_model_rereads_its_training_data(tmp_path: Path) -> None:
    header, *train_rows = _rows("perov_5", "train")
    _, *val_rows = _rows("perov_5", "val")
    mixed = _write(tmp_path / "mixed.csv", header, train_rows[:8] + val_rows[:12])
    out = tmp_path / "metrics.json"
    result = _invoke("surrogate", "eval", "--target", "heat_ref", "--data", str(mixed), "--out", str(out))
    assert result.exit_code == 0, result.output
    assert "8 of 20 rows (40%)" in result.output and "'perov_5/train' re-read" in result.output
    assert json.loads(out.read_text())["held_out_rows"]["heat_ref"]["n"] == 12


def test_generator_eval_warns_and_reports_the_held_out_items(tmp_path: Path) -> None:
    header, *train_rows = _rows("perov_5", "train")
    _, *val_rows = _rows("perov_5", "val")
    mixed = _write(tmp_path / "mixed.csv", header, train_rows[:6] + val_rows[:6])
    out = tmp_path / "csp"
    result = _invoke("generator", "eval", "--model", "perov_5_consistency", "--data", str(mixed), "--mode", "csp", "--k", "1",
                     "--out", str(out))
    assert result.exit_code == 0, result.output
    assert "6 of 12 test structures (50%) are in the generator's training data" in result.output
    assert "6 of 12 test structures are in the baselines' training split perov_5/train" in result.output
    metrics = json.loads((out / "results.json").read_text())
    assert metrics["training_overlap"]["items_in_training"] == 6 and metrics["n_held_out"] == 6
    assert "held_out_match_rate" in metrics and "held_out_match_rate" in (out / "results.md").read_text()
