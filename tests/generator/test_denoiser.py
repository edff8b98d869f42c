"""The denoiser's outputs transform as they must (float64, shipped invariance helpers).

* species logits: per-site invariant under rotation, translation, permutation, basis change;
* coordinate score: a fractional covector; its Cartesian form ``s L⁻ᵀ`` rotates with the frame
  and is unchanged by translation and basis change;
* lattice noise ``ε̂`` on the symmetric lattice S: invariant to rotation, translation and
  permutation; under a basis change (canonical frame) the implied clean lattice is the same
  lattice in the new basis, metric ``M G Mᵀ``.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from crystaloop.data.crystal import Crystal
from crystaloop.data.testing import (
    apply_basis_change,
    assert_equivariant_sites,
    assert_invariant,
    random_crystal,
    random_unimodular,
)
from crystaloop.generator.diffusion.denoiser import CanonicalFrame, NoisyBatch, pair_index
from crystaloop.generator.diffusion.model import CrystalDiffusion
from crystaloop.generator.testing import TINY_ELEMENTS, network_view, tiny_model

ELEMENTS = TINY_ELEMENTS


def noisy_batch(model: CrystalDiffusion, crystal: Crystal) -> NoisyBatch:
    return network_view(model, crystal)


@pytest.fixture(scope="module")
def model() -> CrystalDiffusion:
    return tiny_model()


def _outputs(net, model: CrystalDiffusion, crystal: Crystal):
    with torch.no_grad():
        return net(noisy_batch(model, crystal))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_species_logits_follow_sites_and_ignore_frame_origin_and_basis(model: CrystalDiffusion, seed: int) -> None:
    rng = np.random.default_rng(seed)
    crystal = random_crystal(rng, n_sites=5, elements=ELEMENTS)
    wrapped = CanonicalFrame(model.denoiser, model.schedule.alpha_bar)
    assert_equivariant_sites(lambda c: _outputs(model.denoiser, model, c).species_logits.numpy(), crystal, rng=rng,
                             transforms=("rotation", "translation", "permutation"))
    assert_equivariant_sites(lambda c: _outputs(wrapped, model, c).species_logits.numpy(), crystal, rng=rng)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_permutation_moves_every_output_with_its_site(model: CrystalDiffusion, seed: int) -> None:
    rng = np.random.default_rng(seed)
    crystal = random_crystal(rng, n_sites=6, elements=ELEMENTS)
    base = noisy_batch(model, crystal)
    permutation = rng.permutation(crystal.n_sites)
    permuted = base.replace(frac=base.frac[permutation], tokens=base.tokens[permutation])
    with torch.no_grad():
        a, b = model.denoiser(base), model.denoiser(permuted)
    torch.testing.assert_close(b.coord_score, a.coord_score[permutation], atol=1e-10, rtol=1e-10)
    torch.testing.assert_close(b.species_logits, a.species_logits[permutation], atol=1e-10, rtol=1e-10)
    torch.testing.assert_close(b.lattice_noise, a.lattice_noise, atol=1e-10, rtol=1e-10)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_cartesian_coordinate_score_is_equivariant_under_all_transforms(model: CrystalDiffusion, seed: int) -> None:
    rng = np.random.default_rng(seed)
    crystal = random_crystal(rng, n_sites=5, elements=ELEMENTS)
    wrapped = CanonicalFrame(model.denoiser, model.schedule.alpha_bar)

    def cartesian_score(c: Crystal) -> np.ndarray:
        score = _outputs(wrapped, model, c).coord_score.numpy()  # ∂/∂f, covector
        return score @ np.linalg.inv(c.lattice / 5.0).T  # ∂/∂x = s L⁻ᵀ (L in the crystal's own frame)

    assert_equivariant_sites(cartesian_score, crystal, rng=rng, vector=True)
    # the raw network (no canonical frame) is invariant in fractional form under rotation and translation
    assert_equivariant_sites(lambda c: _outputs(model.denoiser, model, c).coord_score.numpy(), crystal, rng=rng,
                             transforms=("rotation", "translation"))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_lattice_noise_is_rotation_invariant_and_its_clean_estimate_follows_a_basis_change(model: CrystalDiffusion, seed: int) -> None:
    rng = np.random.default_rng(seed)
    crystal = random_crystal(rng, n_sites=5, elements=ELEMENTS)
    wrapped = CanonicalFrame(model.denoiser, model.schedule.alpha_bar)
    # the symmetric lattice carries no orientation: the raw network's noise estimate is invariant
    assert_invariant(lambda c: _outputs(model.denoiser, model, c).lattice_noise[0].numpy(), crystal, rng=rng,
                     transforms=("rotation", "translation", "permutation"))
    assert_invariant(lambda c: _outputs(wrapped, model, c).lattice_noise[0].numpy(), crystal, rng=rng,
                     transforms=("rotation", "translation", "permutation"))

    def clean_metric(c: Crystal) -> np.ndarray:
        batch = noisy_batch(model, c)
        ab = model.schedule.alpha_bar[batch.t].double().view(-1, 1, 1)
        with torch.no_grad():
            eps = wrapped(batch).lattice_noise
        clean = ((batch.lattice - (1 - ab).sqrt() * eps) / ab.sqrt())[0].numpy()
        return clean @ clean.T

    m = random_unimodular(rng)
    np.testing.assert_allclose(clean_metric(apply_basis_change(crystal, m)), m @ clean_metric(crystal) @ m.T, atol=1e-9)


def test_float32_model_meets_the_float32_tolerance() -> None:
    rng = np.random.default_rng(5)
    crystal = random_crystal(rng, n_sites=4, elements=ELEMENTS)
    model = tiny_model(dtype=torch.float32)

    def logits(c: Crystal) -> np.ndarray:
        batch = noisy_batch(model, c)
        with torch.no_grad():
            return model.denoiser(batch).species_logits.double().numpy()

    assert_equivariant_sites(logits, crystal, rng=rng, transforms=("rotation", "translation"), precision="float32")


def test_pair_index_lists_every_ordered_pair_within_each_crystal() -> None:
    src, dst = pair_index(torch.tensor([2, 3]))
    pairs = set(zip(src.tolist(), dst.tolist(), strict=True))
    expected = {(i, j) for i in range(2) for j in range(2)} | {(i, j) for i in range(2, 5) for j in range(2, 5)}
    assert pairs == expected and len(src) == 13


def test_guidance_scale_one_is_the_conditional_output_and_zero_the_unconditional(model: CrystalDiffusion) -> None:
    crystal = random_crystal(np.random.default_rng(3), n_sites=4, elements=ELEMENTS)
    batch = noisy_batch(model, crystal)
    with torch.no_grad():
        cond, uncond = model.denoiser(batch), model.denoiser(batch.without_conditions())
    assert not torch.allclose(cond.coord_score, uncond.coord_score)  # the condition reaches the output
    torch.testing.assert_close(cond.guided(uncond, 1.0).coord_score, cond.coord_score)
    torch.testing.assert_close(cond.guided(uncond, 0.0).lattice_noise, uncond.lattice_noise)
