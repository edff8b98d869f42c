"""Noise schedules of the three forward processes, and the wrapped normal on the torus.

* Lattice: DDPM with ``ᾱ_t`` from a cosine (Nichol & Dhariwal 2021) or linear β schedule,
  ``L_t = √ᾱ_t L_0 + √(1-ᾱ_t) ε``.
* Fractional coordinates: variance-exploding wrapped normal on the unit torus,
  ``F_t = (F_0 + σ_t ε) mod 1`` with σ_t geometric between ``sigma_min`` and ``sigma_max``
  (the DiffCSP choice, Jiao et al. 2023). The score of the wrapped normal is a sum over images.
* Species: absorbing-state discrete diffusion; a site is masked with probability ``t / T``.

Index convention: ``t = 0`` is clean data, ``t = T`` pure noise; arrays hold T + 1 entries.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
from pathlib import Path

import torch

__all__ = ["NoiseSchedule", "wrapped_normal_score"]

_IMAGES = 10  # images k ∈ [-10, 10] in the wrapped-normal sum; exact to float precision for σ ≤ 1
_POINTS = 4001
logger = logging.getLogger(__name__)


def wrapped_normal_score(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """∂/∂x log p(x) of the wrapped normal with scale ``sigma`` (same shape as x, broadcast).

    ``p(x) = Σ_k N(x + k; 0, σ²)``. Args ``x`` (any shape, torus units), ``sigma`` broadcastable.
    """
    k = torch.arange(-_IMAGES, _IMAGES + 1, dtype=x.dtype, device=x.device)
    shifted = x.unsqueeze(-1) + k  # (..., 2K+1)
    sigma = sigma.unsqueeze(-1)
    log_w = -(shifted**2) / (2 * sigma**2)
    weights = torch.softmax(log_w, dim=-1)
    return (weights * (-shifted / sigma**2)).sum(-1)


def _score_second_moments(sigmas: torch.Tensor, points: int = _POINTS, chunk: int = 64) -> torch.Tensor:
    """(S,) E[score²] under the wrapped normal for each σ (numerical integral over one period).

    Vectorised over σ in chunks (a (chunk, points, 2K+1) float64 block, ~43 MB): building a
    1000-step schedule takes well under a second instead of a loop over steps.
    """
    x = torch.linspace(-0.5, 0.5, points, dtype=torch.float64)
    k = torch.arange(-_IMAGES, _IMAGES + 1, dtype=torch.float64)
    shifted = x.unsqueeze(-1) + k  # (P, 2K+1)
    out = []
    for block in sigmas.to(torch.float64).split(chunk):
        sigma = block.view(-1, 1, 1)
        log_w = -(shifted**2) / (2 * sigma**2)  # (C, P, 2K+1)
        density = torch.exp(log_w).sum(-1) / torch.sqrt(2 * math.pi * sigma[..., 0] ** 2)  # (C, P)
        score = (torch.softmax(log_w, dim=-1) * (-shifted / sigma**2)).sum(-1)  # (C, P)
        out.append(torch.trapezoid(density * score**2, x, dim=-1))
    return torch.cat(out) if out else torch.zeros(0, dtype=torch.float64)


def _schedule_cache() -> Path:
    root = os.environ.get("CRYSTALOOP_CACHE_DIR")
    return (Path(root) if root else Path.home() / ".cache" / "crystaloop") / "schedules"


def _cached_score_second_moments(sigmas: torch.Tensor) -> torch.Tensor:
    """:func:`_score_second_moments`, read from ``$CRYSTALOOP_CACHE_DIR/schedules/`` when this σ
    table was integrated before: the integral is most of a checkpoint load on a busy CPU (seconds),
    the file a few kB. Keyed by the σ values and the integration settings; any unreadable or
    unwritable cache falls back to computing."""
    key = hashlib.sha256(sigmas.to(torch.float64).numpy().tobytes() + f"{_POINTS}:{_IMAGES}".encode()).hexdigest()[:24]
    path = _schedule_cache() / f"score-moments-{key}.pt"
    try:
        cached = torch.load(path, weights_only=True)
        if isinstance(cached, torch.Tensor) and cached.shape == sigmas.shape:
            return cached
    except FileNotFoundError:
        pass
    except Exception as exc:  # noqa: BLE001 - a corrupt cache file only costs the recomputation
        logger.debug("ignoring schedule cache %s: %s", path, exc)
    values = _score_second_moments(sigmas)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        torch.save(values, tmp)
        tmp.replace(path)
    except OSError as exc:
        logger.debug("cannot write schedule cache %s: %s", path, exc)
    return values


class NoiseSchedule(torch.nn.Module):
    """Per-step tables for the lattice (ᾱ), coordinates (σ, E[score²]) and species (mask rate).

    Buffers (all shape (T + 1,), index 0 = clean): ``alpha_bar``, ``sigma``, ``sigma_norm``,
    ``mask_rate``.
    """

    def __init__(self, timesteps: int, lattice_schedule: str, sigma_min: float, sigma_max: float) -> None:
        super().__init__()
        self.timesteps = timesteps
        steps = torch.arange(timesteps + 1, dtype=torch.float64)
        if lattice_schedule == "cosine":
            s = 0.008
            f = torch.cos((steps / timesteps + s) / (1 + s) * math.pi / 2) ** 2
            alpha_bar = f / f[0]
            betas = (1 - alpha_bar[1:] / alpha_bar[:-1]).clamp(max=0.999)
        elif lattice_schedule == "linear":
            betas = torch.linspace(1e-4, 0.02, timesteps, dtype=torch.float64)
        else:
            raise ValueError(f"unknown lattice_schedule {lattice_schedule!r}; allowed: cosine, linear")
        alpha_bar = torch.cat([torch.ones(1, dtype=torch.float64), torch.cumprod(1 - betas, 0)])
        sigma = torch.zeros(timesteps + 1, dtype=torch.float64)
        sigma[1:] = sigma_min * (sigma_max / sigma_min) ** ((steps[1:] - 1) / max(timesteps - 1, 1))
        sigma_norm = torch.ones(timesteps + 1, dtype=torch.float64)
        sigma_norm[1:] = _cached_score_second_moments(sigma[1:])
        self.register_buffer("alpha_bar", alpha_bar.float(), persistent=False)
        self.register_buffer("sigma", sigma.float(), persistent=False)
        self.register_buffer("sigma_norm", sigma_norm.float(), persistent=False)
        self.register_buffer("mask_rate", (steps / timesteps).float(), persistent=False)
