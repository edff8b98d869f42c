"""Property networks are invariant to how a crystal is written, and intensive on supercells."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from crystaloop.data import testing
from crystaloop.data.crystal import Crystal
from crystaloop.data.datasets import load_dataset
from crystaloop.data.graphs import GraphConfig, crystals_to_batch
from crystaloop.surrogates.models import build_model, real_spherical_harmonics

GRAPH = GraphConfig(cutoff=4.0, max_neighbors=12)
# (architecture, extra constructor arguments): the distance-only and the angular mpnn, and cgcnn
VARIANTS = {"mpnn": ("mpnn", {}), "mpnn-angular": ("mpnn", {"angular_degree": 3, "angular_channels": 4}), "cgcnn": ("cgcnn", {})}


def _predictor(variant: str):
    architecture, extra = VARIANTS[variant]
    torch.manual_seed(0)
    model = build_model(architecture, n_targets=2, hidden=8, layers=2, n_gaussians=8, cutoff=GRAPH.cutoff, **extra).double().eval()

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


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_outputs_are_invariant(variant: str, crystals: list[Crystal]) -> None:
    predict = _predictor(variant)
    rng = np.random.default_rng(1)
    for crystal in crystals:
        testing.assert_invariant(predict, crystal, rng=rng)


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_predictions_are_intensive_on_supercells(variant: str, crystals: list[Crystal]) -> None:
    predict = _predictor(variant)
    for crystal in crystals[3:5]:  # real perovskites: symmetric shells exercise neighbour ties
        testing.assert_supercell(predict, crystal, (2, 1, 1), kind="intensive")
        testing.assert_supercell(predict, crystal, (1, 2, 2), kind="intensive")


@pytest.mark.parametrize("angular_degree", [0, 3])
def test_float32_batch_matches_single_crystals(crystals: list[Crystal], angular_degree: int) -> None:
    torch.manual_seed(0)
    model = build_model("mpnn", n_targets=1, hidden=8, layers=2, n_gaussians=8, cutoff=GRAPH.cutoff, angular_degree=angular_degree).eval()
    with torch.no_grad():
        batched = model(crystals_to_batch(crystals, GRAPH))[0]
        single = torch.cat([model(crystals_to_batch([c], GRAPH))[0] for c in crystals])
    torch.testing.assert_close(batched, single, atol=testing.FLOAT32_TOLERANCE.atol, rtol=testing.FLOAT32_TOLERANCE.rtol)


def test_unknown_architecture_lists_choices() -> None:
    with pytest.raises(KeyError, match="allowed: cgcnn, mpnn"):
        build_model("schnet", n_targets=1)


def test_spherical_harmonics_contract_to_legendre_polynomials() -> None:
    """Σ_m Y_lm(u)·Y_lm(v) = P_l(u·v) for every degree: what makes the angular features invariant."""
    rng = np.random.default_rng(7)
    u, v = (torch.nn.functional.normalize(torch.from_numpy(rng.normal(size=(64, 3))), dim=-1) for _ in range(2))
    cosine = (u * v).sum(-1)
    legendre = [torch.ones_like(cosine), cosine, 0.5 * (3 * cosine**2 - 1), 0.5 * (5 * cosine**3 - 3 * cosine)]
    yu, yv = real_spherical_harmonics(u, 3), real_spherical_harmonics(v, 3)
    assert yu.shape == (64, 16)
    for degree in range(4):
        columns = slice(degree**2, (degree + 1) ** 2)
        torch.testing.assert_close((yu[:, columns] * yv[:, columns]).sum(-1), legendre[degree])
    with pytest.raises(ValueError, match="0..3, got 4"):
        real_spherical_harmonics(u, 4)


def test_angular_features_see_what_distances_cannot(crystals: list[Crystal]) -> None:
    """Two neighbour arrangements with equal bond lengths but different angles get different outputs."""
    lattice = np.eye(3) * 10.0
    straight = Crystal(lattice, np.array([[0.5, 0.5, 0.5], [0.65, 0.5, 0.5], [0.35, 0.5, 0.5]]), [8, 1, 1])
    bent = Crystal(lattice, np.array([[0.5, 0.5, 0.5], [0.65, 0.5, 0.5], [0.5, 0.65, 0.5]]), [8, 1, 1])
    graph = GraphConfig(cutoff=1.6)  # only the two O–H bonds (1.5 Å): H–H (3.0 / 2.1 Å) is out of the graph
    outputs = {}
    for degree in (0, 3):
        torch.manual_seed(0)
        model = build_model("mpnn", n_targets=1, hidden=8, layers=2, n_gaussians=8, cutoff=4.0, angular_degree=degree, angular_channels=4).double().eval()
        with torch.no_grad():
            outputs[degree] = [model(crystals_to_batch([c], graph, dtype=torch.float64))[2] for c in (straight, bent)]
    torch.testing.assert_close(outputs[0][0], outputs[0][1])  # distance-only: blind to the angle
    assert (outputs[3][0] - outputs[3][1]).abs().max() > 1e-3
