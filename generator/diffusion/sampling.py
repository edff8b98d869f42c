"""Reverse processes: ancestral predictor-corrector (the 1000-step protocol) and strided DDIM.

One reverse step from t to s < t (s = 0 ends):

* lattice: x̂₀ = (L_t − √(1−ᾱ_t) ε̂)/√ᾱ_t, then the DDIM update with η = 1 (``pc``: the DDPM
  posterior, exact ancestral sampling when s = t − 1) or η = 0 (``ddim``: deterministic);
* coordinates: variance-exploding step on the torus with score ŝ = output · √E[score²]:
  ancestral ``F_s = F_t + (σ_t² − σ_s²) ŝ + √(σ_s²(σ_t² − σ_s²)/σ_t²) z`` (pc) or the
  probability-flow step ``F_s = F_t + ½(σ_t² − σ_s²) ŝ`` (ddim); ``pc`` first runs one Langevin
  corrector step at σ_t with size ``corrector_step · (σ_t/σ_min)²`` (DiffCSP's schedule);
* species (de novo): each masked site is revealed with probability (t − s)/t, drawn from the
  predicted distribution restricted to the allowed elements (chemical system).

Classifier-free guidance mixes the conditional and unconditional outputs when a condition is
given and ``guidance_scale ≠ 1`` (two network calls per step).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from crystaloop.generator.config import SamplerConfig
from crystaloop.generator.diffusion.denoiser import CanonicalFrame, DenoiserOutput, NoisyBatch
from crystaloop.generator.diffusion.model import CrystalDiffusion, symmetric_noise

__all__ = [
    "SampleRequest", "RawSamples", "StepMoments", "step_grid", "sample_batch", "step_moments", "langevin_corrector",
    "reveal_species", "to_raw_samples", "conditioned_evaluator", "clean_lattice_estimate", "prior_state", "LATTICE_CLIP",
]

logger = logging.getLogger(__name__)

# Frobenius norm of a normalised lattice (volume ≈ 1; √3 for a cube) stays well below this.
# Shrinking the clean-lattice estimate to this norm keeps the first steps (ᾱ_T ≈ 0, division by
# √ᾱ_t) finite, like DDPM's x̂₀ clipping, while staying rotation equivariant (a norm, not a box).
LATTICE_CLIP = 10.0


@dataclass
class SampleRequest:
    """What to sample, one entry per crystal (B crystals).

    Attributes:
        num_atoms: (B,) sites per crystal.
        tokens: (N,) fixed species tokens (structure prediction) or ``None`` (de novo).
        allowed: (B, K) bool, species a de novo crystal may use (``None`` = all).
        properties: (B, P) raw property targets, NaN = unconditioned (``None`` = none).
        embeddings: (B, E) conditioning vectors (``None`` = none).
        guidance_scale: classifier-free guidance weight w (1 = plain conditional).
    """

    num_atoms: torch.Tensor
    tokens: torch.Tensor | None = None
    allowed: torch.Tensor | None = None
    properties: np.ndarray | None = None
    embeddings: np.ndarray | None = None
    guidance_scale: float = 1.0


@dataclass
class RawSamples:
    """Sampler output before conversion to crystals.

    Attributes: lattice (B, 3, 3) Å; frac (N, 3); numbers (N,) atomic numbers; num_atoms (B,);
    seconds: wall time of the reverse process.
    """

    lattice: np.ndarray
    frac: np.ndarray
    numbers: np.ndarray
    num_atoms: np.ndarray
    seconds: float

    def split(self) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """Per-crystal (lattice, frac, numbers)."""
        bounds = np.concatenate([[0], np.cumsum(self.num_atoms)])
        return [(self.lattice[i], self.frac[bounds[i]:bounds[i + 1]], self.numbers[bounds[i]:bounds[i + 1]])
                for i in range(len(self.num_atoms))]


def clean_lattice_estimate(lattice: torch.Tensor, noise: torch.Tensor, alpha_bar: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Clean-lattice estimate x̂₀ shrunk to Frobenius norm ≤ ``LATTICE_CLIP``, and the noise
    estimate re-derived from it so the DDIM step stays consistent with the clipped x̂₀.

    Args: lattice, noise (B, 3, 3); alpha_bar: ᾱ_t broadcastable to (B, 1, 1).
    """
    x0 = (lattice - (1 - alpha_bar).sqrt() * noise) / alpha_bar.sqrt()
    size = torch.linalg.matrix_norm(x0).clamp(min=1e-12).view(-1, 1, 1)
    x0 = x0 * (LATTICE_CLIP / size).clamp(max=1.0)
    return x0, (lattice - alpha_bar.sqrt() * x0) / (1 - alpha_bar).clamp(min=1e-12).sqrt()


def step_grid(timesteps: int, steps: int) -> list[int]:
    """Descending steps T = t_0 > … > t_K = 0 evenly strided (K = min(steps, T))."""
    steps = min(steps, timesteps)
    grid = np.round(np.linspace(timesteps, 0, steps + 1)).astype(int)
    return [int(t) for t in grid]


