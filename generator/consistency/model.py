"""Consistency models for the crystal generator: the consistency function and the teacher step.

A consistency model maps any noisy crystal ``x_t`` on a teacher's probability-flow trajectory to
that trajectory's clean end ``x_0`` in one network call (Song, Dhariwal, Chen & Sutskever,
*Consistency Models*, ICML 2023). We distil a trained :class:`CrystalDiffusion` (consistency
distillation, CD): the student is a copy of the teacher's denoiser, trained so that its clean
estimates at two adjacent grid points of one teacher ODE step agree. The choices, per part of
the product space the teacher diffuses over:

* **Lattice** (symmetric polar factor S, DDPM with ``x_t = √ᾱ_t x_0 + √(1−ᾱ_t) ε``). This VP
  process is exactly TrigFlow (Lu & Song 2024, *Simplifying, Stabilizing and Scaling
  Continuous-Time Consistency Models*) with σ_d = 1, ``cos τ = √ᾱ_t``, ``sin τ = √(1−ᾱ_t)``,
  and every parametrisation below has the form ``f_L = cos τ · x_t − sin τ · F``.
  ``lattice_output="epsilon"`` (default): ``F = (ε̂ − sin τ x_t) / max(cos τ, δ)``, which is
  Lu & Song's conversion of an ε-prediction model to TrigFlow with 1/cos τ capped at 1/δ
  (``lattice_cap``, default δ = 0.25). Where ``cos τ ≥ δ`` (ᾱ ≥ 1/16, the first ~84 % of a
  cosine schedule) the student's estimate is exactly the teacher's ``(x_t − sin τ ε̂)/cos τ``,
  so it starts as the teacher's denoiser, the initialisation of Song et al. (2023); above, the
  cap bounds the amplification of network error to 1/δ = 4 instead of 1/√ᾱ_T ≈ 10⁴ at T.
  ``lattice_output="velocity"``: the head read directly as ``F ≈ cos τ ε − sin τ x_0``
  (amplification 1 everywhere, but the teacher's ε head is then a good start only at low noise;
  on a tiny trained teacher its self-consistency loss rose by 26 % over 24 epochs while the
  ε reading's fell by 6–12 %, so ε is the default).
* **Fractional coordinates** (wrapped normal on the torus, ``F_t = F_0 + σ_t ε mod 1``).
  On a torus the only skip that commutes with integer shifts is the identity, so
  ``f_F = (F_t + c_out(t) · G_θ) mod 1`` with ``c_out(t) = σ_t² √E[score²]_t``: with ``G`` the
  network's normalised score this is Tweedie's denoiser, so the student starts as the teacher's
  own one-step clean estimate. ``G`` is built from Fourier features of coordinate differences,
  hence ``f_F(F + n) = f_F(F)`` for integer ``n``: the output is defined modulo 1. Distances in
  the loss are wrapped differences (:func:`torus_difference`).
* **Species** (absorbing state, de novo mode). The clean estimate is a distribution per site:
  one-hot for a revealed site (absorbing: revealed tokens are clean) and the softmax of the
  species head for a masked one. Sampling draws from it; a multistep sampler re-masks at the
  next level. The per-site distribution is a mean-field approximation: 1-step de novo sampling
  draws sites independently (the teacher reveals them over many steps), so compositional
  validity is where few-step sampling is expected to lose most; 2 and more steps recover part.
* **Boundary condition** ``f(x, 0) = x`` holds exactly: ``cos 0 = 1, sin 0 = 0``, ``σ_0 = 0`` and
  nothing is masked at t = 0.
* **Teacher ODE step** (:func:`teacher_step`): the teacher's deterministic DDIM step (η = 0) on
  the lattice, the probability-flow step ``F_s = F_t + ½(σ_t² − σ_s²) ŝ`` on coordinates, and
  the absorbing reveal step on species, written with the formulas of
  :func:`crystaloop.generator.diffusion.sampling.sample_batch` (``method="ddim"``) but per crystal; a test
  checks that composing it reproduces ``sample_batch`` exactly.
* **Time**: one index ``t ∈ {0..T}`` (the teacher's step) drives all three processes, as in the
  teacher; grids and sampler times are teacher steps, so the student sees the teacher's time
  features.

What we do not adopt from the continuous-time line (sCM, Lu & Song 2024): the continuous-time
objective with tangent normalisation and adaptive weighting needs a JVP of the network along
the PF-ODE, which does not exist for the species jump process and costs ~2–3 network passes on
CPU; discrete-time CD with a fixed grid and an EMA target is the stable, cheaper choice here
(Song et al. 2023, Alg. 2). See :mod:`crystaloop.generator.consistency.training` for the loss
and the schedule, :mod:`crystaloop.generator.consistency.sampling` for the samplers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

from crystaloop.data.errors import CrystaloopError
from crystaloop.generator.config import GeneratorConfig
from crystaloop.generator.diffusion.denoiser import CanonicalFrame, DenoiserOutput, NoisyBatch, symmetric_polar
from crystaloop.generator.diffusion.model import CrystalDiffusion, Normalisation
from crystaloop.generator.diffusion.sampling import LATTICE_CLIP, clean_lattice_estimate

LatticeOutput = Literal["epsilon", "velocity"]

__all__ = ["CleanEstimate", "ConsistencyModel", "clean_estimate", "torus_difference", "teacher_step", "consistency_times"]


@dataclass
class CleanEstimate:
    """A consistency function's output: the clean end of the trajectory through the input.

    Attributes:
        lattice: (B, 3, 3) symmetric normalised lattice estimate (dimensionless, like S).
        frac: (N, 3) fractional coordinates in [0, 1).
        species_probs: (N, K) distribution over the K real species (one-hot where revealed).
        species_logits: (N, K) the species head's logits (for sampling with a species bias).
    """

    lattice: torch.Tensor
    frac: torch.Tensor
    species_probs: torch.Tensor
    species_logits: torch.Tensor


def torus_difference(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Shortest signed difference ``a − b`` on the unit torus, elementwise in [−½, ½)."""
    return torch.remainder(a - b + 0.5, 1.0) - 0.5


