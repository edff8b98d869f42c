"""Posterior sampling: the generator's reverse process guided by a measurement likelihood.

Diffusion posterior sampling (DPS; Chung et al., ICLR 2023, arXiv:2209.14687) on the crystal
product space. At every guided step t → s the denoiser's clean-structure estimate

* lattice ``x̂₀ = (L_t − √(1−ᾱ_t) ε̂)/√ᾱ_t`` (normalised symmetric lattice, as in sampling),
* coordinates ``F̂₀ = F_t + σ_t² ŝ mod 1`` (Tweedie's estimate on the torus, exact for small σ),
* species: the fixed composition (structure prediction) or the current tokens with masked sites
  filled by the most likely allowed element (de novo within a chemical system),

is scored by a differentiable ``misfit(lattice Å, frac, numbers, num_atoms, progress) → (B,)``
(a residual norm, e.g. the powder-pattern R factor of :mod:`.posterior_xrd`). Its gradient with
respect to the noisy state (through the network, as DPS does, or only through the estimate's
explicit dependence with ``through_network=False``) shifts the step's mean:
``μ ← μ − ζ ∇ misfit`` with separate ζ for lattice and coordinates. DPS normalises its step by the
residual norm, ``ζ/‖r‖ · ∇‖r‖²``, which is ``2ζ ∇‖r‖``; a misfit that *is* a norm gets that
normalisation for free.

KL score. Guided and unguided reverse chains share every Gaussian transition except the mean,
so the KL divergence between their path measures is the sum over steps of
``‖Δμ‖² / (2 std²)`` (the discrete-time Girsanov identity: KL between Gaussians of equal
covariance), accumulated per crystal for free: over the six independent entries of the symmetric
lattice and the 3N coordinates: the information the guidance injected. How it flags a
measurement outside the model's domain depends on the likelihood's shape. With a smooth one (the
linear-Gaussian toy of :mod:`.posterior_toy`) a measurement no prior mode explains needs a strong
pull: a *large* KL flags it. With a peak-matching likelihood such as powder XRD, a pattern that no
structure of the domain explains misfits about equally everywhere, so the guidance finds nothing
to pull on and the path stays the prior's: a KL near *zero* flags it, while an explained pattern
concentrates the posterior (large KL). benchmarks/RESULTS.md measures both directions.
It needs stochastic transitions: ``method="pc"`` (ancestral, any number of steps).

Early stopping. ``stop_step = k > 0`` ends the reverse process at step k and returns the clean
estimate there (lattice x̂₀, F̂₀, most likely species): the diagnostic of how sensitive the
answer is to where sampling stops.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field

from crystaloop.data.errors import CrystaloopError
from crystaloop.generator.config import SamplerConfig
from crystaloop.generator.diffusion.denoiser import DenoiserOutput, NoisyBatch
from crystaloop.generator.diffusion.model import CrystalDiffusion, symmetric_noise
from crystaloop.generator.diffusion.sampling import (
    RawSamples,
    SampleRequest,
    clean_lattice_estimate,
    conditioned_evaluator,
    langevin_corrector,
    prior_state,
    reveal_species,
    step_grid,
    step_moments,
    to_raw_samples,
)

__all__ = ["Misfit", "PosteriorConfig", "PosteriorSamples", "posterior_sample_batch"]

Misfit = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, float], torch.Tensor]
"""``misfit(lattice (B, 3, 3) Å rows, frac (N, 3), numbers (N,), num_atoms (B,), progress) → (B,)``;
``progress`` = t/T ∈ [0, 1] (1 at the start of the reverse process) lets a misfit anneal."""

_UPPER = torch.triu_indices(3, 3)


class PosteriorConfig(BaseModel):
    """How strongly and where the measurement guides the reverse process.

    Attributes:
        lattice_step: ζ for the normalised lattice (dimensionless; the lattice has norm ≈ √3).
        frac_step: ζ for fractional coordinates (fractions of a cell edge).
        through_network: differentiate the misfit through the denoiser (DPS); ``False`` uses the
            clean estimate's explicit dependence on the state only (one network call, no backward
            through it: ~3× cheaper, weaker guidance early).
        start_fraction: guide only steps with t/T ≤ this (1 = every step).
        stop_step: end at this step and return the clean estimate there (0 = run to the end).
        snapshot_step: also keep the clean estimate at this step while running to the end
            (``PosteriorSamples.snapshot``; 0 = none): the early-stopped answer of every chain
            for free, which :mod:`.solution_checks` compares with the final one.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    lattice_step: float = Field(0.05, ge=0.0)
    frac_step: float = Field(0.002, ge=0.0)
    through_network: bool = True
    start_fraction: float = Field(1.0, gt=0.0, le=1.0)
    stop_step: int = Field(0, ge=0)
    snapshot_step: int = Field(0, ge=0)


