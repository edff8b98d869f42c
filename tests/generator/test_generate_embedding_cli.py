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


@pytest.fixture(scope="module")
def untrained_prior(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An untrained latent prior marked as made for the shipped fusion model (the route, not its quality, is tested)."""
    import hashlib

    import torch

    from crystaloop.multimodal.pretrained import shipped_checkpoint
    from crystaloop.multimodal.prior import LatentPrior, PriorConfig, save_prior

    torch.manual_seed(0)
    prior = LatentPrior(PriorConfig(hidden=16, blocks=1, time_features=8))
    prior.metadata = {"fusion_checkpoint_sha256": hashlib.sha256(shipped_checkpoint().read_bytes()).hexdigest()}
    return save_prior(prior, tmp_path_factory.mktemp("prior") / "prior.pt")


def _embeddings(out: Path) -> list[tuple[float, ...]]:
    return [tuple(row["properties"]["crystaloop"]["condition"]["embedding"]) for row in json.loads(out.read_text())]


def test_route_prior_conditions_each_sample_on_its_own_latent_and_direct_on_the_query_latent(
    target: Crystal, pattern_file: Path, untrained_prior: Path, tmp_path: Path
) -> None:
    import numpy as np

    common = ["generate", "--xrd", str(pattern_file), "--composition", _formula(target), "-n", "3", *FAST, "--keep-invalid"]
    prior_out, direct_out = tmp_path / "prior.json", tmp_path / "direct.json"
    result = runner.invoke(app, [*common, "--route", "prior", "--prior", str(untrained_prior), "--out", str(prior_out)],
                           catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "route: prior" in result.output
    drawn = _embeddings(prior_out)
    assert len(drawn) == 3 and len(set(drawn)) == 3
    np.testing.assert_allclose(np.linalg.norm(np.array(drawn), axis=1), 1.0, atol=1e-5)
    result = runner.invoke(app, [*common, "--route", "direct", "--out", str(direct_out)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    direct = _embeddings(direct_out)
    assert len(set(direct)) == 1 and direct[0] not in drawn


def test_route_options_are_checked(pattern_file: Path, untrained_prior: Path, tmp_path: Path) -> None:
    import torch

    from crystaloop.multimodal.prior import load_prior, save_prior

    out = str(tmp_path / "out.cif")
    base = ["generate", "--composition", "SrTiO3", "--out", out, *FAST]
    bogus = runner.invoke(app, [*base, "--xrd", str(pattern_file), "--route", "sideways"])
    assert bogus.exit_code != 0 and "allowed: prior, direct" in bogus.output
    alone = runner.invoke(app, [*base, "--route", "prior"])
    assert alone.exit_code != 0 and "give one of them" in alone.output
    no_route = runner.invoke(app, [*base, "--xrd", str(pattern_file), "--prior", str(untrained_prior)])
    assert no_route.exit_code != 0 and "add --route prior" in no_route.output
    other, _ = load_prior(untrained_prior)
    other.metadata = {"fusion_checkpoint_sha256": "0" * 64}
    torch.manual_seed(0)
    foreign = save_prior(other, tmp_path / "foreign.pt")
    mismatch = runner.invoke(app, [*base, "--xrd", str(pattern_file), "--route", "prior", "--prior", str(foreign)])
    assert mismatch.exit_code != 0 and "trained on the latents of fusion checkpoint 000000000000" in mismatch.output
    assert not Path(out).exists()


def test_a_pure_carbon_pattern_is_read_by_the_carbon_multimodal_generator(tmp_path: Path) -> None:
    target = load_dataset("carbon_24/val", max_rows=1).crystals[0]
    pattern = write_xy(tmp_path / "carbon.xy", DEFAULT_GRID.two_theta(), 1000.0 * simulate_pattern(target), header="simulated")
    out = tmp_path / "out.json"
    result = runner.invoke(app, ["generate", "--xrd", str(pattern), "--composition", _formula(target), "-n", "2",
                                 "--out", str(out), *FAST, "--keep-invalid"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "carbon_24_multimodal" in result.output
    rows = json.loads(out.read_text())
    assert len(rows) == 2
    for row in rows:
        crystal = Crystal.from_pymatgen(Structure.from_dict(row))
        assert crystal.composition == target.composition
        assert len(row["properties"]["crystaloop"]["condition"]["embedding"]) == 64
