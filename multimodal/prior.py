"""A prior in latent space (unCLIP-style): text or XRD latent → a distribution over structure latents.

The fusion model (:mod:`.fusion`) puts a crystal's structure, powder pattern and description near
one another in one unit-norm latent, but only near: a description or a measured pattern fits many
structures, and its latent lies off the structure latents the generator was mostly trained on.
As in DALL·E 2 (Ramesh et al., 2022, "Hierarchical text-conditional image generation with CLIP
latents"), a *prior* maps the query latent to a distribution over structure latents, and the
latent-conditioned generator then decodes each sample: what is meant (the prior) apart from how it
is built (the generator), with diverse samples for one vague query.

:class:`LatentPrior` is a conditional flow-matching model (rectified flow; Lipman et al., 2023;
Liu et al., 2023): with x₀ ~ N(0, I), x₁ a target latent and t ~ U(0, 1), the MLP learns the
velocity x₁ − x₀ at x_t = (1 − t) x₀ + t x₁, given the condition latent, which modality it came
from (:data:`CONDITIONS`) and t. :meth:`LatentPrior.sample` integrates dx/dt = v from t = 0 to 1
with Heun steps; with ``PriorConfig.unit_sphere`` the targets are unit latents scaled by √d (unit
variance per coordinate) and samples are projected back onto the unit sphere. Conditions are
dropped with probability ``condition_dropout`` in training, so sampling can use classifier-free
guidance (``guidance`` > 1 sharpens, 1 is the plain conditional).

Checkpoints (format :data:`FORMAT`): config, the fusion checkpoint whose latents the prior models
(sha256), training-data hash, versions, metrics and weights; :func:`save_prior` /
:func:`load_prior` (``weights_only=True``). Training: :mod:`.prior_training`.
"""

from __future__ import annotations

import hashlib
import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from crystaloop.data.errors import CrystaloopError, describe_validation_error

__all__ = ["FORMAT", "CONDITIONS", "PriorConfig", "LatentPrior", "save_prior", "load_prior"]

FORMAT = "crystaloop.multimodal.prior/1"
CONDITIONS = ("text", "xrd")
"""Modalities a prior can be conditioned on (index i is modality token i; token len() = no condition)."""


