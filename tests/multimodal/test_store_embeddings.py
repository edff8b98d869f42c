"""Candidate embeddings in the store (revision 0003): write, overwrite, read back, refuse bad input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from crystaloop.data.errors import StoreError
from crystaloop.data.store import CandidateStore
from crystaloop.data.store.testing import make_candidates


@pytest.fixture
def store(tmp_path: Path):  # noqa: ANN201
    with CandidateStore(f"sqlite:///{tmp_path / 'store.db'}") as opened:
        yield opened


def test_round_trip_overwrite_and_models(store: CandidateStore) -> None:
    candidates = make_candidates(5, seed=1)
    ids = store.add_many(candidates).ids
    vectors = np.random.default_rng(0).standard_normal((5, 8)).astype(np.float32)
    assert store.put_embeddings("m1", ids, vectors) == 5
    got_ids, got = store.load_embeddings("m1")
    order = np.argsort(ids)
    assert got_ids == sorted(ids) and np.array_equal(got, vectors[order])  # bit-exact float32
    store.put_embeddings("m1", ids[:1], np.ones((1, 8)))
    store.put_embeddings("m2", ids[:2], np.zeros((2, 3)))
    assert store.embedding_models() == {"m1": 5, "m2": 2}
    only_ids, only = store.load_embeddings("m1", [ids[0], "absent"])
    assert only_ids == [ids[0]] and np.array_equal(only[0], np.ones(8, dtype=np.float32))
    assert sorted(store.ids_without_embedding("m2")) == sorted(ids[2:])
    assert store.load_embeddings("unknown")[1].shape == (0, 0)


def test_bad_embeddings_are_refused_and_nothing_is_written(store: CandidateStore) -> None:
    ids = store.add_many(make_candidates(3, seed=2)).ids
    with pytest.raises(StoreError, match="one vector per id"):
        store.put_embeddings("m", ids, np.ones((2, 4)))
    with pytest.raises(StoreError, match="NaN"):
        store.put_embeddings("m", ids, np.full((3, 4), np.nan))
    with pytest.raises(StoreError, match="1 missing"):
        store.put_embeddings("m", [*ids[:2], "not-an-id"], np.ones((3, 4)))
    assert store.embedding_models() == {}
    store.put_embeddings("m", ids, np.ones((3, 4)))
    with pytest.raises(StoreError, match="4-dimensional"):
        store.put_embeddings("m", ids, np.ones((3, 5)))
    with pytest.raises(StoreError, match="must not be empty"):
        store.put_embeddings("", ids, np.ones((3, 4)))
