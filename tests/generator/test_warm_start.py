"""Warm start: a fine-tune with a new embedding input starts exactly at the teacher's outputs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from crystaloop.data.datasets import load_dataset
from crystaloop.data.errors import CrystaloopError
from crystaloop.generator.config import GeneratorConfig
from crystaloop.generator.diffusion.checkpoint import load_checkpoint, load_model
from crystaloop.generator.diffusion.training import train_generator
from crystaloop.generator.diffusion.warm_start import warm_start_model

NETWORK = {"hidden": 16, "layers": 1, "fourier_frequencies": 2, "time_features": 8}


def _config(epochs: int, **network: object) -> GeneratorConfig:
    return GeneratorConfig.model_validate({
        "network": {**NETWORK, "properties": ["heat_ref", "dir_gap"], **network},
        "diffusion": {"timesteps": 20},
        "train": {"epochs": epochs, "batch_size": 16, "checkpoint_every": 1, "ema_decay": 0.5, "learning_rate": 3e-3},
        "max_atoms": 8,
    })


@pytest.fixture(scope="module")
def data():
    return load_dataset("perov_5/train", max_rows=32)


@pytest.fixture(scope="module")
def teacher(data, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("teacher") / "teacher.pt"
    train_generator(_config(2), data.crystals, data.properties, out)
    return out


def _noisy(model, crystals, properties, embeddings) -> object:
    batch = model.clean_batch(crystals, properties, embeddings)
    generator = torch.Generator().manual_seed(3)
    return batch.replace(t=torch.randint(1, 20, (len(crystals),), generator=generator),
                         frac=torch.remainder(batch.frac + 0.05 * torch.randn(batch.frac.shape, generator=generator), 1.0))


def test_a_warm_started_model_with_a_new_embedding_input_starts_at_the_teachers_outputs(data, teacher: Path) -> None:
    reference, _ = load_model(teacher)
    student = warm_start_model(_config(1, properties=["dir_gap"], embedding_dim=5), teacher, data.crystals).eval()
    crystals = data.crystals[:6]
    gaps = np.asarray(data.properties["dir_gap"][:6], dtype=np.float64)
    both = np.stack([np.full(6, np.nan), gaps], axis=1)  # the teacher given dir_gap only
    vectors = np.random.default_rng(1).normal(size=(6, 5))
    with torch.no_grad():
        expected = reference.denoiser(_noisy(reference, crystals, both, None))
        got = student.denoiser(_noisy(student, crystals, gaps[:, None], vectors))
        unconditional = student.denoiser(_noisy(student, crystals, None, None))
        teacher_unconditional = reference.denoiser(_noisy(reference, crystals, None, None))
    for name in ("lattice_noise", "coord_score", "species_logits"):
        torch.testing.assert_close(getattr(got, name), getattr(expected, name))
        torch.testing.assert_close(getattr(unconditional, name), getattr(teacher_unconditional, name))
    for key, value in reference.normalisation.state_dict().items():
        if not key.startswith("property"):
            torch.testing.assert_close(student.normalisation.state_dict()[key], value)
    assert student.normalisation.property_mean.tolist() == [reference.normalisation.property_mean.tolist()[1]]
    # the zero last layer still receives a gradient: training can move it
    student.train()
    batch = _noisy(student, crystals, gaps[:, None], vectors)
    student.denoiser(batch).coord_score.square().sum().backward()
    assert student.denoiser.embedding_mlp[-1].weight.grad.abs().sum() > 0


def test_training_from_a_teacher_records_it_and_resume_ignores_init(data, teacher: Path, tmp_path: Path) -> None:
    config = _config(1, properties=[], embedding_dim=3)
    vectors = np.random.default_rng(0).normal(size=(len(data), 3))
    out = tmp_path / "fine.pt"
    metrics = train_generator(config, data.crystals, data.properties, out, embeddings=vectors, init_from=teacher)
    assert metrics["init_from"]["path"] == str(teacher) and len(metrics["init_from"]["sha256_16"]) == 16
    payload = load_checkpoint(out)
    assert torch.equal(payload["normalisation"]["volume_per_atom"], load_checkpoint(teacher)["normalisation"]["volume_per_atom"])
    # resuming to 2 epochs does not read --init again (a missing teacher file is no problem)
    longer = config.model_copy(update={"train": config.train.model_copy(update={"epochs": 2})})
    resumed = train_generator(longer, data.crystals, data.properties, out, embeddings=vectors,
                              init_from=tmp_path / "gone.pt")
    assert resumed["epochs"] == 2 and resumed["init_from"] == metrics["init_from"]


def test_warm_start_refuses_another_vocabulary_other_sizes_and_new_properties(data, teacher: Path) -> None:
    rare = int(data.crystals[0].numbers[0])
    fewer = [c for c in data.crystals if rare not in c.numbers]  # the same data without one element
    with pytest.raises(CrystaloopError, match="species vocabulary differs"):
        warm_start_model(_config(1, embedding_dim=3), teacher, fewer)
    with pytest.raises(CrystaloopError, match=r"network.hidden \(teacher 16, here 8\)"):
        warm_start_model(_config(1, hidden=8), teacher, data.crystals)
    with pytest.raises(CrystaloopError, match=r"properties \['band_gap'\] are new"):
        warm_start_model(_config(1, properties=["band_gap"]), teacher, data.crystals)