class PriorConfig(BaseModel):
    """Everything needed to rebuild a :class:`LatentPrior` (stored in its checkpoint)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    latent_dim: int = Field(64, ge=1, description="width of target and condition latents")
    hidden: int = Field(256, ge=4, description="width of the residual MLP")
    blocks: int = Field(4, ge=1, description="residual blocks")
    time_features: int = Field(32, ge=2, description="sinusoidal features of t (even)")
    condition_dropout: float = Field(0.1, ge=0.0, lt=1.0, description="training share with the condition dropped")
    unit_sphere: bool = Field(True, description="latents are unit vectors: scale by √d in, project onto the sphere out")


class _Block(nn.Module):
    def __init__(self, width: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(width)
        self.net = nn.Sequential(nn.Linear(width, width), nn.SiLU(), nn.Linear(width, width))

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return h + self.net(self.norm(h))


class LatentPrior(nn.Module):
    """Velocity field v(x_t, t | condition, modality) over (B, d) latents; :meth:`sample` draws latents."""

    def __init__(self, config: PriorConfig | None = None) -> None:
        super().__init__()
        self.config = config or PriorConfig()
        d, width = self.config.latent_dim, self.config.hidden
        self.modality = nn.Embedding(len(CONDITIONS) + 1, width)  # the last token: no condition
        self.inp = nn.Linear(2 * d + self.config.time_features, width)
        self.blocks = nn.ModuleList(_Block(width) for _ in range(self.config.blocks))
        self.out = nn.Sequential(nn.LayerNorm(width), nn.Linear(width, d))
        self.metadata: dict[str, Any] = {}

    @property
    def scale(self) -> float:
        """Factor from stored latents to the model's space (√d on the unit sphere, else 1)."""
        return math.sqrt(self.config.latent_dim) if self.config.unit_sphere else 1.0

    def _time(self, t: torch.Tensor) -> torch.Tensor:
        half = self.config.time_features // 2
        frequencies = torch.exp(torch.arange(half, dtype=t.dtype) * (-math.log(1000.0) / max(half - 1, 1)))
        angles = 1000.0 * t[:, None] * frequencies[None]
        return torch.cat([angles.sin(), angles.cos()], dim=-1)

    def forward(self, x: torch.Tensor, t: torch.Tensor, condition: torch.Tensor, modality: torch.Tensor) -> torch.Tensor:
        """(B, d) velocity at (B, d) points ``x`` and (B,) times ``t`` in [0, 1], for (B, d)
        conditions (model space) of (B,) modality tokens (``len(CONDITIONS)`` = none, its condition ignored)."""
        none = modality == len(CONDITIONS)
        condition = torch.where(none[:, None], torch.zeros_like(condition), condition)
        h = self.inp(torch.cat([x, condition, self._time(t)], dim=-1)) + self.modality(modality)
        for block in self.blocks:
            h = block(h)
        return self.out(h)

    def loss(self, target: torch.Tensor, condition: torch.Tensor, modality: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Flow-matching loss of (B, d) stored-space targets given (B, d) stored-space conditions;
        conditions are dropped at ``condition_dropout`` (their modality becomes none)."""
        x1, c = target * self.scale, condition * self.scale
        x0 = torch.randn(x1.shape, generator=generator, dtype=x1.dtype)
        t = torch.rand(x1.shape[0], generator=generator, dtype=x1.dtype)
        dropped = torch.rand(x1.shape[0], generator=generator) < self.config.condition_dropout
        modality = torch.where(dropped, torch.full_like(modality, len(CONDITIONS)), modality)
        xt = (1 - t[:, None]) * x0 + t[:, None] * x1
        return ((self(xt, t, c, modality) - (x1 - x0)) ** 2).mean()

    def sample(self, condition: np.ndarray, modality: str, n: int, *, seed: int, steps: int = 32,
               guidance: float = 1.0) -> np.ndarray:
        """``n`` latents (n, d) float32 drawn given one (d,) condition latent of ``modality``.

        Deterministic for a given ``seed``. Heun integration in ``steps`` steps (2 network calls
        each, twice that with guidance ≠ 1); on the unit sphere the samples are unit vectors.

        Raises:
            CrystaloopError: an unknown modality, a condition of the wrong width, n or steps < 1.
        """
        if n < 1:
            raise CrystaloopError(f"prior sampling needs n ≥ 1, got n={n}")
        vector = np.asarray(condition, dtype=np.float32).reshape(-1)
        return self.sample_each(np.tile(vector, (n, 1)), modality, seed=seed, steps=steps, guidance=guidance)

    @torch.no_grad()
    def sample_each(self, conditions: np.ndarray, modality: str, *, seed: int, steps: int = 32,
                    guidance: float = 1.0) -> np.ndarray:
        """One latent per row of (B, d) ``conditions`` of ``modality``: (B, d) float32 (see :meth:`sample`)."""
        if modality not in CONDITIONS:
            raise CrystaloopError(f"a prior is conditioned on one of {', '.join(CONDITIONS)}, not {modality!r}")
        array = np.asarray(conditions, dtype=np.float32)
        if array.ndim != 2 or array.shape[1] != self.config.latent_dim or not np.isfinite(array).all():
            raise CrystaloopError(f"prior conditions must be rows of {self.config.latent_dim} finite numbers, "
                                  f"got shape {np.shape(conditions)}")
        if steps < 1:
            raise CrystaloopError(f"prior sampling needs steps ≥ 1, got {steps}")
        n = array.shape[0]
        was_training = self.training
        self.eval()
        try:
            dtype = self.inp.weight.dtype
            c = torch.as_tensor(array, dtype=dtype) * self.scale
            token = torch.full((n,), CONDITIONS.index(modality), dtype=torch.long)
            none = torch.full((n,), len(CONDITIONS), dtype=torch.long)

            def velocity(x: torch.Tensor, t: float) -> torch.Tensor:
                times = torch.full((n,), t, dtype=dtype)
                v = self(x, times, c, token)
                if guidance == 1.0:
                    return v
                free = self(x, times, c, none)
                return free + guidance * (v - free)

            x = torch.randn((n, self.config.latent_dim), generator=torch.Generator().manual_seed(seed), dtype=dtype)
            dt = 1.0 / steps
            for k in range(steps):
                t = k * dt
                v0 = velocity(x, t)
                x = x + 0.5 * dt * (v0 + velocity(x + dt * v0, t + dt))
            out = x / self.scale
            if self.config.unit_sphere:
                out = nn.functional.normalize(out, dim=-1)
            return out.float().numpy()
        finally:
            self.train(was_training)


def save_prior(prior: LatentPrior, path: str | Path) -> Path:
    """Write a self-describing checkpoint: format, config, versions, metadata (fusion checkpoint,
    data hash, training settings, metrics) and weights."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "format": FORMAT,
        "config": prior.config.model_dump(mode="json"),
        "conditions": list(CONDITIONS),
        "versions": {"torch": str(torch.__version__), "numpy": str(np.__version__)},
        "metadata": dict(prior.metadata),
        "state_dict": {k: v.detach().cpu() for k, v in prior.state_dict().items()},
    }
    partial = path.with_name(path.name + ".partial")
    torch.save(payload, partial)
    partial.replace(path)
    return path


def load_prior(path: str | Path) -> tuple[LatentPrior, dict[str, Any]]:
    """(prior in eval mode, the checkpoint's payload without weights, plus ``checkpoint_hash``).

    Raises:
        CrystaloopError: a missing file, another format, or a config this code cannot build.
    """
    path = Path(path)
    if not path.is_file():
        raise CrystaloopError(f"no latent prior checkpoint at {path}")
    payload = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        found = payload.get("format") if isinstance(payload, dict) else type(payload).__name__
        raise CrystaloopError(f"{path} is not a latent prior checkpoint (format {found!r}, expected {FORMAT!r})")
    if list(payload.get("conditions", ())) != list(CONDITIONS):
        raise CrystaloopError(f"{path}: prior conditions {payload.get('conditions')} differ from this code's {list(CONDITIONS)}")
    try:
        config = PriorConfig.model_validate(payload["config"])
    except Exception as exc:  # pydantic.ValidationError
        raise CrystaloopError(f"{path}: bad prior config: {describe_validation_error(exc)}") from exc
    prior = LatentPrior(config)
    prior.load_state_dict(payload["state_dict"])
    prior.metadata = dict(payload.get("metadata", {}))
    prior.eval()
    info = {k: v for k, v in payload.items() if k != "state_dict"}
    info["checkpoint_hash"] = hashlib.sha256(path.read_bytes()).hexdigest()
    return prior, info