def prior_state(model: CrystalDiffusion, request: SampleRequest, generator: torch.Generator, t: int,
                initial: tuple[torch.Tensor, torch.Tensor] | None = None) -> tuple[NoisyBatch, bool, torch.Tensor | None]:
    """The batch at step ``t`` drawn from the prior (or ``initial``), shared by every sampler.

    Returns (state, whether any condition is set, per-site species logit bias (N, K) for the
    allowed elements or ``None``). Species are masked for de novo requests.
    """
    device, dtype = next(model.parameters()).device, next(model.parameters()).dtype
    num_atoms = request.num_atoms.to(device)
    b, n = len(num_atoms), int(num_atoms.sum())
    batch = torch.repeat_interleave(torch.arange(b, device=device), num_atoms)
    if request.tokens is None:
        tokens = torch.full((n,), model.mask_token, dtype=torch.long, device=device)
    else:
        tokens = request.tokens.to(device)
    conditions = {k: v.to(device=device, dtype=dtype) if v.is_floating_point() else v.to(device)
                  for k, v in model.condition_tensors(b, request.properties, request.embeddings).items()}
    conditioned = bool(conditions["property_present"].any() or conditions["embedding_present"].any())
    lattice0 = symmetric_noise(b, generator).to(device=device, dtype=dtype)
    frac0 = torch.rand(n, 3, generator=generator).to(device=device, dtype=dtype)
    if initial is not None:
        lattice0, frac0 = initial[0].to(device=device, dtype=dtype), initial[1].to(device=device, dtype=dtype)
    state = NoisyBatch(lattice=lattice0, frac=frac0, tokens=tokens, batch=batch, num_atoms=num_atoms,
                       t=torch.full((b,), t, device=device), **conditions)
    species_bias = None
    if request.allowed is not None:
        species_bias = torch.where(request.allowed.to(device), 0.0, float("-inf"))[batch]
    return state, conditioned, species_bias


@dataclass
class StepMoments:
    """Gaussian transition of one reverse step t → s, before its noise is drawn.

    Attributes:
        lattice_mean: (B, 3, 3) normalised symmetric lattice mean; lattice_std: scalar tensor,
            standard deviation of each of the six independent entries' noise.
        frac_mean: (N, 3) coordinate mean (not yet wrapped); frac_std: scalar tensor (0 for
            the deterministic probability-flow step).
        lattice_clean: (B, 3, 3) the clean-lattice estimate x̂₀ (normalised, clipped).
    """

    lattice_mean: torch.Tensor
    lattice_std: torch.Tensor
    frac_mean: torch.Tensor
    frac_std: torch.Tensor
    lattice_clean: torch.Tensor


def step_moments(model: CrystalDiffusion, state: NoisyBatch, out: DenoiserOutput, t: int, s: int, eta: float) -> StepMoments:
    """Mean and noise scale of the lattice (DDIM with η) and coordinate (VE on the torus) step t → s."""
    schedule = model.schedule
    ab_t, ab_s = schedule.alpha_bar[t], schedule.alpha_bar[s]
    x0, lattice_noise = clean_lattice_estimate(state.lattice, out.lattice_noise, ab_t)
    noise_scale = eta * (((1 - ab_s) / (1 - ab_t)) * (1 - ab_t / ab_s)).clamp(min=0).sqrt()
    direction = (1 - ab_s - noise_scale**2).clamp(min=0).sqrt()
    sigma_t, sigma_s = schedule.sigma[t], schedule.sigma[s]
    score = out.coord_score * schedule.sigma_norm[t].sqrt()
    gap = sigma_t**2 - sigma_s**2
    if eta > 0:
        frac_mean, frac_std = state.frac + gap * score, (sigma_s**2 * gap / sigma_t**2).sqrt()
    else:
        frac_mean, frac_std = state.frac + 0.5 * gap * score, torch.zeros_like(gap)
    return StepMoments(lattice_mean=ab_s.sqrt() * x0 + direction * lattice_noise, lattice_std=noise_scale,
                       frac_mean=frac_mean, frac_std=frac_std, lattice_clean=x0)


def langevin_corrector(model: CrystalDiffusion, state: NoisyBatch, out: DenoiserOutput, t: int, step_scale: float,
                       noise: torch.Tensor) -> NoisyBatch:
    """One Langevin step on the coordinates at σ_t, size ``step_scale · (σ_t/σ_min)²`` (DiffCSP)."""
    schedule = model.schedule
    score = out.coord_score * schedule.sigma_norm[t].sqrt()
    step = step_scale * (schedule.sigma[t] / schedule.sigma[1]) ** 2
    return state.replace(frac=torch.remainder(state.frac + step * score + (2 * step).sqrt() * noise, 1.0))