@dataclass
class PosteriorSamples:
    """Guided samples with their diagnostics.

    Attributes:
        raw: the structures (as from ``sample_batch``).
        kl: (B,) KL divergence of the guided from the unguided reverse path, nats.
        misfit: (B,) misfit of the returned structures (progress 0).
        misfit_trace: (K, B) misfit of the clean estimate at each guided step (NaN where unguided).
        kl_trace: (K, B) each step's contribution to ``kl`` (rows follow the step grid from t = T).
        grid: the K + 1 diffusion times of the steps, descending from T.
        snapshot: the clean estimates at ``PosteriorConfig.snapshot_step`` (same chains, same
            order as ``raw``), or ``None`` when no snapshot was asked for.
    """

    raw: RawSamples
    kl: np.ndarray
    misfit: np.ndarray
    misfit_trace: np.ndarray
    kl_trace: np.ndarray
    grid: list[int]
    snapshot: RawSamples | None = None

    def kl_between(self, high: float, low: float) -> np.ndarray:
        """(B,) KL accumulated over the steps starting at t/T in (low, high]: the score of one phase."""
        top = self.grid[0]
        rows = [i for i, t in enumerate(self.grid[:-1]) if low < t / top <= high]
        return self.kl_trace[rows].sum(axis=0) if rows else np.zeros(self.kl_trace.shape[1])


