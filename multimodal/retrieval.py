"""Cosine search over embeddings and the retrieval metrics the fusion model is judged by.

Search is brute force: all stored embeddings of one model are unit vectors in one (N, d) float32
matrix, a query is one matrix product and a partial sort (``argpartition``), O(N·d) per query:
≈ 10⁶ × 64 floats, a few ms, which covers every store this project builds. At scale the path
is a vector index behind the same :class:`EmbeddingIndex` interface: pgvector (``vector(d)``
column with an HNSW index, ``ORDER BY embedding <=> :q``) where the store is PostgreSQL, or
FAISS ``IndexHNSWFlat`` / ``IndexIVFPQ`` for a file-backed index; both return approximate top-k
by inner product, which equals cosine order on unit vectors.

Metrics: :func:`recall_at_k` (query i's correct answer is target i), the random-ranking
expectation ``k / N`` and :func:`composition_baseline_recall`, the recall of a ranker that
knows only the reduced formula (same formula first, random order among equals).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from crystaloop.data.errors import QueryError

__all__ = ["EmbeddingIndex", "SearchHit", "recall_at_k", "random_recall", "composition_baseline_recall"]


@dataclass(frozen=True)
class SearchHit:
    """One search result: the stored key, its cosine similarity to the query and its rank (0 = best)."""

    key: str
    score: float
    rank: int


class EmbeddingIndex:
    """Brute-force cosine search over (N, d) embeddings keyed by strings (candidate ids).

    Rows are L2-normalised on construction, so a zero row (or NaN) is refused.
    """

    def __init__(self, keys: Sequence[str], embeddings: np.ndarray) -> None:
        matrix = np.asarray(embeddings, dtype=np.float32)
        if matrix.ndim != 2 or matrix.shape[0] != len(keys):
            raise QueryError(f"need one embedding row per key: {len(keys)} keys, embeddings of shape {matrix.shape}")
        norms = np.linalg.norm(matrix, axis=1, keepdims=True)
        if matrix.size and not (np.isfinite(norms).all() and (norms > 0).all()):
            bad = int(np.flatnonzero(~(np.isfinite(norms[:, 0]) & (norms[:, 0] > 0)))[0])
            raise QueryError(f"embedding of {keys[bad]!r} is zero or not finite; it cannot be compared by cosine")
        self.keys = list(keys)
        self.matrix = matrix / np.where(norms > 0, norms, 1.0)

    def __len__(self) -> int:
        return len(self.keys)

    @property
    def dim(self) -> int:
        return int(self.matrix.shape[1])

    def search(self, queries: np.ndarray, top: int = 10) -> list[list[SearchHit]]:
        """Per query row (q, d) or (d,), the ``top`` most similar keys, best first.

        Raises:
            QueryError: the query width differs from the index's, or ``top`` < 1.
        """
        q = np.asarray(queries, dtype=np.float32)
        q = q[None] if q.ndim == 1 else q
        if q.ndim != 2 or q.shape[1] != self.dim:
            raise QueryError(f"query embeddings of shape {q.shape} do not match the index width {self.dim}")
        if top < 1:
            raise QueryError(f"top must be at least 1, got {top}")
        q = q / np.maximum(np.linalg.norm(q, axis=1, keepdims=True), 1e-12)
        scores = q @ self.matrix.T  # (q, N)
        k = min(top, len(self.keys))
        results = []
        for row in scores:
            best = np.argpartition(-row, k - 1)[:k] if k < len(row) else np.arange(len(row))
            best = best[np.lexsort((best, -row[best]))]  # by score, ties by insertion order
            results.append([SearchHit(self.keys[i], float(row[i]), r) for r, i in enumerate(best)])
        return results


def _ranks(queries: np.ndarray, targets: np.ndarray, admissible: np.ndarray | None = None) -> np.ndarray:
    """(n,) 0-based rank of target i among all targets for query i (ties count against it);
    with ``admissible`` (n, n) bool, the targets query i admits rank before all others."""
    scores = np.asarray(queries, dtype=np.float64) @ np.asarray(targets, dtype=np.float64).T
    if admissible is not None:
        if admissible.shape != scores.shape:
            raise QueryError(f"admissible mask {admissible.shape} must be (queries, targets) = {scores.shape}")
        spread = float(scores.max() - scores.min()) + 1.0 if scores.size else 1.0
        scores = scores + spread * admissible  # every admitted target above every other
    own = np.diag(scores)
    return (scores > own[:, None]).sum(axis=1) + ((scores == own[:, None]).sum(axis=1) - 1)


def recall_at_k(queries: np.ndarray, targets: np.ndarray, ks: Sequence[int] = (1, 5, 10),
                admissible: np.ndarray | None = None) -> dict[str, float]:
    """Fraction of queries whose own target (same row) is among the ``k`` most similar targets.

    Args:
        queries: (n, d) unit vectors (e.g. XRD embeddings).
        targets: (n, d) unit vectors (e.g. structure embeddings), row i the answer to query i.
        admissible: optional (n, n) bool, ``[i, j]`` True when target j satisfies what query i
            states outright (a prompt's parsed constraints,
            :func:`~crystaloop.multimodal.prompt.admissible_targets`): admitted targets rank first,
            by similarity, then the rest.
    """
    if queries.shape != targets.shape:
        raise QueryError(f"queries {queries.shape} and targets {targets.shape} must have one shape")
    ranks = _ranks(queries, targets, admissible)
    out = {f"recall@{k}": float((ranks < k).mean()) for k in ks}
    out["mean_rank"] = float(ranks.mean() + 1)
    return out


def random_recall(n: int, ks: Sequence[int] = (1, 5, 10)) -> dict[str, float]:
    """Expected recall@k of a random ranking among ``n`` targets: ``min(k, n) / n``."""
    return {f"recall@{k}": min(k, n) / n for k in ks}


def composition_baseline_recall(formulas: Sequence[str], ks: Sequence[int] = (1, 5, 10)) -> dict[str, float]:
    """Expected recall@k of ranking by formula only: same reduced formula first, random among them.

    With m targets sharing query i's formula (itself included) the expected recall@k is
    ``min(k, m) / m``.
    """
    counts = Counter(formulas)
    sizes = np.array([counts[f] for f in formulas], dtype=np.float64)
    return {f"recall@{k}": float(np.mean(np.minimum(k, sizes) / sizes)) for k in ks}
