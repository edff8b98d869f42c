"""Shared fixtures of the multimodal tests: a tiny fusion configuration (width 8, one or two layers)."""

from __future__ import annotations

import pytest

from crystaloop.multimodal.encoders import XRDEncoderConfig
from crystaloop.multimodal.fusion import FusionConfig
from crystaloop.multimodal.structure import StructureEncoderConfig


@pytest.fixture
def tiny_config() -> FusionConfig:
    """Small enough to train for a few steps in a second; same architecture as the shipped model."""
    return FusionConfig(
        latent_dim=8,
        structure=StructureEncoderConfig(hidden=8, n_layers=2, n_rbf=8, cutoff=4.0, max_neighbors=12),
        xrd=XRDEncoderConfig(channels=(4, 8), hidden=16, position_bins=8),
        text_hidden=16,
    )
