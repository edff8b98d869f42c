"""Ensemble training: learns, saves self-describing checkpoints, resumes, refuses bad input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from crystaloop.data.datasets import CrystalDataset, load_dataset
from crystaloop.data.errors import CrystaloopError, DatasetError
from crystaloop.surrogates.config import SurrogateConfig
from crystaloop.surrogates.ensemble import CHECKPOINT_FORMAT, PropertyEnsemble
from crystaloop.surrogates.training import train_ensemble

TINY = {"hidden": 8, "layers": 1, "n_gaussians": 8, "batch_size": 16, "lr": 5e-3}


@pytest.fixture(scope="module")
def perov() -> tuple[CrystalDataset, CrystalDataset]:
    return load_dataset("perov_5/train", max_rows=80), load_dataset("perov_5/val", max_rows=40)


@pytest.mark.parametrize("architecture", ["mpnn", "cgcnn"])
def test_training_beats_the_mean_and_round_trips(perov, architecture: str, tmp_path: Path) -> None:
    train, val = perov
    config = SurrogateConfig(architecture=architecture, targets=("heat_ref",), epochs=25, ensemble_size=2, **TINY)
    result = train_ensemble(config, train, val, checkpoint=tmp_path / "model.pt")
    y = val.properties["heat_ref"]
    baseline = np.mean(np.abs(y - train.properties["heat_ref"].mean()))
    assert result.metrics["held_out"]["heat_ref"]["mae"] < baseline
    assert len(result.metrics["held_out"]["heat_ref"]["member_mae"]) == 2

    loaded = PropertyEnsemble.load(tmp_path / "model.pt")
    before = result.ensemble.predict(val.crystals[:5])
    after = loaded.predict(val.crystals[:5])
    np.testing.assert_allclose(after.mean, before.mean, rtol=1e-5)
    np.testing.assert_allclose(after.std, before.std, rtol=1e-5)
    assert after.properties == ("heat_ref",) and after.units == ("eV",)
    assert loaded.metadata["train_data_hash"] == train.content_hash

    state = torch.load(tmp_path / "model.pt", weights_only=True)  # self-describing and pickle-free
    assert state["format"] == CHECKPOINT_FORMAT and state["config"]["architecture"] == architecture


def test_ood_score_is_larger_far_from_training_data(perov) -> None:
    train, val = perov
    carbon = load_dataset("carbon_24/val", max_rows=10)
    config = SurrogateConfig(targets=("heat_ref",), epochs=8, ensemble_size=1, **TINY)
    ensemble = train_ensemble(config, train, val).ensemble
    in_distribution = np.median(ensemble.ood_score(val.crystals[:20]))
    far = np.median(ensemble.ood_score(carbon.crystals))
    assert far > in_distribution


def test_interrupted_training_resumes_to_the_same_result(perov, tmp_path: Path) -> None:
    train, val = perov
    config = SurrogateConfig(targets=("heat_ref",), epochs=6, ensemble_size=2, patience=100, **TINY)
    reference = train_ensemble(config, train, val, checkpoint=tmp_path / "ref.pt").ensemble

    class Interrupt(Exception):
        pass

    def stop_midway(member: int, epoch: int, total: int, mae: float) -> None:
        if member == 1 and epoch == 3:
            raise Interrupt

    with pytest.raises(Interrupt):
        train_ensemble(config, train, val, checkpoint=tmp_path / "run.pt", on_epoch=stop_midway)
    assert (tmp_path / "run.pt.partial").exists() and not (tmp_path / "run.pt").exists()
    resumed_epochs: list[tuple[int, int]] = []
    resumed = train_ensemble(config, train, val, checkpoint=tmp_path / "run.pt", on_epoch=lambda m, e, t, v: resumed_epochs.append((m, e))).ensemble
    assert resumed_epochs[0] == (1, 4)  # member 0 kept, member 1 continued after epoch 3
    assert not (tmp_path / "run.pt.partial").exists()
    crystals = val.crystals[:6]
    np.testing.assert_allclose(resumed.predict(crystals).mean, reference.predict(crystals).mean, rtol=1e-4, atol=1e-5)


def test_bad_targets_and_checkpoints_are_named(perov, tmp_path: Path) -> None:
    train, val = perov
    with pytest.raises(DatasetError, match=r"no column\(s\) \['band_gap'\]; numeric columns: \['dir_gap'"):
        train_ensemble(SurrogateConfig(targets=("band_gap",), epochs=1, **TINY), train, val)
    with pytest.raises(ValueError, match="extra"):
        SurrogateConfig(targets=("heat_ref",), hiden=8)  # type: ignore[call-arg]
    with pytest.raises(CrystaloopError, match="no surrogate checkpoint"):
        PropertyEnsemble.load(tmp_path / "missing.pt")
    torch.save({"format": "something-else"}, tmp_path / "other.pt")
    with pytest.raises(CrystaloopError, match="not a crystaloop surrogate checkpoint"):
        PropertyEnsemble.load(tmp_path / "other.pt")
