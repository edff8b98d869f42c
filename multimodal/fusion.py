"""Contrastive (CLIP-style) fusion of structure, XRD and text into one normalised latent.

:class:`FusionModel` holds the three branches (:class:`~.structure.StructureEncoder`,
:class:`~.encoders.XRDEncoder`, :class:`~.text.LayerMixHead` over frozen MiniLM layer features)
and one learned temperature. Every branch ends in an L2 normalisation, so embeddings of all
modalities are unit vectors of width ``latent_dim`` and cosine similarity is a dot product.

:func:`clip_loss` is the symmetric InfoNCE loss of Radford et al. (2021) summed over the three
modality pairs: in a batch of B crystals, row i of one modality must pick row i of the other
among B.

Checkpoints are self-describing dicts (format ``FORMAT``): constructor config, pattern grid,
input normalisation, text model version, training-data hash, metrics and weights, saved with
:func:`save_checkpoint` and read with ``torch.load(weights_only=True)`` by :func:`load_checkpoint`.
"""

from __future__ import annotations

import hashlib
import logging
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from crystaloop.data.crystal import Crystal
from crystaloop.data.errors import CrystaloopError, describe_validation_error
from crystaloop.data.xrd_grid import DEFAULT_GRID, PatternGrid
from crystaloop.multimodal.encoders import MODALITIES, Modality, ModalityEncoder, XRDEncoder, XRDEncoderConfig
from crystaloop.multimodal.structure import StructureEncoder, StructureEncoderConfig, featurise
from crystaloop.multimodal.text import LayerMixHead, check_texts, minilm_version

__all__ = ["FORMAT", "FusionConfig", "FusionModel", "clip_loss", "save_checkpoint", "load_checkpoint"]

logger = logging.getLogger(__name__)

FORMAT = "crystaloop.multimodal.fusion/1"
_MAX_LOGIT_SCALE = math.log(100.0)


class FusionConfig(BaseModel):
    """Everything needed to rebuild a :class:`FusionModel` (stored in its checkpoint)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    latent_dim: int = Field(64, ge=2, description="width of the shared latent")
    structure: StructureEncoderConfig = StructureEncoderConfig()
    xrd: XRDEncoderConfig = XRDEncoderConfig()
    text_hidden: int = Field(256, ge=2, description="hidden width of the text projection head")
    grid: PatternGrid = DEFAULT_GRID
    initial_temperature: float = Field(0.07, gt=0.0, lt=1.0)


class FusionModel(nn.Module):
    """Three encoders into one unit-norm latent; ``embed(modality, items)`` for raw inputs."""

    def __init__(self, config: FusionConfig | None = None) -> None:
        super().__init__()
        self.config = config or FusionConfig()
        d = self.config.latent_dim
        self.structure = StructureEncoder(out_dim=d, config=self.config.structure)
        self.xrd = XRDEncoder(out_dim=d, config=self.config.xrd)
        self.text = LayerMixHead(out_dim=d, hidden=self.config.text_hidden)
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1.0 / self.config.initial_temperature)))
        self._minilm: Any = None  # loaded on the first raw-text embed
        self.metadata: dict[str, Any] = {}

    @property
    def latent_dim(self) -> int:
        return self.config.latent_dim

    # -------------------------------------------------------------- branch forwards (normalised)
    def encode_structures(self, batch: Any) -> torch.Tensor:
        """(B, d) unit vectors from a featurised batch (:func:`~.structure.featurise`)."""
        return nn.functional.normalize(self.structure(batch), dim=-1)

    def encode_patterns(self, patterns: torch.Tensor) -> torch.Tensor:
        """(B, d) unit vectors from (B, P) patterns on the model's grid."""
        return nn.functional.normalize(self.xrd(patterns), dim=-1)

    def encode_text_features(self, features: torch.Tensor) -> torch.Tensor:
        """(B, d) unit vectors from (B, 7, 384) MiniLM layer features."""
        return nn.functional.normalize(self.text(features), dim=-1)

    def temperature_scale(self) -> torch.Tensor:
        """exp(logit_scale), clamped at 100 as in CLIP."""
        return self.logit_scale.clamp(max=_MAX_LOGIT_SCALE).exp()

    # -------------------------------------------------------------- raw inputs → numpy
    @torch.no_grad()
    def embed(self, modality: Modality, items: Sequence[Any], *, batch_size: int = 256) -> np.ndarray:
        """(n, d) float32 unit vectors of crystals, patterns (n, P) or texts.

        Raises:
            CrystaloopError: unknown modality, an empty text, a pattern not on the model's grid,
                or an item that is not a Crystal (for ``"structure"``).
        """
        if modality not in MODALITIES:
            raise CrystaloopError(f"unknown modality {modality!r}; allowed: {', '.join(MODALITIES)}")
        was_training = self.training
        self.eval()
        try:
            if modality == "structure":
                return self._embed_structures(items, batch_size)
            if modality == "xrd":
                return self._embed_patterns(items, batch_size)
            return self._embed_texts(items, batch_size)
        finally:
            self.train(was_training)

    def _dtype(self) -> torch.dtype:
        return self.logit_scale.dtype

    def _embed_structures(self, crystals: Sequence[Any], batch_size: int) -> np.ndarray:
        for i, crystal in enumerate(crystals):
            if not isinstance(crystal, Crystal):
                raise CrystaloopError(f"structure item {i} is a {type(crystal).__name__}, expected a Crystal")
        out = [
            self.encode_structures(featurise(crystals[s : s + batch_size], self.config.structure)).float().numpy()
            for s in range(0, len(crystals), batch_size)
        ]
        return np.concatenate(out) if out else np.zeros((0, self.latent_dim), dtype=np.float32)

    def _embed_patterns(self, patterns: Sequence[Any], batch_size: int) -> np.ndarray:
        n_points = self.config.grid.n_points
        try:
            array = np.asarray(patterns, dtype=np.float64)
        except ValueError as exc:
            raise CrystaloopError(f"patterns must all have {n_points} points on the model's 2θ grid: {exc}") from exc
        if array.ndim == 1:
            array = array[None]
        if array.ndim != 2 or array.shape[1] != n_points:
            grid = self.config.grid
            raise CrystaloopError(
                f"patterns of shape {array.shape} are not on the model's grid: expected (n, {n_points}) points, "
                f"2θ {grid.two_theta_min:g}–{grid.two_theta_max:g}° at {grid.wavelength} Å; "
                "read measured files with crystaloop.multimodal.xrd_io.read_pattern"
            )
        if not np.isfinite(array).all():
            raise CrystaloopError("patterns contain NaN or infinite intensities")
        tensor = torch.as_tensor(array, dtype=self._dtype())
        out = [
            self.encode_patterns(tensor[s : s + batch_size]).float().numpy() for s in range(0, len(tensor), batch_size)
        ]
        return np.concatenate(out) if out else np.zeros((0, self.latent_dim), dtype=np.float32)

    def _embed_texts(self, texts: Sequence[str], batch_size: int) -> np.ndarray:
        texts = check_texts(texts)
        if self._minilm is None:
            from crystaloop.multimodal.text import MiniLMLayerFeatures

            self._minilm = MiniLMLayerFeatures(batch_size=batch_size)
        features = torch.as_tensor(self._minilm(texts), dtype=self._dtype())
        return self.encode_text_features(features).float().numpy()

    def encoder(self, modality: Modality) -> ModalityEncoder:
        """This model's ``modality`` branch behind the :class:`~.encoders.Encoder` port."""
        return ModalityEncoder(self, modality)