def reveal_species(model: CrystalDiffusion, tokens: torch.Tensor, out: DenoiserOutput, t: int, s: int,
                   species_bias: torch.Tensor | None, generator: torch.Generator) -> torch.Tensor:
    """Absorbing-state step: each masked site is revealed with probability (t − s)/t (mask-rate ratio)."""
    schedule = model.schedule
    logits = out.species_logits if species_bias is None else out.species_logits + species_bias
    probs = torch.softmax(logits.double(), -1).float().cpu()
    draw = torch.multinomial(probs, 1, generator=generator).squeeze(-1).to(tokens.device)
    reveal_probability = (schedule.mask_rate[t] - schedule.mask_rate[s]) / schedule.mask_rate[t]
    uniform = torch.rand(len(tokens), generator=generator).to(device=tokens.device, dtype=out.species_logits.dtype)
    return torch.where((tokens == model.mask_token) & (uniform < reveal_probability), draw, tokens)


def conditioned_evaluator(net: Callable[[NoisyBatch], DenoiserOutput], conditioned: bool,
                          guidance_scale: float) -> Callable[[NoisyBatch], DenoiserOutput]:
    """``net`` called as the request needs: unconditional, conditional, or classifier-free guided."""

    def evaluate(x: NoisyBatch) -> DenoiserOutput:
        if not conditioned:
            return net(x.without_conditions())
        out = net(x)
        if guidance_scale != 1.0:
            out = out.guided(net(x.without_conditions()), guidance_scale)
        return out

    return evaluate


@torch.no_grad()
def sample_batch(model: CrystalDiffusion, request: SampleRequest, config: SamplerConfig, *, seed: int,
                 on_step: Callable[[int, int], None] | None = None,
                 initial: tuple[torch.Tensor, torch.Tensor] | None = None, start: int | None = None,
                 constrain: Callable[[NoisyBatch], NoisyBatch] | None = None) -> RawSamples:
    """Run the reverse process for one batch; deterministic for a given seed (and device).

    ``initial`` = (lattice (B, 3, 3) normalised, frac (N, 3)) replaces the prior draw at the
    first step (used to check that the noise → sample map is equivariant, and to start from a
    noised crystal). ``start`` (≤ T, needs ``initial``): the timestep the reverse process starts
    from, ``config.steps`` steps spread over [start, 0] (SDEdit-style refinement; default T).
    ``constrain`` maps every state (the first one and each after a step, the corrector's too)
    onto a constraint set, e.g. a space group's subspace
    (:class:`~crystaloop.generator.symmetry.subspace.SymmetricSubspace`).
    """
    device, dtype = next(model.parameters()).device, next(model.parameters()).dtype
    generator = torch.Generator().manual_seed(seed)

    def randn(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=generator).to(device=device, dtype=dtype)

    started = time.perf_counter()
    net = CanonicalFrame(model.denoiser, model.schedule.alpha_bar) if config.canonical_frame else model.denoiser
    schedule = model.schedule
    first = schedule.timesteps if start is None else int(start)
    if not 0 < first <= schedule.timesteps or (start is not None and initial is None):
        raise ValueError(f"start must be in (0, {schedule.timesteps}] and come with an initial state, got {start}")
    state, conditioned, species_bias = prior_state(model, request, generator, first, initial)
    keep = constrain or (lambda x: x)
    state = keep(state)
    b, n = len(state.num_atoms), len(state.tokens)
    denovo = request.tokens is None

    evaluate = conditioned_evaluator(net, conditioned, request.guidance_scale)

    eta = 1.0 if config.method == "pc" else 0.0
    grid = step_grid(schedule.timesteps, config.steps) if start is None else step_grid(first, config.steps)
    for index, (t, s) in enumerate(zip(grid[:-1], grid[1:], strict=True)):
        if config.method == "pc" and config.corrector_step > 0:
            state = keep(langevin_corrector(model, state, evaluate(state.replace(t=torch.full((b,), t, device=device))), t,
                                            config.corrector_step, randn(n, 3)))
        out = evaluate(state.replace(t=torch.full((b,), t, device=device)))
        moments = step_moments(model, state, out, t, s, eta)
        lattice = moments.lattice_mean + moments.lattice_std * symmetric_noise(b, generator).to(device=device, dtype=dtype)
        frac = moments.frac_mean + moments.frac_std * randn(n, 3) if eta > 0 else moments.frac_mean
        tokens = reveal_species(model, state.tokens, out, t, s, species_bias, generator) if denovo else state.tokens
        state = keep(state.replace(lattice=lattice, frac=torch.remainder(frac, 1.0), tokens=tokens))
        if on_step is not None:
            on_step(index + 1, len(grid) - 1)

    return to_raw_samples(model, state, time.perf_counter() - started)


def to_raw_samples(model: CrystalDiffusion, state: NoisyBatch, seconds: float) -> RawSamples:
    """Undo the normalisation of a final state: lattice in Å, tokens to atomic numbers."""
    norm, num_atoms = model.normalisation, state.num_atoms
    scale = norm.lattice_scale(num_atoms).view(-1, 1, 1)
    numbers = norm.species[state.tokens.clamp(max=model.mask_token - 1)]
    return RawSamples(
        lattice=(state.lattice * scale).double().cpu().numpy(),
        frac=state.frac.double().cpu().numpy(),
        numbers=numbers.cpu().numpy(),
        num_atoms=num_atoms.cpu().numpy(),
        seconds=seconds,
    )