def _clean_state(model: CrystalDiffusion, state: NoisyBatch, out: DenoiserOutput, t: int,
                 species_bias: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(lattice Å (B, 3, 3), frac (N, 3), numbers (N,)) estimated from the state at step t."""
    schedule, norm = model.schedule, model.normalisation
    x0, _ = clean_lattice_estimate(state.lattice, out.lattice_noise, schedule.alpha_bar[t])
    lattice = x0 * norm.lattice_scale(state.num_atoms).view(-1, 1, 1)
    score = out.coord_score * schedule.sigma_norm[t].sqrt()
    frac = torch.remainder(state.frac + schedule.sigma[t] ** 2 * score, 1.0)
    tokens = state.tokens
    masked = tokens == model.mask_token
    if bool(masked.any()):
        logits = out.species_logits.detach() if species_bias is None else out.species_logits.detach() + species_bias
        tokens = torch.where(masked, logits.argmax(-1), tokens)
    return lattice, frac, norm.species[tokens]


def posterior_sample_batch(model: CrystalDiffusion, request: SampleRequest, config: SamplerConfig, misfit: Misfit,
                           guidance: PosteriorConfig | None = None, *, seed: int,
                           on_step: Callable[[int, int], None] | None = None) -> PosteriorSamples:
    """Sample one batch from the measurement-guided reverse process (see the module docstring).

    Raises:
        CrystaloopError: a deterministic sampler (the KL score needs ``method="pc"``), or a
            ``stop_step`` that is not one of the grid's steps.
    """
    if config.method != "pc":
        raise CrystaloopError(f"posterior sampling needs the stochastic sampler method='pc' (got {config.method!r}): "
                              "the KL score is defined by its Gaussian transitions")
    guidance = guidance or PosteriorConfig()
    schedule = model.schedule
    grid = step_grid(schedule.timesteps, config.steps)
    for name in ("stop_step", "snapshot_step"):
        step = getattr(guidance, name)
        if step and step not in grid:
            raise CrystaloopError(f"{name} {step} is not on the {len(grid) - 1}-step grid; choose one of {grid[1:-1]}")
    device, dtype = next(model.parameters()).device, next(model.parameters()).dtype
    generator = torch.Generator().manual_seed(seed)

    def randn(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=generator).to(device=device, dtype=dtype)

    started = time.perf_counter()
    net = model.denoiser  # no CanonicalFrame: its eigen-decomposition has no stable gradient at cubic cells
    state, conditioned, species_bias = prior_state(model, request, generator, schedule.timesteps)
    b, n = len(state.num_atoms), len(state.tokens)
    denovo = request.tokens is None

    evaluate = conditioned_evaluator(net, conditioned, request.guidance_scale)

    kl = torch.zeros(b, dtype=torch.float64, device=device)
    snapshot: RawSamples | None = None
    trace = np.full((len(grid) - 1, b), np.nan)
    kl_trace = np.zeros((len(grid) - 1, b))
    for index, (t, s) in enumerate(zip(grid[:-1], grid[1:], strict=True)):
        at_t = torch.full((b,), t, device=device)
        with torch.no_grad():
            if config.corrector_step > 0:
                state = langevin_corrector(model, state, evaluate(state.replace(t=at_t)), t, config.corrector_step, randn(n, 3))
        guided = t / schedule.timesteps <= guidance.start_fraction and (guidance.lattice_step > 0 or guidance.frac_step > 0)
        lattice_shift = torch.zeros_like(state.lattice)
        frac_shift = torch.zeros_like(state.frac)
        if guided:
            lattice_t = state.lattice.detach().requires_grad_(True)
            frac_t = state.frac.detach().requires_grad_(True)
            noisy = state.replace(lattice=lattice_t, frac=frac_t, t=at_t)
            with torch.enable_grad():
                if guidance.through_network:
                    out = evaluate(noisy)
                else:
                    with torch.no_grad():
                        detached = evaluate(noisy)
                    out = detached
                lattice0, frac0, numbers = _clean_state(model, noisy, out, t, species_bias)
                values = misfit(lattice0, frac0, numbers, state.num_atoms, t / schedule.timesteps)
                grad_lattice, grad_frac = torch.autograd.grad(values.sum(), [lattice_t, frac_t], allow_unused=True)
            trace[index] = values.detach().double().cpu().numpy()
            out = DenoiserOutput(lattice_noise=out.lattice_noise.detach(), coord_score=out.coord_score.detach(),
                                 species_logits=out.species_logits.detach())
            if grad_lattice is not None:
                grad_lattice = 0.5 * (grad_lattice + grad_lattice.transpose(1, 2))  # the state is symmetric
                lattice_shift = -guidance.lattice_step * torch.nan_to_num(grad_lattice, nan=0.0, posinf=0.0, neginf=0.0)
            if grad_frac is not None:
                frac_shift = -guidance.frac_step * torch.nan_to_num(grad_frac, nan=0.0, posinf=0.0, neginf=0.0)
        else:
            with torch.no_grad():
                out = evaluate(state.replace(t=at_t))
        with torch.no_grad():
            if t in (guidance.stop_step, guidance.snapshot_step):
                estimate = _clean_raw(model, state, out, t, species_bias, time.perf_counter() - started)
                if t == guidance.stop_step:
                    return PosteriorSamples(raw=estimate, kl=kl.cpu().numpy(), misfit=_final_misfit(misfit, estimate, device, dtype),
                                            misfit_trace=trace, kl_trace=kl_trace, grid=grid)
                snapshot = estimate
            moments = step_moments(model, state, out, t, s, 1.0)
            step_kl = _transition_kl(lattice_shift, moments.lattice_std, frac_shift, moments.frac_std, state.batch, b)
            kl_trace[index] = step_kl.cpu().numpy()
            kl += step_kl
            lattice = moments.lattice_mean + lattice_shift + moments.lattice_std * symmetric_noise(b, generator).to(device=device, dtype=dtype)
            frac = moments.frac_mean + frac_shift + moments.frac_std * randn(n, 3)
            tokens = reveal_species(model, state.tokens, out, t, s, species_bias, generator) if denovo else state.tokens
            state = state.replace(lattice=lattice, frac=torch.remainder(frac, 1.0), tokens=tokens)
        if on_step is not None:
            on_step(index + 1, len(grid) - 1)
    raw = to_raw_samples(model, state, time.perf_counter() - started)
    return PosteriorSamples(raw=raw, kl=kl.cpu().numpy(), misfit=_final_misfit(misfit, raw, device, dtype), misfit_trace=trace,
                            kl_trace=kl_trace, grid=grid, snapshot=snapshot)


def _clean_raw(model: CrystalDiffusion, state: NoisyBatch, out: DenoiserOutput, t: int, species_bias: torch.Tensor | None,
               seconds: float) -> RawSamples:
    """The clean estimate at step ``t`` as samples (early stopping and snapshots)."""
    lattice0, frac0, numbers = _clean_state(model, state, out, t, species_bias)
    return RawSamples(lattice=lattice0.double().cpu().numpy(), frac=frac0.double().cpu().numpy(), numbers=numbers.cpu().numpy(),
                      num_atoms=state.num_atoms.cpu().numpy(), seconds=seconds)


def _transition_kl(lattice_shift: torch.Tensor, lattice_std: torch.Tensor, frac_shift: torch.Tensor,
                   frac_std: torch.Tensor, batch: torch.Tensor, b: int) -> torch.Tensor:
    """(B,) KL between two Gaussian transitions whose means differ by the shifts (same covariance)."""
    kl = torch.zeros(b, dtype=torch.float64, device=lattice_shift.device)
    if float(lattice_std) > 0:
        upper = lattice_shift[:, _UPPER[0], _UPPER[1]].double()
        kl += (upper**2).sum(-1) / (2 * float(lattice_std) ** 2)
    if float(frac_std) > 0:
        kl.index_add_(0, batch, (frac_shift.double() ** 2).sum(-1) / (2 * float(frac_std) ** 2))
    return kl


def _final_misfit(misfit: Misfit, raw: RawSamples, device: torch.device, dtype: torch.dtype) -> np.ndarray:
    with torch.no_grad():
        values = misfit(torch.as_tensor(raw.lattice, device=device, dtype=dtype), torch.as_tensor(raw.frac, device=device, dtype=dtype),
                        torch.as_tensor(raw.numbers, device=device), torch.as_tensor(raw.num_atoms, device=device), 0.0)
    return values.double().cpu().numpy()
