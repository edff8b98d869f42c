"""Structure from a powder pattern: the generator guided by the XRD misfit (DPS), ranked by Rwp.

* :class:`XRDMisfit`: the misfit callable of :mod:`.posterior` for one measured pattern per
  crystal (or one shared), through the differentiable forward model of
  :mod:`crystaloop.data.xrd_forward`. Coarse to fine: early in the reverse process (progress t/T
  near 1) both the simulated and the measured patterns are compared at a wider peak profile
  (``anneal_fwhm`` degrees at t = T, falling linearly to the grid's own FWHM), so a peak that is
  not yet where it should be still overlaps its target and has a gradient.
* :func:`solve_pattern`: ``n`` posterior samples for a measured pattern with a composition
  (structure prediction) or a chemical system (de novo), optionally also conditioned on an
  embedding of the pattern (the amortised route: a generator trained with multimodal
  embeddings), each refined locally against the pattern (lattice strain and site offsets, coarse
  to fine: :mod:`crystaloop.data.xrd_refine`) and ranked by Rwp at the grid's profile; each solution carries its KL score (the
  out-of-distribution signal, see :mod:`.posterior`) and its simulated pattern.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from crystaloop.data.crystal import Crystal
from crystaloop.data.errors import CrystaloopError
from crystaloop.data.records import Condition
from crystaloop.data.xrd_forward import pattern_misfit, powder_pattern, powder_pattern_of, rwp
from crystaloop.data.xrd_grid import DEFAULT_GRID, PatternGrid
from crystaloop.data.xrd_refine import RefineConfig, refine_to_pattern, smooth_patterns
from crystaloop.generator.diffusion.generator import DiffusionGenerator, crystal_from_sample
from crystaloop.generator.diffusion.sampling import RawSamples
from crystaloop.generator.posterior.sampler import PosteriorConfig, PosteriorSamples, posterior_sample_batch

__all__ = ["DEFAULT_REFINE", "XRDMisfit", "XRDSolution", "rank_against_pattern", "snapshot_solutions", "solve_pattern"]

logger = logging.getLogger(__name__)

DEFAULT_REFINE = RefineConfig()
"""The refinement :func:`solve_pattern` applies unless told otherwise (pass ``None`` to skip it)."""
_MIN_VOLUME_PER_SITE = 1.0  # Å³: below this a clean estimate is treated as collapsed (no real solid is that dense)
_LEVELS = 6  # distinct profile widths used while annealing (each caches its kernel table)


class XRDMisfit:
    """``misfit(lattice Å, frac, numbers, num_atoms, progress) → (B,)`` against measured patterns.

    Args:
        measured: (P,) one pattern for every crystal, or (B, P) one per crystal, on ``grid``.
        grid: the pattern grid (wavelength, 2θ range, profile).
        kind: ``rwp`` (the R factor, a residual norm: DPS's normalised step) or ``cosine``.
        anneal_fwhm: profile FWHM (degrees 2θ) at t = T; ≤ ``grid.fwhm`` disables annealing.
    """

    def __init__(self, measured: np.ndarray, grid: PatternGrid = DEFAULT_GRID, *, kind: str = "rwp", anneal_fwhm: float = 1.0) -> None:
        pattern = np.asarray(measured, dtype=np.float64)
        if pattern.ndim not in (1, 2) or pattern.shape[-1] != grid.n_points:
            raise CrystaloopError(f"measured pattern must have shape ({grid.n_points},) or (B, {grid.n_points}) on the grid "
                                  f"{grid.two_theta_min}–{grid.two_theta_max}° 2θ; got {pattern.shape}")
        if not np.isfinite(pattern).all() or pattern.max() <= 0:
            raise CrystaloopError("measured pattern must be finite with at least one positive intensity")
        self.measured = torch.as_tensor(pattern / pattern.max(axis=-1, keepdims=True))
        self.grid, self.kind, self.anneal_fwhm = grid, kind, float(anneal_fwhm)
        self._smoothed: dict[int, torch.Tensor] = {}

    def _level(self, progress: float) -> int:
        if self.anneal_fwhm <= self.grid.fwhm:
            return 0
        return min(int(round(progress * (_LEVELS - 1))), _LEVELS - 1)

    def _fwhm(self, level: int) -> float:
        return self.grid.fwhm + (self.anneal_fwhm - self.grid.fwhm) * level / (_LEVELS - 1) if level else self.grid.fwhm

    def _target(self, level: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
        if level not in self._smoothed:
            extra = math.sqrt(max(self._fwhm(level) ** 2 - self.grid.fwhm**2, 0.0))
            target = self.measured if self.measured.ndim == 2 else self.measured[None]
            self._smoothed[level] = smooth_patterns(target, self.grid, extra)
        return self._smoothed[level].to(dtype=dtype, device=device)

    def __call__(self, lattice: torch.Tensor, frac: torch.Tensor, numbers: torch.Tensor, num_atoms: torch.Tensor,
                 progress: float) -> torch.Tensor:
        level = self._level(progress)
        grid = self.grid if level == 0 else self.grid.model_copy(update={"fwhm": self._fwhm(level)})
        # a clean estimate can collapse mid-sampling: such crystals get the worst misfit, no gradient
        volume = torch.linalg.det(lattice.detach()).abs()
        valid = torch.isfinite(lattice.detach()).flatten(1).all(-1) & (volume >= _MIN_VOLUME_PER_SITE * num_atoms)
        stand_in = torch.eye(3, dtype=lattice.dtype, device=lattice.device) * 4.0 * num_atoms.to(lattice.dtype).view(-1, 1, 1) ** (1 / 3)
        safe = torch.where(valid.view(-1, 1, 1), lattice, stand_in)
        frac = torch.where(torch.isfinite(frac), frac, torch.zeros_like(frac))
        simulated = powder_pattern(safe, frac, numbers, num_atoms, grid)
        values = pattern_misfit(simulated, self._target(level, simulated.dtype, simulated.device), kind=self.kind)
        return torch.where(valid, values, torch.ones_like(values))


@dataclass
class XRDSolution:
    """One candidate structure for a measured pattern.

    Attributes: crystal; rwp (at the grid's profile, scale fitted); kl: KL score of its reverse
    path, nats; simulated: (P,) its pattern on the grid (max 1); seed: the sampling seed.
    """

    crystal: Crystal
    rwp: float
    kl: float
    simulated: np.ndarray
    seed: int


def solve_pattern(generator: DiffusionGenerator, pattern: np.ndarray, *, composition: dict[str, int] | None = None,
                  chemical_system: tuple[str, ...] | None = None, num_samples: int = 8,
                  guidance: PosteriorConfig | None = None, embedding: tuple[float, ...] | None = None,
                  embedding_guidance: float = 1.0, grid: PatternGrid = DEFAULT_GRID, anneal_fwhm: float = 1.0,
                  misfit_kind: str = "rwp",
                  refine: RefineConfig | None = DEFAULT_REFINE, seed: int = 0, on_step: Callable[[int, int], None] | None = None) -> tuple[list[XRDSolution], PosteriorSamples]:
    """Posterior samples for ``pattern`` ranked by Rwp (best first), and the raw guided samples.

    Args:
        generator: a teacher checkpoint sampled with ``method="pc"`` (any number of steps).
        pattern: (P,) measured pattern on ``grid`` (see :mod:`crystaloop.multimodal.xrd_io`).
        composition / chemical_system: cell contents (structure prediction) or allowed elements.
        guidance: DPS step sizes (``PosteriorConfig(lattice_step=0, frac_step=0)`` samples the
            prior, or the amortised route alone when ``embedding`` is given).
        embedding: the pattern's multimodal latent for a generator trained with embeddings.
        embedding_guidance: classifier-free guidance scale of that embedding.
        misfit_kind: ``rwp`` (a norm: DPS's normalised step) or ``cosine`` (1 − cos ≈ Rwp²/2:
            a Gaussian-likelihood-like step that grows with the residual).
        refine: local refinement of every sample against the pattern before ranking
            (:func:`crystaloop.data.xrd_refine.refine_to_pattern`); ``None`` ranks raw samples.

    Raises:
        CrystaloopError: neither composition nor chemical system, a bad pattern, or a condition
            the generator cannot take.
    """
    if not composition and not chemical_system:
        raise CrystaloopError("solving a pattern needs a composition (e.g. SrTiO3) or a chemical system (e.g. Sr-Ti-O)")
    condition = Condition(composition=composition, chemical_system=chemical_system, embedding=embedding,
                          guidance_scale=embedding_guidance)
    request = generator.request(num_samples, condition, np.random.default_rng(seed))
    misfit = XRDMisfit(pattern, grid, kind=misfit_kind, anneal_fwhm=anneal_fwhm)
    samples = posterior_sample_batch(generator.model, request, generator.sampler, misfit, guidance, seed=seed, on_step=on_step)
    target = misfit.measured[0] if misfit.measured.ndim == 2 else misfit.measured
    solutions = rank_against_pattern(samples.raw, samples.kl, target.numpy(), grid, refine, seed)
    if len(solutions) < num_samples:
        logger.warning("dropped %d of %d samples with a collapsed or non-finite cell", num_samples - len(solutions), num_samples)
    return solutions, samples


def snapshot_solutions(samples: PosteriorSamples, pattern: np.ndarray, *, grid: PatternGrid = DEFAULT_GRID,
                       refine: RefineConfig | None = DEFAULT_REFINE, seed: int = 0) -> list[XRDSolution]:
    """The early-stopped answers of :func:`solve_pattern`'s chains (``PosteriorConfig.snapshot_step``),
    refined and ranked like the final ones; empty when no snapshot was taken."""
    if samples.snapshot is None:
        return []
    target = np.asarray(pattern, dtype=np.float64)
    return rank_against_pattern(samples.snapshot, samples.kl, target / target.max(), grid, refine, seed)


def rank_against_pattern(raw: RawSamples, kl: np.ndarray, target: np.ndarray, grid: PatternGrid, refine: RefineConfig | None,
                         seed: int) -> list[XRDSolution]:
    """Samples ``raw`` as crystals, refined against ``target`` ((P,), max 1) and ranked by Rwp
    (best first); samples with a collapsed or non-finite cell are dropped. ``kl``: (B,) nats."""
    kept = [(index, crystal) for index, parts in enumerate(raw.split())
            if (crystal := crystal_from_sample(*parts)) is not None]
    if not kept:
        return []
    crystals = [crystal for _, crystal in kept]
    if refine is not None:
        refined = refine_to_pattern(crystals, target, grid, refine)
        crystals, fits = refined.crystals, [float(value) for value in refined.rwp_after]
    else:
        target_tensor = torch.as_tensor(target, dtype=torch.float64)
        fits = [float(rwp(torch.as_tensor(powder_pattern_of(c, grid), dtype=torch.float64), target_tensor)[0]) for c in crystals]
    solutions = [XRDSolution(crystal=crystal, rwp=float(fit), kl=float(kl[index]), simulated=powder_pattern_of(crystal, grid), seed=seed)
                 for (index, _), crystal, fit in zip(kept, crystals, fits, strict=True)]
    return sorted(solutions, key=lambda s: s.rwp)