class ConsistencyModel(CrystalDiffusion):
    """A distilled student: the teacher's architecture whose outputs are read as consistency
    scalings (lattice head = TrigFlow velocity, coordinate head = normalised score).

    Args:
        config: the teacher's generator config (network, schedules).
        normalisation: the teacher's data normalisation.
        midpoints: validated intermediate teacher steps per step count, e.g. ``{2: [400]}``.
        lattice_output: how the lattice head is read, ``epsilon`` or ``velocity`` (module docstring).
        lattice_cap: δ in (0, 1], the cap of 1/cos τ for ``epsilon``.
    """

    def __init__(self, config: GeneratorConfig, normalisation: Normalisation, midpoints: dict[int, list[int]] | None = None,
                 *, lattice_output: LatticeOutput = "epsilon", lattice_cap: float = 0.25) -> None:
        super().__init__(config, normalisation)
        if lattice_output not in ("epsilon", "velocity"):
            raise CrystaloopError(f"unknown lattice_output {lattice_output!r}; allowed: epsilon, velocity")
        if not 0.0 < lattice_cap <= 1.0:
            raise CrystaloopError(f"lattice_cap must lie in (0, 1], got {lattice_cap}")
        self.midpoints: dict[int, list[int]] = dict(midpoints or {})
        self.lattice_output = lattice_output
        self.lattice_cap = float(lattice_cap)

    @classmethod
    def from_teacher(cls, teacher: CrystalDiffusion, *, lattice_output: LatticeOutput = "epsilon",
                     lattice_cap: float = 0.25) -> ConsistencyModel:
        """A student initialised with the teacher's weights (same dtype and device)."""
        parameter = next(teacher.parameters())
        student = cls(teacher.config, Normalisation(
            teacher.normalisation.species.tolist(), float(teacher.normalisation.volume_per_atom),
            teacher.normalisation.property_mean.tolist(), teacher.normalisation.property_std.tolist(),
            teacher.normalisation.atom_count_probs.tolist()), lattice_output=lattice_output, lattice_cap=lattice_cap)
        student.denoiser.load_state_dict(teacher.denoiser.state_dict())
        return student.to(device=parameter.device, dtype=parameter.dtype)

    def estimate(self, x: NoisyBatch, *, canonical_frame: bool = False) -> CleanEstimate:
        """The consistency function ``f_θ(x_t, t)`` (see the module docstring)."""
        return clean_estimate(self, x, canonical_frame=canonical_frame)


