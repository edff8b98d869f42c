"""The XRD encoder and the ``Encoder`` port (``embed(items) -> ndarray (n×d)``) for each modality.

:class:`XRDEncoder` is a 1-D CNN over a pattern on the shared grid (B, P) → (B, out_dim): the
input is ``√I`` (weak peaks count), five convolution + max-pool stages widen the receptive
field to ≈ 10° 2θ, an adaptive average pool keeps ``position_bins`` positions along 2θ (the
absolute angle fixes the d-spacings, so it must not be pooled away) and an MLP maps the
flattened map to the latent.

:class:`Encoder` is the port other packages talk to; :class:`ModalityEncoder` adapts one branch
of a trained :class:`~crystaloop.multimodal.fusion.FusionModel` to it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Literal, Protocol, runtime_checkable

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from crystaloop.data.xrd_grid import N_POINTS

if TYPE_CHECKING:
    from crystaloop.multimodal.fusion import FusionModel

__all__ = ["Modality", "MODALITIES", "XRDEncoderConfig", "XRDEncoder", "Encoder", "ModalityEncoder"]

Modality = Literal["structure", "xrd", "text"]
MODALITIES: tuple[Modality, ...] = ("structure", "xrd", "text")


class XRDEncoderConfig(BaseModel):
    """Widths of the 1-D CNN (travels in the checkpoint)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    channels: tuple[int, ...] = Field((16, 32, 48, 64, 64), min_length=1)
    kernel_size: int = Field(7, ge=3)
    position_bins: int = Field(32, ge=1, description="positions along 2θ kept after the convolutions")
    hidden: int = Field(256, ge=2)
    n_points: int = Field(N_POINTS, ge=16, description="pattern length the encoder accepts")


class XRDEncoder(nn.Module):
    """(B, P) patterns on the shared grid (max 1) → (B, out_dim) latent (not normalised)."""

    def __init__(self, *, out_dim: int, config: XRDEncoderConfig | None = None) -> None:
        super().__init__()
        self.config = config or XRDEncoderConfig()
        c = self.config
        stages: list[nn.Module] = []
        width = 1
        for channels in c.channels:
            stages += [
                nn.Conv1d(width, channels, c.kernel_size, padding=c.kernel_size // 2),
                nn.BatchNorm1d(channels),
                nn.GELU(),
                nn.MaxPool1d(2),
            ]
            width = channels
        self.convolutions = nn.Sequential(*stages, nn.AdaptiveAvgPool1d(c.position_bins))
        self.head = nn.Sequential(
            nn.Flatten(), nn.Linear(width * c.position_bins, c.hidden), nn.GELU(), nn.Linear(c.hidden, out_dim)
        )

    def forward(self, patterns: torch.Tensor) -> torch.Tensor:
        if patterns.ndim != 2 or patterns.shape[1] != self.config.n_points:
            raise ValueError(f"patterns must have shape (B, {self.config.n_points}), got {tuple(patterns.shape)}")
        x = torch.sqrt(patterns.clamp(min=0.0))[:, None, :]
        return self.head(self.convolutions(x))


@runtime_checkable
class Encoder(Protocol):
    """Maps items of one modality to rows of the shared latent: ``embed(items) -> (n, d)`` unit vectors."""

    modality: Modality
    dim: int

    def embed(self, items: Sequence[Any]) -> np.ndarray:
        """(n, d) float32 L2-normalised embeddings of ``items``.

        Raises:
            crystaloop.data.errors.CrystaloopError: an item of the wrong kind (empty text,
                pattern on another grid, malformed crystal), naming it.
        """
        ...


class ModalityEncoder:
    """One branch of a trained fusion model behind the :class:`Encoder` port.

    ``items``: :class:`~crystaloop.data.crystal.Crystal` for ``"structure"``, (P,) patterns on the
    shared grid for ``"xrd"`` (an (n, P) array works too), strings for ``"text"``.
    """

    def __init__(self, model: FusionModel, modality: Modality, *, batch_size: int = 256) -> None:
        if modality not in MODALITIES:
            from crystaloop.data.errors import UnknownComponentError

            raise UnknownComponentError("modality", modality, MODALITIES)
        self.model = model
        self.modality = modality
        self.dim = model.latent_dim
        self.batch_size = batch_size

    def embed(self, items: Sequence[Any]) -> np.ndarray:
        return self.model.embed(self.modality, items, batch_size=self.batch_size)
