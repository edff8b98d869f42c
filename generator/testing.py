"""Helpers for tests of the generator and of the layers above (shipped, like data/testing.py).

``tiny_model()`` builds an untrained width-8 model over five species (Li, C, O, Si, Ti),
conditioned on ``band_gap`` and a 4-dimensional embedding; ``network_view(model, crystal)``
presents a crystal to the denoiser in its own basis and frame (no canonicalisation), with its
oxygen sites masked and a condition set, for invariance checks.
"""

from __future__ import annotations

import numpy as np
import torch

from crystaloop.data.crystal import Crystal
from crystaloop.generator.config import GeneratorConfig
from crystaloop.generator.diffusion.denoiser import NoisyBatch
from crystaloop.generator.diffusion.model import CrystalDiffusion, Normalisation, symmetric_lattice

__all__ = ["TINY_SPECIES", "TINY_ELEMENTS", "tiny_model", "network_view"]

TINY_ELEMENTS = ("Li", "C", "O", "Si", "Ti")
TINY_SPECIES = (3, 6, 8, 14, 22)


def tiny_model(seed: int = 0, dtype: torch.dtype = torch.float64, timesteps: int = 50) -> CrystalDiffusion:
    """An untrained width-8, two-layer model in eval mode (all cells have 7 sites by default)."""
    torch.manual_seed(seed)
    config = GeneratorConfig.model_validate({
        "network": {"hidden": 8, "layers": 2, "fourier_frequencies": 3, "time_features": 8,
                    "properties": ["band_gap"], "embedding_dim": 4},
        "diffusion": {"timesteps": timesteps},
    })
    norm = Normalisation(TINY_SPECIES, 12.0, [1.0], [0.5], [0.0] * 7 + [1.0])
    return CrystalDiffusion(config, norm).to(dtype).eval()


def network_view(model: CrystalDiffusion, crystal: Crystal, t: int = 17, length_scale: float = 5.0) -> NoisyBatch:
    """The crystal as the denoiser sees it at step ``t``: its own basis (made right-handed, so the
    symmetric lattice S / ``length_scale`` is a proper rotation of it, not a mirror image)."""
    dtype = next(model.parameters()).dtype
    lattice, frac = crystal.lattice, crystal.frac_coords
    if np.linalg.det(lattice) < 0:  # a left-handed basis: same crystal as (−L, −F), right-handed
        lattice, frac = -lattice, np.remainder(-frac, 1.0)
    tokens = model.normalisation.tokens(crystal.numbers)
    tokens[torch.as_tensor(crystal.numbers == 8)] = model.mask_token
    cond = model.condition_tensors(1, np.array([[2.0]]), np.array([[0.1, -0.2, 0.3, 0.0]]))
    return NoisyBatch(
        lattice=torch.as_tensor(symmetric_lattice(lattice)[None] / length_scale, dtype=dtype),
        frac=torch.tensor(frac, dtype=dtype), tokens=tokens,
        batch=torch.zeros(crystal.n_sites, dtype=torch.long), num_atoms=torch.tensor([crystal.n_sites]),
        t=torch.tensor([t]), **{k: v.to(dtype) if v.is_floating_point() else v for k, v in cond.items()},
    )
