"""Configuration of the crystal diffusion model, its training and its samplers.

One pydantic model per concern, composed by :class:`GeneratorConfig`; unknown keys are rejected.
Defaults are sized to train on two CPU cores in under an hour on perov_5 / carbon_24; MP-20 on a
GPU needs only a wider/deeper network and more epochs (``hidden=256, layers=6, epochs=1000``).
"""

from __future__ import annotations

import hashlib
import json
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from crystaloop.generator.base import Generator, GeneratorSettings

__all__ = ["NetworkConfig", "DiffusionConfig", "TrainConfig", "SamplerConfig", "GeneratorConfig", "DiffusionChoice"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class NetworkConfig(_Strict):
    """The periodic message-passing denoiser (fully connected within the cell).

    Attributes:
        hidden: width of node and edge features.
        layers: message-passing layers.
        fourier_frequencies: integer frequencies k = 1..K of the periodic edge features
            sin/cos(2π k Δf) on fractional differences.
        time_features: width of the sinusoidal time embedding.
        embedding_dim: length of the external (multimodal) conditioning vector; 0 disables it.
        properties: scalar properties the model can be conditioned on, e.g. ``["heat_ref"]``.
    """

    hidden: int = Field(128, gt=0)
    layers: int = Field(4, gt=0)
    fourier_frequencies: int = Field(16, gt=0)
    time_features: int = Field(64, gt=0)
    embedding_dim: int = Field(0, ge=0)
    properties: list[str] = Field(default_factory=list)


class DiffusionConfig(_Strict):
    """The forward processes of the three parts of a crystal.

    Attributes:
        timesteps: number of discrete diffusion steps T (the 1000-step protocol of DiffCSP).
        lattice_schedule: β schedule of the lattice DDPM.
        sigma_min, sigma_max: wrapped-normal noise range on fractional coordinates (torus units).
        csp_fraction: share of training examples whose species stay clean (structure-prediction
            mode); the rest have species masked (absorbing discrete diffusion, de novo mode).
            1.0 trains a CSP-only model, 0.0 a de novo-only model.
        condition_dropout: probability that a training example's conditions are replaced by the
            learned "no condition" token (classifier-free guidance needs this > 0).
    """

    timesteps: int = Field(1000, gt=1)
    lattice_schedule: Literal["cosine", "linear"] = "cosine"
    sigma_min: float = Field(0.005, gt=0)
    sigma_max: float = Field(0.5, gt=0)
    csp_fraction: float = Field(0.5, ge=0.0, le=1.0)
    condition_dropout: float = Field(0.2, ge=0.0, le=1.0)

    @model_validator(mode="after")
    def _ordered(self) -> DiffusionConfig:
        if self.sigma_min >= self.sigma_max:
            raise ValueError(f"sigma_min ({self.sigma_min}) must be below sigma_max ({self.sigma_max})")
        return self


class TrainConfig(_Strict):
    """Optimisation. Epochs are passes over the training split."""

    epochs: int = Field(1000, gt=0)
    batch_size: int = Field(256, gt=0)
    learning_rate: float = Field(1e-3, gt=0)
    weight_decay: float = Field(0.0, ge=0)
    grad_clip: float = Field(1.0, gt=0)
    ema_decay: float = Field(0.999, ge=0.0, lt=1.0)
    lattice_weight: float = Field(1.0, ge=0)
    coord_weight: float = Field(1.0, ge=0)
    species_weight: float = Field(1.0, ge=0)
    checkpoint_every: int = Field(25, gt=0, description="epochs between resumable checkpoints")
    seed: int = 0
    device: str = "cpu"
    threads: int = Field(1, gt=0)


class SamplerConfig(_Strict):
    """How to run the reverse process.

    Attributes:
        steps: number of reverse steps (≤ T; fewer steps use an evenly strided subset).
        method: ``pc`` = ancestral predictor plus a Langevin corrector on coordinates (the
            1000-step protocol); ``ddim`` = deterministic strided steps (fast, fewer steps);
            ``consistency`` = a distilled consistency model in ``steps`` (1, 2, 4) network calls.
        corrector_step: Langevin step scale on coordinates (DiffCSP's step_lr).
        batch_size: crystals per network call.
        canonical_frame: evaluate the network in the canonical lattice basis at every step
            (exact lattice-basis-change equivariance; ~1 ms per crystal per step on a CPU).
        midpoints: ``consistency`` only: the steps − 1 intermediate teacher steps (descending,
            in (0, T)) at which a multistep consistency sampler re-noises; ``None`` = the
            distilled checkpoint's validated choice (:mod:`crystaloop.generator.consistency.sampling`).
    """

    steps: int = Field(1000, gt=0)
    method: Literal["pc", "ddim", "consistency"] = "pc"
    corrector_step: float = Field(1e-5, ge=0)
    batch_size: int = Field(512, gt=0)
    canonical_frame: bool = False
    midpoints: list[int] | None = None


class GeneratorConfig(_Strict):
    """Everything that defines a trained generator (stored inside its checkpoint)."""

    dataset: str = "perov_5/train"
    network: NetworkConfig = Field(default_factory=NetworkConfig)
    diffusion: DiffusionConfig = Field(default_factory=DiffusionConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    max_atoms: int = Field(64, gt=0, description="largest cell the model accepts (sites)")

    def hash(self) -> str:
        """Stable short hash of the configuration (goes into provenance)."""
        text = json.dumps(self.model_dump(mode="json"), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


class DiffusionChoice(GeneratorSettings):
    """A campaign's trained ``diffusion`` generator (``generator: {kind: diffusion, checkpoint: perov_5}``).

    Attributes:
        checkpoint: a shipped generator name (``perov_5``, ``carbon_24``) or a checkpoint path;
            required to build (a campaign without a generator section fails there, naming it).
        steps, method: sampler settings (e.g. 100 ``ddim`` steps, or 2 ``consistency`` steps with
            a distilled checkpoint); ``None`` → the checkpoint's sampler default.
    """

    kind: Literal["diffusion"] = "diffusion"
    checkpoint: str | None = None
    steps: int | None = Field(None, gt=0, description="reverse steps; default: the checkpoint's sampler default")
    method: Literal["pc", "ddim", "consistency"] | None = None

    def build(self) -> Generator:
        import importlib

        from crystaloop.data.errors import CrystaloopError

        try:
            module = importlib.import_module("crystaloop.generator.diffusion.generator")
        except ImportError as exc:
            raise CrystaloopError(f"the diffusion generator is not available in this build ({exc})") from None
        if not self.checkpoint:
            raise CrystaloopError("generator kind 'diffusion' needs checkpoint: <shipped name or path to a trained model>")
        from crystaloop.generator.shipped import resolve_generator_checkpoint

        path = resolve_generator_checkpoint(self.checkpoint)
        settings = {k: v for k, v in {"steps": self.steps, "method": self.method}.items() if v is not None}
        sampler = SamplerConfig(**settings) if settings else None  # type: ignore[arg-type]
        generator: Generator = module.DiffusionGenerator.from_checkpoint(path, sampler)
        return generator
