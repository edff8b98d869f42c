"""The periodic denoiser: message passing over all site pairs of a cell.

Inputs are a batch of noisy crystals (normalised lattice rows ``L`` (B, 3, 3), fractional
coordinates ``F`` (N, 3), species tokens (N,), the step ``t`` (B,)) and optional conditions.
What makes the outputs transform as they should:

* **Rotation** of the Cartesian frame (``L → L Rᵀ``): the lattice is represented and diffused
  as its symmetric polar factor ``S = (L Lᵀ)^{1/2}``, which carries no orientation (every
  rotated copy maps to the same S); the network reads S and its metric S Sᵀ, so every output is
  invariant: coordinate scores are fractional, the lattice noise estimate is a symmetric matrix.
* **Site permutation**: messages are summed over pairs and pooled by mean; outputs per site follow
  their site.
* **Fractional translation** (``F → F + c mod 1``): pair features are Fourier features
  ``sin/cos(2π k (f_j − f_i))`` of coordinate differences, unchanged by a common shift and by
  wrapping (integer k).
* **Lattice basis change** (``L → M L``, ``F → F M⁻¹`` for unimodular M): fractional features
  depend on the basis, so :class:`CanonicalFrame` evaluates the network in the canonical
  reduced basis of :mod:`crystaloop.data.canonical` and maps the outputs back (the clean-lattice
  estimate is the same lattice in the new basis, metric ``M G Mᵀ``; the coordinate score is a
  covector, ``s → s Mᵀ``). Training data are stored in that basis.

The architecture follows the CSPNet design of DiffCSP (Jiao et al., NeurIPS 2023): fully
connected pairs inside the cell, lattice metric and periodic Fourier features on every edge.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from crystaloop.data.canonical import canonical_bases
from crystaloop.generator.config import NetworkConfig

__all__ = ["NoisyBatch", "DenoiserOutput", "CrystalDenoiser", "CanonicalFrame", "pair_index", "symmetric_polar"]


@dataclass
class NoisyBatch:
    """A batch of (noisy) crystals in the model's representation.

    Attributes:
        lattice: (B, 3, 3) lattice rows, normalised (divided by (v̄ N)^{1/3}, dimensionless).
        frac: (N, 3) fractional coordinates in [0, 1).
        tokens: (N,) species token ids; ``mask_token`` marks a masked site.
        batch: (N,) crystal index of each site.
        num_atoms: (B,) sites per crystal.
        t: (B,) diffusion step per crystal (0 = clean, T = noise).
        properties: (B, P) normalised property targets (0 where absent).
        property_present: (B, P) bool, which targets are given.
        embedding: (B, E) external conditioning vectors (zeros where absent).
        embedding_present: (B,) bool.
    """

    lattice: torch.Tensor
    frac: torch.Tensor
    tokens: torch.Tensor
    batch: torch.Tensor
    num_atoms: torch.Tensor
    t: torch.Tensor
    properties: torch.Tensor
    property_present: torch.Tensor
    embedding: torch.Tensor
    embedding_present: torch.Tensor

    def replace(self, **changes: torch.Tensor) -> NoisyBatch:
        fields = {name: getattr(self, name) for name in self.__dataclass_fields__}
        fields.update(changes)
        return NoisyBatch(**fields)

    def without_conditions(self) -> NoisyBatch:
        """The same batch with every condition switched off (the unconditional branch of CFG)."""
        return self.replace(
            property_present=torch.zeros_like(self.property_present),
            embedding_present=torch.zeros_like(self.embedding_present),
        )


@dataclass
class DenoiserOutput:
    """Network outputs.

    Attributes:
        lattice_noise: (B, 3, 3) symmetric estimate of the lattice noise ε.
        coord_score: (N, 3) normalised score of the wrapped normal on fractional coordinates.
        species_logits: (N, K) logits over the K real species (no mask class).
    """

    lattice_noise: torch.Tensor
    coord_score: torch.Tensor
    species_logits: torch.Tensor

    def guided(self, unconditional: DenoiserOutput, scale: float) -> DenoiserOutput:
        """Classifier-free guidance: ``u + w (c − u)`` on every output (w = 1: conditional)."""

        def mix(c: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
            return u + scale * (c - u)

        return DenoiserOutput(
            mix(self.lattice_noise, unconditional.lattice_noise),
            mix(self.coord_score, unconditional.coord_score),
            mix(self.species_logits, unconditional.species_logits),
        )


def pair_index(num_atoms: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """All ordered site pairs (i, j) within each crystal, self pairs included.

    Args: num_atoms (B,). Returns (src, dst), each (Σ n_b²,), global site indices.
    """
    offsets = torch.cumsum(num_atoms, 0) - num_atoms
    sizes = num_atoms * num_atoms
    crystal = torch.repeat_interleave(torch.arange(len(num_atoms), device=num_atoms.device), sizes)
    local = torch.arange(int(sizes.sum()), device=num_atoms.device) - torch.repeat_interleave(torch.cumsum(sizes, 0) - sizes, sizes)
    n = num_atoms[crystal]
    src = offsets[crystal] + local // n
    dst = offsets[crystal] + local % n
    return src, dst


def _symmetric_from_six(six: torch.Tensor) -> torch.Tensor:
    """(B, 6) as (S11, S22, S33, S23, S13, S12) → (B, 3, 3) symmetric."""
    rows = [
        torch.stack([six[:, 0], six[:, 5], six[:, 4]], -1),
        torch.stack([six[:, 5], six[:, 1], six[:, 3]], -1),
        torch.stack([six[:, 4], six[:, 3], six[:, 2]], -1),
    ]
    return torch.stack(rows, 1)


def symmetric_polar(lattice: torch.Tensor) -> torch.Tensor:
    """(B, 3, 3) row lattices → their symmetric polar factors (L Lᵀ)^{1/2}."""
    values, vectors = torch.linalg.eigh(lattice @ lattice.transpose(1, 2))
    return (vectors * values.clamp(min=0).sqrt().unsqueeze(1)) @ vectors.transpose(1, 2)


def _mlp(inputs: int, hidden: int, outputs: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(inputs, hidden), nn.SiLU(), nn.Linear(hidden, outputs))


def _time_features(t: torch.Tensor, timesteps: int, width: int, dtype: torch.dtype) -> torch.Tensor:
    """Sinusoidal features of t / T, shape (B, width)."""
    half = width // 2
    freqs = torch.exp(-math.log(1000.0) * torch.arange(half, device=t.device, dtype=dtype) / max(half - 1, 1))
    angle = (t.to(dtype) / timesteps).unsqueeze(-1) * freqs * 1000.0
    return torch.cat([torch.sin(angle), torch.cos(angle)], dim=-1)


class _Layer(nn.Module):
    def __init__(self, hidden: int, edge_features: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(hidden)
        self.message = nn.Sequential(nn.Linear(2 * hidden + edge_features, hidden), nn.SiLU(), nn.Linear(hidden, hidden), nn.SiLU())
        self.update = _mlp(2 * hidden, hidden, hidden)

    def forward(self, h: torch.Tensor, src: torch.Tensor, dst: torch.Tensor, edge: torch.Tensor, degree: torch.Tensor) -> torch.Tensor:
        x = self.norm(h)
        messages = self.message(torch.cat([x[dst], x[src], edge], dim=-1))
        aggregated = torch.zeros_like(x).index_add_(0, dst, messages) / degree
        return h + self.update(torch.cat([x, aggregated], dim=-1))


class CrystalDenoiser(nn.Module):
    """Predicts lattice noise, coordinate score and clean species from a noisy crystal batch.

    Args:
        config: network sizes and conditioning inputs.
        num_species: K, the real species in the vocabulary (token K is the mask).
        timesteps: T of the diffusion (scales the time features).
    """

    def __init__(self, config: NetworkConfig, num_species: int, timesteps: int) -> None:
        super().__init__()
        self.config = config
        self.num_species = num_species
        self.timesteps = timesteps
        h = config.hidden
        self.species_embedding = nn.Embedding(num_species + 1, h)
        self.time_mlp = _mlp(config.time_features, h, h)
        n_props = len(config.properties)
        self.property_value = nn.Linear(max(n_props, 1), h)
        self.property_flag = nn.Linear(max(n_props, 1), h)
        self.embedding_mlp = _mlp(config.embedding_dim, h, h) if config.embedding_dim else None
        edge_features = 12 + 6 * config.fourier_frequencies
        self.layers = nn.ModuleList(_Layer(h, edge_features) for _ in range(config.layers))
        self.final_norm = nn.LayerNorm(h)
        self.coord_head = nn.Linear(h, 3, bias=False)
        self.species_head = _mlp(h, h, num_species)
        self.lattice_head = _mlp(h + 12, h, 6)  # pooled sites + the lattice itself (direct path)
        frequencies = torch.arange(1, config.fourier_frequencies + 1, dtype=torch.float32)
        self.register_buffer("frequencies", frequencies, persistent=False)

    def _condition(self, x: NoisyBatch) -> torch.Tensor:
        dtype = x.lattice.dtype
        present = x.property_present.to(dtype)
        if present.shape[1] == 0:
            present = torch.zeros(len(x.num_atoms), 1, device=x.lattice.device, dtype=dtype)
            values = present
        else:
            values = x.properties * present
        cond = self.property_value(values) + self.property_flag(present)
        if self.embedding_mlp is not None:
            cond = cond + self.embedding_mlp(x.embedding) * x.embedding_present.to(dtype).unsqueeze(-1)
        return cond

    def forward(self, x: NoisyBatch) -> DenoiserOutput:
        lattice = x.lattice
        src, dst = pair_index(x.num_atoms)
        # the state is the symmetric lattice S (rotation-free); its entries keep the signs of a
        # noisy, possibly indefinite S that the metric S Sᵀ would lose; the metric gives geometry
        rows, cols = [0, 1, 2, 1, 0, 0], [0, 1, 2, 2, 2, 1]
        metric = lattice @ lattice.transpose(1, 2)
        metric6 = torch.cat([lattice[:, rows, cols], metric[:, rows, cols]], dim=-1)  # (B, 12)
        diff = x.frac[src] - x.frac[dst]  # (E, 3)
        angle = 2 * math.pi * diff.unsqueeze(-1) * self.frequencies  # (E, 3, K)
        fourier = torch.cat([torch.sin(angle), torch.cos(angle)], dim=-1).flatten(1)
        edge = torch.cat([metric6[x.batch[dst]], fourier], dim=-1)
        per_crystal = self.time_mlp(_time_features(x.t, self.timesteps, self.config.time_features, lattice.dtype)) + self._condition(x)
        h = self.species_embedding(x.tokens) + per_crystal[x.batch]
        degree = x.num_atoms[x.batch].unsqueeze(-1).to(h.dtype)
        for layer in self.layers:
            h = layer(h, src, dst, edge, degree)
        h = self.final_norm(h)
        pooled = torch.zeros(len(x.num_atoms), h.shape[1], device=h.device, dtype=h.dtype).index_add_(0, x.batch, h)
        pooled = pooled / x.num_atoms.unsqueeze(-1).to(h.dtype)
        six = self.lattice_head(torch.cat([pooled, metric6], dim=-1))  # (B, 6): S11 S22 S33 S23 S13 S12 of the symmetric noise
        noise = _symmetric_from_six(six)
        return DenoiserOutput(
            lattice_noise=noise,
            coord_score=self.coord_head(h),
            species_logits=self.species_head(h),
        )


class CanonicalFrame(nn.Module):
    """Wraps a denoiser so its clean-lattice estimate is exactly equivariant to basis changes.

    For each crystal the unimodular ``M`` taking ``L`` to the canonical reduced basis
    (``L_c = M L``) is found with :func:`crystaloop.data.canonical.canonical_bases`; the network
    sees ``(S_c = polar(L_c), F M⁻¹ mod 1)``. Outputs are mapped back: the clean-lattice estimate
    ``x̂₀_c = (S_c − √(1−ᾱ) ε̂_c)/√ᾱ`` becomes ``x̂₀ = polar(M⁻¹ x̂₀_c)`` (same lattice, original
    basis) and the noise estimate is re-derived from it for ``polar(L)``; the coordinate score
    maps as a covector, ``s_c M⁻ᵀ``; species logits are unchanged. ~1 ms per crystal (numpy).

    Args:
        denoiser: the network.
        alpha_bar: (T + 1,) the lattice schedule's ᾱ_t (needed to map the noise estimate).
    """

    def __init__(self, denoiser: CrystalDenoiser, alpha_bar: torch.Tensor) -> None:
        super().__init__()
        self.denoiser = denoiser
        self.register_buffer("alpha_bar", alpha_bar, persistent=False)

    @staticmethod
    def transforms(lattice: torch.Tensor) -> torch.Tensor:
        """(B, 3, 3) integer-valued M with ``M L`` canonical (float tensor on lattice's device)."""
        out = []
        for single in lattice.detach().cpu().double().numpy():
            try:
                canonical = canonical_bases(single, metric_tol=1e-9)[0]
                out.append(np.rint(canonical @ np.linalg.inv(single)))
            except (np.linalg.LinAlgError, ValueError):  # degenerate noisy lattice: keep its basis
                out.append(np.eye(3))
        return torch.as_tensor(np.stack(out), dtype=lattice.dtype, device=lattice.device)

    def forward(self, x: NoisyBatch) -> DenoiserOutput:
        m = self.transforms(x.lattice)
        m_inv = torch.linalg.inv(m)
        frac = torch.remainder(torch.einsum("ni,nij->nj", x.frac, m_inv[x.batch]), 1.0)
        canonical = symmetric_polar(m @ x.lattice)
        out = self.denoiser(x.replace(lattice=canonical, frac=frac))
        ab = self.alpha_bar[x.t].to(x.lattice.dtype).view(-1, 1, 1)
        clean_canonical = (canonical - (1 - ab).sqrt() * out.lattice_noise) / ab.sqrt()
        clean = symmetric_polar(m_inv @ clean_canonical)
        noise = (symmetric_polar(x.lattice) - ab.sqrt() * clean) / (1 - ab).sqrt()
        return DenoiserOutput(
            lattice_noise=noise,
            coord_score=torch.einsum("ni,nji->nj", out.coord_score, m_inv[x.batch]),
            species_logits=out.species_logits,
        )
