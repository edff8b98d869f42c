"""Training: the loss goes down, checkpoints describe themselves, resume equals an uninterrupted run."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from crystaloop.data.datasets import load_dataset
from crystaloop.data.errors import CrystaloopError
from crystaloop.generator.config import GeneratorConfig
from crystaloop.generator.diffusion.checkpoint import FORMAT, load_checkpoint, load_model
from crystaloop.generator.diffusion.training import strip_for_shipping, train_generator


def _config(epochs: int) -> GeneratorConfig:
    return GeneratorConfig.model_validate({
        "network": {"hidden": 16, "layers": 1, "fourier_frequencies": 2, "time_features": 8, "properties": ["heat_ref"]},
        "diffusion": {"timesteps": 20},
        "train": {"epochs": epochs, "batch_size": 16, "checkpoint_every": 1, "ema_decay": 0.5, "learning_rate": 3e-3},
        "max_atoms": 8,
    })


@pytest.fixture(scope="module")
def data():
    return load_dataset("perov_5/train", max_rows=32), load_dataset("perov_5/val", max_rows=16)


def test_training_lowers_the_held_out_loss_and_writes_a_self_describing_checkpoint(data, tmp_path: Path) -> None:
    train, val = data
    out = tmp_path / "gen.pt"
    metrics = train_generator(_config(8), train.crystals, train.properties, out, validation=val.crystals,
                              validation_properties=val.properties)
    history = metrics["history"]
    assert len(history) == 8 and history[-1]["val_loss"] < history[0]["val_loss"]
    payload = load_checkpoint(out)
    assert payload["format"] == FORMAT and payload["data_hash"] and payload["config"]["network"]["properties"] == ["heat_ref"]
    assert set(payload["normalisation"]) >= {"species", "volume_per_atom", "property_mean", "atom_count_probs"}
    shipped = tmp_path / "shipped.pt"
    strip_for_shipping(out, shipped)
    assert "training" not in load_checkpoint(shipped) and shipped.stat().st_size < out.stat().st_size
    model, _ = load_model(shipped)
    assert not model.training


def test_resume_after_interruption_equals_an_uninterrupted_run(data, tmp_path: Path) -> None:
    train, _ = data
    straight, resumed = tmp_path / "straight.pt", tmp_path / "resumed.pt"
    train_generator(_config(4), train.crystals, train.properties, straight)
    train_generator(_config(2), train.crystals, train.properties, resumed)  # "interrupted" after 2 epochs
    train_generator(_config(4), train.crystals, train.properties, resumed)  # picks up at epoch 2
    a, b = load_checkpoint(straight), load_checkpoint(resumed)
    assert b["metrics"]["epochs"] == 4
    for name, value in a["weights"].items():
        torch.testing.assert_close(b["weights"][name], value, rtol=0, atol=1e-6)


def test_resume_refuses_another_configuration(data, tmp_path: Path) -> None:
    train, _ = data
    out = tmp_path / "gen.pt"
    train_generator(_config(1), train.crystals, train.properties, out)
    other = _config(2).model_copy(update={"network": _config(2).network.model_copy(update={"hidden": 8})})
    with pytest.raises(CrystaloopError, match="another config or dataset"):
        train_generator(other, train.crystals, train.properties, out)


def test_missing_or_foreign_checkpoints_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(CrystaloopError, match="does not exist"):
        load_checkpoint(tmp_path / "nope.pt")
    foreign = tmp_path / "foreign.pt"
    torch.save({"format": "something/else"}, foreign)
    with pytest.raises(CrystaloopError, match="expected 'crystaloop.generator/1'"):
        load_checkpoint(foreign)
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(CrystaloopError, match="not a readable generator checkpoint"):
        load_checkpoint(garbage)


def test_crystals_larger_than_max_atoms_are_rejected(data, tmp_path: Path) -> None:
    train, _ = data
    config = _config(1).model_copy(update={"max_atoms": 4})
    with pytest.raises(CrystaloopError, match="exceed max_atoms=4"):
        train_generator(config, train.crystals, train.properties, tmp_path / "x.pt")


def test_embedding_conditioned_training_uses_the_vectors_and_checks_their_shape(data, tmp_path: Path) -> None:
    import numpy as np

    from crystaloop.generator.diffusion.checkpoint import load_model
    from crystaloop.generator.diffusion.denoiser import NoisyBatch  # noqa: F401 - documents the batch type

    train, _ = data
    config = _config(2).model_copy(update={"network": _config(2).network.model_copy(update={"embedding_dim": 3})})
    vectors = np.random.default_rng(0).normal(size=(len(train.crystals), 3))
    out = tmp_path / "emb.pt"
    train_generator(config, train.crystals, train.properties, out, embeddings=vectors)
    model, _ = load_model(out)
    batch = model.clean_batch(train.crystals[:4], None, vectors[:4])
    assert bool(batch.embedding_present.all())
    with torch.no_grad():
        with_vectors = model.denoiser(batch.replace(t=torch.full((4,), 10)))
        without = model.denoiser(batch.replace(t=torch.full((4,), 10)).without_conditions())
    assert not torch.allclose(with_vectors.coord_score, without.coord_score)
    with pytest.raises(CrystaloopError, match=r"expected \(32, 3\)"):
        train_generator(config, train.crystals, train.properties, tmp_path / "bad.pt", embeddings=vectors[:5])