def clip_loss(embeddings: dict[str, torch.Tensor], scale: torch.Tensor) -> torch.Tensor:
    """Mean symmetric InfoNCE over every pair of the given modalities ((B, d) unit vectors each)."""
    names = sorted(embeddings)
    losses = []
    for a_index, a in enumerate(names):
        for b in names[a_index + 1 :]:
            logits = scale * embeddings[a] @ embeddings[b].T
            target = torch.arange(logits.shape[0])
            losses.append(
                0.5 * (nn.functional.cross_entropy(logits, target) + nn.functional.cross_entropy(logits.T, target))
            )
    if not losses:
        raise ValueError(f"clip_loss needs at least two modalities, got {names}")
    return torch.stack(losses).mean()


def save_checkpoint(model: FusionModel, path: str | Path, *, extra: dict[str, Any] | None = None) -> Path:
    """Write a self-describing checkpoint (config, grid, normalisation, text model, metadata, weights)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "format": FORMAT,
        "config": model.config.model_dump(mode="json"),
        "normalisation": {
            "xrd": "pattern on the config's grid scaled to max 1; the encoder takes sqrt(intensity)",
            "structure": "radius graph of the config's cutoff; element descriptors standardised over Z=1..118",
            "text": "mean over tokens of each MiniLM hidden state (embeddings + 6 layers), frozen",
        },
        "text_model": minilm_version(),
        "metadata": dict(model.metadata),
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        **(extra or {}),
    }
    partial = path.with_name(path.name + ".partial")
    torch.save(payload, partial)
    partial.replace(path)
    return path


def load_checkpoint(path: str | Path) -> tuple[FusionModel, dict[str, Any]]:
    """(model in eval mode, the checkpoint's payload without weights) from :func:`save_checkpoint`.

    The payload gains ``checkpoint_hash``, the sha256 of the file (names the model's embeddings).

    Raises:
        CrystaloopError: missing file, another format, or a config this code cannot build.
    """
    path = Path(path)
    if not path.is_file():
        raise CrystaloopError(f"no multimodal checkpoint at {path}")
    payload = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        found = payload.get("format") if isinstance(payload, dict) else type(payload).__name__
        raise CrystaloopError(f"{path} is not a multimodal fusion checkpoint (format {found!r}, expected {FORMAT!r})")
    try:
        config = FusionConfig.model_validate(payload["config"])
    except Exception as exc:  # pydantic.ValidationError
        raise CrystaloopError(f"{path}: bad config: {describe_validation_error(exc)}") from exc
    model = FusionModel(config)
    model.load_state_dict(payload["state_dict"])
    model.metadata = dict(payload.get("metadata", {}))
    model.eval()
    info = {k: v for k, v in payload.items() if k != "state_dict"}
    info["checkpoint_hash"] = hashlib.sha256(path.read_bytes()).hexdigest()
    return model, info
