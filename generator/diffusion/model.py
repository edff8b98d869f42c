"""The joint diffusion model: representation, normalisation and the training objective.

A crystal becomes three tensors (see :mod:`crystaloop.generator.diffusion.schedules` for the noise):

* the lattice in the canonical reduced basis as its symmetric polar factor ``S = (L Lᵀ)^{1/2}``
  (six numbers, invariant to rotations of the Cartesian frame: the model's input and the
  diffused variable carry no orientation), divided by ``(v̄ N)^{1/3}`` (v̄ = mean volume per atom of the training data, Å³), so every normalised
  lattice has volume ≈ 1 whatever its size: the DDPM prior N(0, I) is on the right scale for
  5-atom perovskites and 24-atom carbon alike;
* fractional coordinates in [0, 1) (the torus);
* species as tokens into the training vocabulary, with one extra ``mask`` token.

Loss per batch = ε-MSE on the lattice + normalised-score MSE on coordinates (DiffCSP) + cross
entropy on masked species (absorbing D3PM, Austin et al. 2021; unweighted as in MDLM's
practice). Conditions (scalar properties, an embedding vector) are dropped together with
probability ``condition_dropout`` so one network serves conditional and unconditional scores
(classifier-free guidance, Ho & Salimans 2022).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from crystaloop.data.canonical import canonical_bases
from crystaloop.data.crystal import Crystal, element_symbol
from crystaloop.data.errors import CrystaloopError
from crystaloop.generator.config import GeneratorConfig
from crystaloop.generator.diffusion.denoiser import CrystalDenoiser, DenoiserOutput, NoisyBatch
from crystaloop.generator.diffusion.schedules import NoiseSchedule, wrapped_normal_score

__all__ = ["Normalisation", "CrystalDiffusion", "canonical_lattice", "symmetric_lattice", "symmetric_noise"]


def symmetric_noise(batch: int, generator: torch.Generator) -> torch.Tensor:
    """(B, 3, 3) symmetric matrices with the six upper-triangle entries i.i.d. N(0, 1)."""
    upper = torch.triu(torch.randn(batch, 3, 3, generator=generator))
    return upper + upper.transpose(1, 2) - torch.diag_embed(torch.diagonal(upper, dim1=1, dim2=2))


def symmetric_lattice(lattice: np.ndarray) -> np.ndarray:
    """The rotation-free representative ``S = (L Lᵀ)^{1/2}`` of a row lattice (3, 3).

    ``L = S U`` (polar decomposition, U orthogonal), so S has the same rows' lengths and angles:
    the same lattice, rotated; any rotated copy ``L Rᵀ`` gives the same S.
    """
    values, vectors = np.linalg.eigh(lattice @ lattice.T)
    return (vectors * np.sqrt(np.clip(values, 0.0, None))) @ vectors.T


def canonical_lattice(crystal: Crystal) -> tuple[np.ndarray, np.ndarray]:
    """The crystal in its canonical reduced basis, as the symmetric lattice S (rotation-free).

    Returns (lattice (3, 3) Å, symmetric; frac (N, 3) in [0, 1)); the same structure as
    ``crystal`` up to a rotation.
    """
    basis = canonical_bases(crystal.lattice)[0]
    transform = np.rint(basis @ np.linalg.inv(crystal.lattice))  # basis = M L
    frac = np.remainder(crystal.frac_coords @ np.linalg.inv(transform), 1.0)
    return symmetric_lattice(basis), frac


class Normalisation(nn.Module):
    """Data statistics stored with the model (part of the checkpoint).

    Buffers: ``species`` (K,) atomic numbers of the vocabulary; ``volume_per_atom`` (), Å³;
    ``property_mean`` / ``property_std`` (P,); ``atom_count_probs`` (max_atoms + 1,) the
    training distribution of sites per cell.
    """

    def __init__(self, species: Sequence[int], volume_per_atom: float, property_mean: Sequence[float],
                 property_std: Sequence[float], atom_count_probs: Sequence[float]) -> None:
        super().__init__()
        self.register_buffer("species", torch.as_tensor(list(species), dtype=torch.long))
        self.register_buffer("volume_per_atom", torch.tensor(float(volume_per_atom)))
        self.register_buffer("property_mean", torch.as_tensor(list(property_mean), dtype=torch.float32))
        self.register_buffer("property_std", torch.as_tensor(list(property_std), dtype=torch.float32))
        self.register_buffer("atom_count_probs", torch.as_tensor(list(atom_count_probs), dtype=torch.float32))

    @classmethod
    def from_data(cls, crystals: Sequence[Crystal], properties: Mapping[str, np.ndarray], names: Sequence[str],
                  max_atoms: int) -> Normalisation:
        species = sorted({int(z) for c in crystals for z in c.numbers})
        volume = float(np.mean([c.volume / c.n_sites for c in crystals]))
        means, stds = [], []
        for name in names:
            if name not in properties:
                raise CrystaloopError(f"conditioning property {name!r} is not in the data; available: {sorted(properties)}")
            values = np.asarray(properties[name], dtype=np.float64)
            values = values[np.isfinite(values)]
            means.append(float(values.mean()))
            stds.append(float(values.std()) or 1.0)
        counts = np.bincount([c.n_sites for c in crystals], minlength=max_atoms + 1)[: max_atoms + 1].astype(np.float64)
        return cls(species, volume, means, stds, counts / counts.sum())

    @property
    def num_species(self) -> int:
        return int(self.species.numel())

    def lattice_scale(self, num_atoms: torch.Tensor) -> torch.Tensor:
        """(B,) length scale (v̄ N)^{1/3} in Å."""
        return (self.volume_per_atom * num_atoms.float()) ** (1.0 / 3.0)

    def tokens(self, numbers: np.ndarray, where: str = "crystal") -> torch.Tensor:
        """Map atomic numbers to vocabulary tokens; unknown elements raise naming what is allowed."""
        lookup = {int(z): i for i, z in enumerate(self.species.tolist())}
        try:
            return torch.as_tensor([lookup[int(z)] for z in numbers], dtype=torch.long)
        except KeyError as missing:
            allowed = ", ".join(element_symbol(z) for z in self.species.tolist())
            raise CrystaloopError(
                f"{where}: element {element_symbol(int(missing.args[0]))} is outside this model's vocabulary; allowed: {allowed}"
            ) from None


class CrystalDiffusion(nn.Module):
    """Denoiser + schedules + normalisation; ``loss`` for training, used by the samplers."""

    def __init__(self, config: GeneratorConfig, normalisation: Normalisation) -> None:
        super().__init__()
        self.config = config
        self.normalisation = normalisation
        d = config.diffusion
        self.schedule = NoiseSchedule(d.timesteps, d.lattice_schedule, d.sigma_min, d.sigma_max)
        self.denoiser = CrystalDenoiser(config.network, normalisation.num_species, d.timesteps)

    @property
    def mask_token(self) -> int:
        return self.normalisation.num_species

    def clean_batch(self, crystals: Sequence[Crystal], properties: np.ndarray | None = None,
                    embeddings: np.ndarray | None = None) -> NoisyBatch:
        """Encode clean crystals (t = 0). ``properties`` (B, P) raw units, NaN = absent."""
        lattices, fracs, tokens = [], [], []
        for i, crystal in enumerate(crystals):
            lattice, frac = canonical_lattice(crystal)
            lattices.append(lattice)
            fracs.append(frac)
            tokens.append(self.normalisation.tokens(crystal.numbers, where=f"crystal {i} ({crystal.reduced_formula})"))
        num_atoms = torch.as_tensor([c.n_sites for c in crystals], dtype=torch.long)
        scale = self.normalisation.lattice_scale(num_atoms).cpu()
        lattice = torch.as_tensor(np.stack(lattices), dtype=torch.float32) / scale.view(-1, 1, 1)
        batch = self.condition_tensors(len(crystals), properties, embeddings)
        return NoisyBatch(
            lattice=lattice,
            frac=torch.as_tensor(np.concatenate(fracs), dtype=torch.float32),
            tokens=torch.cat(tokens),
            batch=torch.repeat_interleave(torch.arange(len(crystals)), num_atoms),
            num_atoms=num_atoms,
            t=torch.zeros(len(crystals), dtype=torch.long),
            **batch,
        )

    def condition_tensors(self, n: int, properties: np.ndarray | None, embeddings: np.ndarray | None) -> dict[str, torch.Tensor]:
        """Normalised condition tensors for a batch of n (absent conditions → present=False)."""
        p = len(self.config.network.properties)
        if properties is None:
            values = torch.zeros(n, p)
            present = torch.zeros(n, p, dtype=torch.bool)
        else:
            raw = torch.as_tensor(np.asarray(properties, dtype=np.float64).reshape(n, p), dtype=torch.float32)
            present = torch.isfinite(raw)
            norm = (raw - self.normalisation.property_mean.cpu()) / self.normalisation.property_std.cpu()
            values = torch.where(present, norm, torch.zeros_like(norm))
        e = self.config.network.embedding_dim
        if embeddings is None:
            emb = torch.zeros(n, e)
            emb_present = torch.zeros(n, dtype=torch.bool)
        else:
            emb = torch.as_tensor(np.asarray(embeddings, dtype=np.float32).reshape(n, e))
            emb_present = torch.isfinite(emb).all(-1)
            emb = torch.where(emb_present.unsqueeze(-1), emb, torch.zeros_like(emb))
        return {"properties": values, "property_present": present, "embedding": emb, "embedding_present": emb_present}

    def forward(self, x: NoisyBatch) -> DenoiserOutput:
        return self.denoiser(x)

    def loss(self, clean: NoisyBatch, generator: torch.Generator) -> dict[str, torch.Tensor]:
        """Training losses for a clean batch (one random step per crystal).

        Returns a dict with ``loss`` (weighted total) and its parts ``lattice``, ``coords``,
        ``species`` (scalars).
        """
        device = clean.lattice.device
        cfg, train = self.config.diffusion, self.config.train
        b = len(clean.num_atoms)
        t = torch.randint(1, cfg.timesteps + 1, (b,), generator=generator).to(device)
        t_site = t[clean.batch]
        alpha_bar = self.schedule.alpha_bar[t].view(-1, 1, 1)
        lattice_noise = symmetric_noise(b, generator).to(device)
        lattice_t = alpha_bar.sqrt() * clean.lattice + (1 - alpha_bar).sqrt() * lattice_noise

        sigma = self.schedule.sigma[t_site].unsqueeze(-1)
        coord_noise = torch.randn(clean.frac.shape, generator=generator).to(device) * sigma
        frac_t = torch.remainder(clean.frac + coord_noise, 1.0)
        score_target = wrapped_normal_score(coord_noise, sigma) / self.schedule.sigma_norm[t_site].sqrt().unsqueeze(-1)

        denovo = (torch.rand(b, generator=generator) >= cfg.csp_fraction).to(device)
        mask_rate = self.schedule.mask_rate[t_site]
        masked = (torch.rand(len(clean.tokens), generator=generator).to(device) < mask_rate) & denovo[clean.batch]
        tokens_t = torch.where(masked, torch.full_like(clean.tokens, self.mask_token), clean.tokens)

        keep = (torch.rand(b, generator=generator) >= cfg.condition_dropout).to(device)
        noisy = clean.replace(
            lattice=lattice_t, frac=frac_t, tokens=tokens_t, t=t,
            property_present=clean.property_present & keep.unsqueeze(-1),
            embedding_present=clean.embedding_present & keep,
        )
        out = self.denoiser(noisy)
        upper = torch.triu_indices(3, 3)
        lattice_loss = F.mse_loss(out.lattice_noise[:, upper[0], upper[1]], lattice_noise[:, upper[0], upper[1]])
        coord_loss = F.mse_loss(out.coord_score, score_target)
        if masked.any():
            species_loss = F.cross_entropy(out.species_logits[masked], clean.tokens[masked])
        else:
            species_loss = torch.zeros((), device=device)
        total = train.lattice_weight * lattice_loss + train.coord_weight * coord_loss + train.species_weight * species_loss
        return {"loss": total, "lattice": lattice_loss.detach(), "coords": coord_loss.detach(), "species": species_loss.detach()}
