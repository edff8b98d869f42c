"""Encoders and fusion: invariance, shapes, unit norm, bad inputs, checkpoints, and that training learns."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from crystaloop.data.crystal import Crystal
from crystaloop.data.errors import CrystaloopError
from crystaloop.data.testing import assert_invariant, assert_supercell, random_crystal
from crystaloop.data.xrd_grid import N_POINTS
from crystaloop.multimodal.encoders import Encoder
from crystaloop.multimodal.features import DatasetViews
from crystaloop.multimodal.fusion import FusionConfig, FusionModel, clip_loss, load_checkpoint, save_checkpoint
from crystaloop.multimodal.text import LayerMixHead
from crystaloop.multimodal.xrd import simulate_patterns


@pytest.fixture
def model(tiny_config: FusionConfig) -> FusionModel:
    torch.manual_seed(0)
    return FusionModel(tiny_config).eval()


@pytest.fixture
def crystals() -> list[Crystal]:
    return [random_crystal(np.random.default_rng(s), n_sites=3 + s % 3) for s in range(6)]


@pytest.mark.parametrize("precision", ["float64", "float32"])
def test_structure_embedding_is_invariant(model: FusionModel, precision: str) -> None:
    rng = np.random.default_rng(1)
    crystal = random_crystal(rng, n_sites=5)

    def embed(c: Crystal) -> np.ndarray:
        model.to(torch.get_default_dtype())
        return model.encode_structures(_featurise(model, [c])).detach()

    assert_invariant(embed, crystal, rng=rng, precision=precision)
    assert_supercell(embed, crystal, (1, 2, 1), precision=precision)


def _featurise(model: FusionModel, crystals: list[Crystal]):  # noqa: ANN202
    from crystaloop.multimodal.structure import featurise

    return featurise(crystals, model.config.structure)


def test_batch_equals_single_and_rows_are_unit_vectors(model: FusionModel, crystals: list[Crystal]) -> None:
    batch = model.embed("structure", crystals)
    assert batch.shape == (6, 8) and batch.dtype == np.float32
    assert np.allclose(np.linalg.norm(batch, axis=1), 1.0, atol=1e-5)
    single = np.concatenate([model.embed("structure", [c]) for c in crystals])
    assert np.abs(batch - single).max() < 1e-5
    patterns = simulate_patterns(crystals)
    xrd = model.encoder("xrd").embed(patterns)
    assert xrd.shape == (6, 8) and np.allclose(np.linalg.norm(xrd, axis=1), 1.0, atol=1e-5)
    assert np.abs(model.embed("xrd", patterns[2]) - xrd[2]).max() < 1e-5
    assert isinstance(model.encoder("structure"), Encoder)


def test_bad_inputs_are_refused_clearly(model: FusionModel, crystals: list[Crystal]) -> None:
    with pytest.raises(CrystaloopError, match=f"expected \\(n, {N_POINTS}\\)"):
        model.embed("xrd", np.ones((2, 1000)))
    with pytest.raises(CrystaloopError, match="NaN"):
        model.embed("xrd", np.full((1, N_POINTS), np.nan))
    with pytest.raises(CrystaloopError, match="text 1 is empty"):
        model.embed("text", ["cubic perovskite", "   "])
    with pytest.raises(CrystaloopError, match="one string"):
        model.embed("text", "cubic perovskite")
    with pytest.raises(CrystaloopError, match="expected a Crystal"):
        model.embed("structure", [crystals[0], "NaCl"])
    with pytest.raises(CrystaloopError, match="allowed: structure, xrd, text"):
        model.embed("image", crystals)  # type: ignore[arg-type]


def test_layer_mix_weights_are_a_distribution_over_layers() -> None:
    head = LayerMixHead(out_dim=4, hidden=8)
    with torch.no_grad():
        head.layer_logits.copy_(torch.tensor([5.0, 0, 0, 0, 0, 0, -5.0]))
    weights = head.layer_weights()
    assert weights.shape == (7,) and float(weights.sum().detach()) == pytest.approx(1.0)
    features = torch.randn(3, 7, 384)
    changed = features.clone()
    changed[:, -1] += 10.0  # the deep layer barely counts with these weights
    assert (head(features) - head(changed)).abs().max() < (head(features) - head(features.flip(1))).abs().max()


def test_checkpoint_round_trip_is_self_describing(
    model: FusionModel, crystals: list[Crystal], tmp_path: Path, tiny_config: FusionConfig
) -> None:
    model.metadata = {"data_hash": "abc", "metrics": {"recall@1": 0.5}}
    path = save_checkpoint(model, tmp_path / "m.pt")
    payload = torch.load(path, weights_only=True)
    assert {"format", "config", "normalisation", "text_model", "metadata", "state_dict"} <= set(payload)
    loaded, meta = load_checkpoint(path)
    assert loaded.config == tiny_config and meta["metadata"]["data_hash"] == "abc"
    assert np.array_equal(loaded.embed("structure", crystals), model.embed("structure", crystals))
    torch.save({"format": "other"}, tmp_path / "bad.pt")
    with pytest.raises(CrystaloopError, match="not a multimodal fusion checkpoint"):
        load_checkpoint(tmp_path / "bad.pt")


def test_clip_loss_prefers_aligned_pairs() -> None:
    aligned = torch.nn.functional.normalize(torch.randn(16, 8, generator=torch.Generator().manual_seed(0)), dim=-1)
    shuffled = aligned[torch.randperm(16, generator=torch.Generator().manual_seed(1))]
    scale = torch.tensor(10.0)
    assert clip_loss({"a": aligned, "b": aligned}, scale) < clip_loss({"a": aligned, "b": shuffled}, scale)
    assert float(clip_loss({"a": aligned, "b": shuffled}, scale)) > np.log(16) - 1.0


def test_training_a_tiny_model_lowers_the_loss_and_resumes(tmp_path: Path, tiny_config: FusionConfig) -> None:
    from crystaloop.data.datasets import CrystalDataset
    from crystaloop.multimodal.training import TrainConfig, TrainingData, train

    many = [random_crystal(np.random.default_rng(10 + s), n_sites=2 + s % 4) for s in range(48)]
    dataset = CrystalDataset("tiny", many, [str(i) for i in range(48)], ["x"] * 48, content_hash="tiny")
    rng = np.random.default_rng(0)
    text = rng.standard_normal((48, 1, 7, 384)).astype(np.float16)  # stand-in features, one per crystal
    views = DatasetViews("tiny", simulate_patterns(many), [["t"]] * 48, text)
    data = TrainingData([dataset], [views], tiny_config)
    config = TrainConfig(model=tiny_config, epochs=8, batch_size=16, lr=5e-3, val=(), text_variants=0, seed=3)
    _, report = train(config, tmp_path / "tiny.pt", data=data, progress=False)
    losses = report["losses"]
    assert len(losses) == 8 and losses[-1] < losses[0] - 0.3
    assert (tmp_path / "tiny.pt").is_file() and not (tmp_path / "tiny.pt.resume.pt").exists()
    # Stopped by the time budget after one epoch, then resumed: the same run as without the stop.
    stopped = config.model_copy(update={"max_minutes": 1e-9})
    _, first = train(stopped, tmp_path / "cut.pt", data=data, progress=False)
    assert first["epochs_run"] == 1 and (tmp_path / "cut.pt.resume.pt").is_file()
    _, resumed = train(config, tmp_path / "cut.pt", data=data, progress=False)
    assert np.allclose(resumed["losses"], losses, rtol=1e-4)
