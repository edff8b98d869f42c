"""Training latents for the generator: one row per structure, one random view per row, seeded."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from crystaloop.data.datasets import load_dataset
from crystaloop.data.errors import CrystaloopError
from crystaloop.multimodal.describe import describe
from crystaloop.multimodal.fusion import FusionConfig, FusionModel, save_checkpoint
from crystaloop.multimodal.training_embeddings import training_embeddings


@pytest.fixture(scope="module")
def crystals():
    return load_dataset("perov_5/train", max_rows=24).crystals


@pytest.fixture
def model(tiny_config: FusionConfig) -> FusionModel:
    torch.manual_seed(0)
    return FusionModel(tiny_config).eval()


def test_one_unit_row_per_structure_from_a_seeded_random_view(model: FusionModel, crystals) -> None:
    result = training_embeddings(model, crystals, views=("structure", "xrd"), seed=0)
    assert result.vectors.shape == (len(crystals), model.latent_dim) and result.vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(result.vectors, axis=1), 1.0, atol=1e-5)
    assert set(result.views) == {"structure", "xrd"} and sum(result.counts().values()) == len(crystals)
    rows = [i for i, view in enumerate(result.views) if view == "structure"]
    assert np.allclose(result.vectors[rows], model.embed("structure", [crystals[i] for i in rows]), atol=1e-6)
    # the XRD rows are augmented patterns: not the latent of the clean pattern, nor of the structure
    xrd_rows = [i for i, view in enumerate(result.views) if view == "xrd"]
    assert not np.allclose(result.vectors[xrd_rows], model.embed("structure", [crystals[i] for i in xrd_rows]), atol=1e-3)
    again = training_embeddings(model, crystals, views=("structure", "xrd"), seed=0)
    assert again.views == result.views and np.array_equal(again.vectors, result.vectors)
    other = training_embeddings(model, crystals, views=("structure", "xrd"), seed=1)
    assert other.views != result.views


def test_a_single_view_and_bad_view_lists(model: FusionModel, crystals) -> None:
    only = training_embeddings(model, crystals[:5], views=("structure",), seed=3)
    assert only.views == ["structure"] * 5
    assert np.allclose(only.vectors, model.embed("structure", crystals[:5]), atol=1e-6)
    for bad in ((), ("structure", "structure"), ("xray",)):
        with pytest.raises(CrystaloopError, match="structure, xrd, text"):
            training_embeddings(model, crystals, views=bad)


@pytest.mark.slow
def test_text_rows_are_latents_of_the_describers_text(model: FusionModel, crystals) -> None:
    result = training_embeddings(model, crystals[:3], views=("text",), seed=0)
    assert np.allclose(result.vectors, model.embed("text", [describe(c) for c in crystals[:3]]), atol=1e-5)


def test_embed_training_command_writes_the_array_and_a_summary(model: FusionModel, tmp_path: Path) -> None:
    from crystaloop.cli import app

    fusion = save_checkpoint(model, tmp_path / "fusion.pt")
    out = tmp_path / "emb" / "perov.npy"
    args = ["multimodal", "embed-training", "--dataset", "perov_5/val", "--out", str(out), "--views", "structure,xrd",
            "--model", str(fusion), "--seed", "2"]
    result = CliRunner().invoke(app, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    vectors = np.load(out)
    summary = json.loads(out.with_suffix(".json").read_text())
    assert vectors.shape == (len(load_dataset("perov_5/val")), 8)
    assert summary["n"] == len(vectors) and summary["seed"] == 2 and sum(summary["rows_per_view"].values()) == len(vectors)
    bad = CliRunner().invoke(app, [*args[:-2], "--views", "structure,smell"])
    assert bad.exit_code != 0 and "structure, xrd, text" in bad.output
