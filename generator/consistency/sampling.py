"""Few-step sampling with a distilled consistency model (Song et al. 2023, Algorithm 1).

For k steps at teacher steps ``T = τ_0 > τ_1 > … > τ_{k−1}``
(:func:`~crystaloop.generator.consistency.model.consistency_times`):

1. draw the prior at T (the teacher's: symmetric N(0, I) lattice, uniform coordinates, all
   species masked in de novo mode) and take the clean estimate ``x̂ = f_θ(x_T, T)``;
2. for each further τ_j: re-noise ``x̂`` with the forward process to τ_j (lattice
   ``√ᾱ x̂ + √(1−ᾱ) z``; coordinates ``x̂ + σ z mod 1``; species: draw every masked site from
   the estimate, then mask each de novo site again with probability τ_j / T) and estimate again.

The final estimate is the sample: coordinates as estimated, species drawn from the estimated
distribution restricted to the allowed elements, the lattice shrunk to Frobenius norm ≤ 10
(the teacher sampler's clip). Structure mirrors :func:`crystaloop.generator.diffusion.sampling.sample_batch`
and returns its :class:`RawSamples`; classifier-free guidance mixes the conditional and
unconditional network outputs before the consistency scalings (an approximation: the student
was distilled at guidance 1).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import torch

from crystaloop.data.errors import CrystaloopError
from crystaloop.generator.config import SamplerConfig
from crystaloop.generator.consistency.model import CleanEstimate, ConsistencyModel, clean_estimate, consistency_times
from crystaloop.generator.diffusion.denoiser import NoisyBatch
from crystaloop.generator.diffusion.model import symmetric_noise
from crystaloop.generator.diffusion.sampling import LATTICE_CLIP, RawSamples, SampleRequest, prior_state

__all__ = ["consistency_sample_batch"]

logger = logging.getLogger(__name__)


@torch.no_grad()
def consistency_sample_batch(model: ConsistencyModel, request: SampleRequest, config: SamplerConfig, *, seed: int,
                             on_step: Callable[[int, int], None] | None = None,
                             initial: tuple[torch.Tensor, torch.Tensor] | None = None, start: int | None = None,
                             constrain: Callable[[NoisyBatch], NoisyBatch] | None = None) -> RawSamples:
    """Sample one batch in ``config.steps`` consistency steps; deterministic for a seed (and device).

    ``config.midpoints`` overrides the checkpoint's validated intermediate steps. ``initial`` =
    (lattice (B, 3, 3) normalised, frac (N, 3)) replaces the prior draw at the first step.
    ``start`` (needs ``initial``): the first teacher step instead of T, the others evenly below it
    (``start · (k − j)/k``). ``constrain`` maps every state onto a constraint set: the first one,
    each clean estimate before it is re-noised, each re-noised state and the last one (as
    :func:`~crystaloop.generator.diffusion.sampling.sample_batch` does).
    """
    if not isinstance(model, ConsistencyModel):
        raise CrystaloopError(f"method 'consistency' needs a distilled model, got {type(model).__name__}; "
                              "distil one with `crystaloop generator distill --teacher CKPT --out CKPT`")
    device, dtype = next(model.parameters()).device, next(model.parameters()).dtype
    generator = torch.Generator().manual_seed(seed)

    def randn(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=generator).to(device=device, dtype=dtype)

    started = time.perf_counter()
    schedule, norm = model.schedule, model.normalisation
    times = consistency_times(schedule.timesteps, config.steps, model.midpoints, config.midpoints)
    if start is not None:
        if not 0 < start <= schedule.timesteps or initial is None:
            raise CrystaloopError(f"start must be in (0, {schedule.timesteps}] and come with an initial state, got {start}")
        times = sorted({int(start), *(max(1, round(start * (config.steps - j) / config.steps)) for j in range(1, config.steps))},
                       reverse=True)
    keep = constrain or (lambda x: x)
    state, conditioned, species_bias = prior_state(model, request, generator, times[0], initial)
    state = keep(state)
    b, n, num_atoms = len(state.num_atoms), len(state.tokens), state.num_atoms
    denovo = request.tokens is None
    guided = conditioned and request.guidance_scale != 1.0
    if guided and config.canonical_frame:
        raise CrystaloopError("consistency sampling with guidance_scale ≠ 1 does not support canonical_frame=True; "
                              "set canonical_frame=False or guidance_scale=1")

    def evaluate(x: NoisyBatch) -> CleanEstimate:
        if not conditioned:
            return clean_estimate(model, x.without_conditions(), canonical_frame=config.canonical_frame)
        if not guided:
            return clean_estimate(model, x, canonical_frame=config.canonical_frame)
        out = model.denoiser(x).guided(model.denoiser(x.without_conditions()), request.guidance_scale)
        return clean_estimate(model, x, output=out)

    def draw_species(estimate: CleanEstimate, current: torch.Tensor) -> torch.Tensor:
        logits = estimate.species_logits if species_bias is None else estimate.species_logits + species_bias
        probs = torch.softmax(logits.double(), -1).float().cpu()
        draw = torch.multinomial(probs, 1, generator=generator).squeeze(-1).to(device)
        return torch.where(current == model.mask_token, draw, current)

    for index, t in enumerate(times):
        estimate = evaluate(state.replace(t=torch.full((b,), t, device=device)))
        tokens = draw_species(estimate, state.tokens) if denovo else state.tokens
        if index + 1 < len(times):
            s = times[index + 1]
            clean = keep(state.replace(lattice=estimate.lattice, frac=estimate.frac)) if constrain else None
            clean_lattice, clean_frac = (clean.lattice, clean.frac) if clean is not None else (estimate.lattice, estimate.frac)
            ab_s = schedule.alpha_bar[s].to(dtype)
            lattice = ab_s.sqrt() * clean_lattice + (1 - ab_s).sqrt() * symmetric_noise(b, generator).to(device=device, dtype=dtype)
            frac = torch.remainder(clean_frac + schedule.sigma[s].to(dtype) * randn(n, 3), 1.0)
            if denovo:
                remask = torch.rand(n, generator=generator).to(device=device, dtype=dtype) < schedule.mask_rate[s].to(dtype)
                tokens = torch.where(remask, torch.full_like(tokens, model.mask_token), tokens)
            state = keep(state.replace(lattice=lattice, frac=frac, tokens=tokens))
        else:
            size = torch.linalg.matrix_norm(estimate.lattice).clamp(min=1e-12).view(-1, 1, 1)
            state = keep(state.replace(lattice=estimate.lattice * (LATTICE_CLIP / size).clamp(max=1.0), frac=estimate.frac,
                                       tokens=tokens))
        if on_step is not None:
            on_step(index + 1, len(times))

    scale = norm.lattice_scale(num_atoms).view(-1, 1, 1)
    numbers = norm.species[state.tokens.clamp(max=model.mask_token - 1)]
    return RawSamples(
        lattice=(state.lattice * scale).double().cpu().numpy(),
        frac=state.frac.double().cpu().numpy(),
        numbers=numbers.cpu().numpy(),
        num_atoms=num_atoms.cpu().numpy(),
        seconds=time.perf_counter() - started,
    )
