"""Conditions from a pattern or a crystal carry the shared-latent embedding the generator reads."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from crystaloop.data.errors import CrystaloopError
from crystaloop.data.testing import random_crystal
from crystaloop.multimodal.conditioning import embedding_condition, structure_conditions
from crystaloop.multimodal.fusion import FusionConfig, FusionModel
from crystaloop.multimodal.xrd import simulate_pattern


def test_conditions_hold_unit_embeddings_of_the_chosen_modality(tiny_config: FusionConfig) -> None:
    torch.manual_seed(0)
    model = FusionModel(tiny_config).eval()
    crystal = random_crystal(np.random.default_rng(0), n_sites=4)
    from_pattern = embedding_condition(model, pattern=simulate_pattern(crystal), composition=crystal.composition)
    vector = np.array(from_pattern.embedding)
    assert vector.shape == (8,) and np.linalg.norm(vector) == pytest.approx(1.0, abs=1e-5)
    assert np.allclose(vector, model.embed("xrd", simulate_pattern(crystal)[None])[0])
    assert from_pattern.composition == crystal.composition
    [from_structure] = structure_conditions(model, [crystal])
    assert np.allclose(from_structure.embedding, embedding_condition(model, crystal=crystal).embedding, atol=1e-6)
    with pytest.raises(CrystaloopError, match="exactly one of text, pattern, crystal"):
        embedding_condition(model, crystal=crystal, text="cubic")