def _scalings(model: CrystalDiffusion, t: torch.Tensor, batch: torch.Tensor, dtype: torch.dtype) -> tuple[torch.Tensor, ...]:
    """(cos τ (B, 1, 1), sin τ (B, 1, 1), c_out of coordinates (N, 1)) at steps t (B,)."""
    schedule = model.schedule
    alpha_bar = schedule.alpha_bar[t].to(dtype)
    cos, sin = alpha_bar.sqrt().view(-1, 1, 1), (1 - alpha_bar).sqrt().view(-1, 1, 1)
    t_site = t[batch]
    c_out = (schedule.sigma[t_site] ** 2 * schedule.sigma_norm[t_site].sqrt()).to(dtype).unsqueeze(-1)
    return cos, sin, c_out


def _parametrise(model: CrystalDiffusion, x: NoisyBatch, out: DenoiserOutput) -> CleanEstimate:
    cos, sin, c_out = _scalings(model, x.t, x.batch, x.lattice.dtype)
    if getattr(model, "lattice_output", "epsilon") == "velocity":
        velocity = out.lattice_noise
    else:
        velocity = (out.lattice_noise - sin * x.lattice) / cos.clamp(min=getattr(model, "lattice_cap", 0.25))
    lattice = cos * x.lattice - sin * velocity
    size = torch.linalg.matrix_norm(lattice).clamp(min=1e-12).view(-1, 1, 1)
    lattice = lattice * (LATTICE_CLIP / size).clamp(max=1.0)  # same bound as the teacher's x̂₀ (rotation equivariant)
    frac = torch.remainder(x.frac + c_out * out.coord_score, 1.0)
    masked = x.tokens == model.mask_token
    onehot = torch.nn.functional.one_hot(x.tokens.clamp(max=model.mask_token - 1), model.normalisation.num_species)
    probs = torch.where(masked.unsqueeze(-1), torch.softmax(out.species_logits, -1), onehot.to(out.species_logits.dtype))
    return CleanEstimate(lattice=lattice, frac=frac, species_probs=probs, species_logits=out.species_logits)


def clean_estimate(model: CrystalDiffusion, x: NoisyBatch, *, canonical_frame: bool = False,
                   output: DenoiserOutput | None = None) -> CleanEstimate:
    """Apply the consistency parametrisation to ``model``'s denoiser at the batch's steps.

    With ``canonical_frame`` the network runs on the canonical reduced basis (``L_c = M L``,
    ``F_c = F M⁻¹``) and the clean crystal maps back (``L̂ = polar(M⁻¹ L̂_c)``, ``F̂ = F̂_c M``):
    exact equivariance to lattice basis changes. ``output`` supplies precomputed network outputs
    (classifier-free guidance mixes them before the scalings; not with ``canonical_frame``).
    """
    if output is not None:
        return _parametrise(model, x, output)
    if not canonical_frame:
        return _parametrise(model, x, model.denoiser(x))
    m = CanonicalFrame.transforms(x.lattice)
    m_inv = torch.linalg.inv(m)
    frac = torch.remainder(torch.einsum("ni,nij->nj", x.frac, m_inv[x.batch]), 1.0)
    canonical = x.replace(lattice=symmetric_polar(m @ x.lattice), frac=frac)
    estimate = _parametrise(model, canonical, model.denoiser(canonical))
    return CleanEstimate(
        lattice=symmetric_polar(m_inv @ estimate.lattice),
        frac=torch.remainder(torch.einsum("ni,nij->nj", estimate.frac, m[x.batch]), 1.0),
        species_probs=estimate.species_probs, species_logits=estimate.species_logits,
    )


