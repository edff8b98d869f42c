"""Property networks are invariant to how a crystal is written, and intensive on supercells."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from crystaloop.data import testing
from crystaloop.data.crystal import Crystal
from crystaloop.data.datasets import load_dataset
from crystaloop.data.graphs import GraphConfig, crystals_to_batch
from crystaloop.surrogates.models import build_model

GRAPH = GraphConfig(cutoff=4.0, max_neighbors=12)


def _predictor(architecture: str):
    torch.manual_seed(0)
    model = build_model(architecture, n_targets=2, hidden=8, layers=2, n_gaussians=8, cutoff=GRAPH.cutoff).double().eval()

    def predict(crystal: Crystal) -> np.ndarray:
        with torch.no_grad():
            mean, log_var, embedding = model(crystals_to_batch([crystal], GRAPH, dtype=torch.float64))
        return torch.cat([mean, log_var, embedding], dim=-1)[0]

    return predict


@pytest.fixture(scope="module")
def crystals() -> list[Crystal]:
    rng = np.random.default_rng(4)
    randoms = [testing.random_crystal(rng, n_sites=n) for n in (3, 5, 8)]
    real = load_dataset("perov_5/val", max_rows=2).crystals + load_dataset("carbon_24/val", max_rows=2).crystals
    return randoms + real


@pytest.mark.parametrize("architecture", ["mpnn", "cgcnn"])
def test_outputs_are_invariant(architecture: str, crystals: list[Crystal]) -> None:
    predict = _predictor(architecture)
    rng = np.random.default_rng(1)
    for crystal in crystals:
        testing.assert_invariant(predict, crystal, rng=rng)


@pytest.mark.parametrize("architecture", ["mpnn", "cgcnn"])
def test_predictions_are_intensive_on_supercells(architecture: str, crystals: list[Crystal]) -> None:
    predict = _predictor(architecture)
    for crystal in crystals[3:5]:  # real perovskites: symmetric shells exercise neighbour ties
        testing.assert_supercell(predict, crystal, (2, 1, 1), kind="intensive")
        testing.assert_supercell(predict, crystal, (1, 2, 2), kind="intensive")


def test_float32_batch_matches_single_crystals(crystals: list[Crystal]) -> None:
    torch.manual_seed(0)
    model = build_model("mpnn", n_targets=1, hidden=8, layers=2, n_gaussians=8, cutoff=GRAPH.cutoff).eval()
    with torch.no_grad():
        batched = model(crystals_to_batch(crystals, GRAPH))[0]
        single = torch.cat([model(crystals_to_batch([c], GRAPH))[0] for c in crystals])
    torch.testing.assert_close(batched, single, atol=testing.FLOAT32_TOLERANCE.atol, rtol=testing.FLOAT32_TOLERANCE.rtol)


def test_unknown_architecture_lists_choices() -> None:
    with pytest.raises(KeyError, match="allowed: cgcnn, mpnn"):
        build_model("schnet", n_targets=1)
