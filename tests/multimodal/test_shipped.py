"""The shipped fusion checkpoint: small, self-describing, and it retrieves far better than chance."""

from __future__ import annotations

import numpy as np
import pytest

from crystaloop.data.datasets import load_dataset
from crystaloop.multimodal.describe import describe
from crystaloop.multimodal.fusion import load_checkpoint
from crystaloop.multimodal.pretrained import shipped_checkpoint
from crystaloop.multimodal.retrieval import random_recall, recall_at_k
from crystaloop.multimodal.xrd import augment_patterns, simulate_patterns


@pytest.fixture(scope="module")
def shipped():  # noqa: ANN201
    return load_checkpoint(shipped_checkpoint())


def test_checkpoint_is_small_and_describes_itself(shipped) -> None:  # noqa: ANN001
    _, info = shipped
    assert shipped_checkpoint().stat().st_size <= 10 * 2**20
    metrics = info["metadata"]["metrics"]["val"]
    assert set(metrics) == {"perov_5/val", "carbon_24/val"}
    assert info["metadata"]["train_config"]["train"] == ["perov_5/train", "carbon_24/train"]
    for split in metrics.values():
        assert split["xrd_to_structure"]["recall@10"] > 3 * split["random"]["recall@10"]


@pytest.mark.parametrize("split", ["perov_5/val", "carbon_24/val"])
def test_measured_like_patterns_find_their_structure(shipped, split: str) -> None:  # noqa: ANN001
    model, _ = shipped
    crystals = load_dataset(split).crystals[:100]
    structures = model.embed("structure", crystals)
    noisy = augment_patterns(simulate_patterns(crystals), np.random.default_rng(0))
    recall = recall_at_k(model.embed("xrd", noisy), structures)
    assert recall["recall@5"] > 3 * random_recall(100)["recall@5"]


@pytest.mark.slow
def test_descriptions_find_their_perovskite(shipped) -> None:  # noqa: ANN001
    model, _ = shipped
    crystals = load_dataset("perov_5/val").crystals[:40]
    texts = model.embed("text", [describe(c) for c in crystals])
    recall = recall_at_k(texts, model.embed("structure", crystals))
    assert recall["recall@5"] > 3 * random_recall(40)["recall@5"]