def teacher_step(model: CrystalDiffusion, out: DenoiserOutput, x: NoisyBatch, s: torch.Tensor,
                 generator: torch.Generator) -> NoisyBatch:
    """One deterministic teacher step from each crystal's step ``x.t`` to ``s`` (B,), s < t.

    ``out`` is the teacher's output at ``x``. Lattice: DDIM with η = 0 (clean estimate clipped to
    Frobenius norm 10, as in the sampler); coordinates: probability-flow step on the torus;
    species: each masked site is revealed with probability (t − s)/t, drawn from the teacher's
    distribution (the only random part; uses ``generator``). Returns the batch at steps ``s``.
    """
    schedule, device, dtype = model.schedule, x.lattice.device, x.lattice.dtype
    t = x.t
    ab_t = schedule.alpha_bar[t].to(dtype).view(-1, 1, 1)
    ab_s = schedule.alpha_bar[s].to(dtype).view(-1, 1, 1)
    x0, noise = clean_lattice_estimate(x.lattice, out.lattice_noise, ab_t)
    lattice = ab_s.sqrt() * x0 + (1 - ab_s).clamp(min=0).sqrt() * noise
    t_site, s_site = t[x.batch], s[x.batch]
    score = out.coord_score * schedule.sigma_norm[t_site].sqrt().to(dtype).unsqueeze(-1)
    gap = (schedule.sigma[t_site] ** 2 - schedule.sigma[s_site] ** 2).to(dtype).unsqueeze(-1)
    frac = torch.remainder(x.frac + 0.5 * gap * score, 1.0)
    tokens = x.tokens
    masked = tokens == model.mask_token
    if masked.any():
        probs = torch.softmax(out.species_logits.double(), -1).float().cpu()
        draw = torch.multinomial(probs, 1, generator=generator).squeeze(-1).to(device)
        rate_t, rate_s = schedule.mask_rate[t_site], schedule.mask_rate[s_site]
        reveal = masked & (torch.rand(len(tokens), generator=generator).to(device) < (rate_t - rate_s) / rate_t)
        tokens = torch.where(reveal, draw, tokens)
    return x.replace(lattice=lattice, frac=frac, tokens=tokens, t=s)


def consistency_times(timesteps: int, steps: int, validated: dict[int, list[int]] | None = None,
                      explicit: list[int] | None = None) -> list[int]:
    """Descending teacher steps ``[T, m_1, …, m_{k−1}]`` at which a k-step sampler evaluates.

    ``explicit`` intermediate steps win; else the checkpoint's ``validated`` choice for k steps;
    else, from the validated 2-step midpoint m (or T/2), ``m · (k−j)/(k−1)`` for j = 1..k−1.
    Raises CrystaloopError for a malformed ``explicit`` list.
    """
    if steps < 1:
        raise CrystaloopError(f"consistency sampling needs at least 1 step, got {steps}")
    if explicit is not None:
        points = [int(p) for p in explicit]
        ordered = all(a > b for a, b in zip([timesteps, *points], [*points, 0], strict=True))
        if len(points) != steps - 1 or not ordered:
            raise CrystaloopError(f"midpoints {explicit} must be {steps - 1} strictly descending teacher steps in (0, {timesteps}) "
                                  f"for {steps} consistency steps")
        return [timesteps, *points]
    validated = validated or {}
    if steps in validated:
        return [timesteps, *validated[steps]]
    first = validated[2][0] if 2 in validated else timesteps // 2
    points = [max(1, round(first * (steps - j) / (steps - 1))) for j in range(1, steps)]
    return [timesteps, *sorted(set(points), reverse=True)]
