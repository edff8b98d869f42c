"""Embeddings of stored candidates (a mixin of :class:`CandidateStore`), for multimodal retrieval.

One float32 vector per (candidate, embedding model name), written by whoever embeds candidates
(``crystaloop.multimodal``) and read back as one (N, d) matrix per model for a brute-force
cosine search. The model name should identify the weights (e.g. the checkpoint hash), so
vectors of different models are never compared.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager
from typing import Any

import numpy as np
from sqlalchemy import Connection, Table, func, select

from crystaloop.data.errors import StoreError
from crystaloop.data.store.schema import CandidateRow, EmbeddingRow, utcnow

__all__ = ["EmbeddingMixin"]

_EMBEDDINGS: Table = EmbeddingRow.__table__  # type: ignore[assignment]
_CANDIDATES: Table = CandidateRow.__table__  # type: ignore[assignment]
_CHUNK = 500


class EmbeddingMixin:
    """Store and load candidate embeddings; relies on the store's ``_read``, ``_write`` and ``_insert``."""

    def _read(self) -> AbstractContextManager[Connection]:  # provided by CandidateStore
        raise NotImplementedError

    def _write(self) -> AbstractContextManager[Connection]:  # provided by CandidateStore
        raise NotImplementedError

    def _insert(self, table: Table) -> Any:  # provided by CandidateStore
        raise NotImplementedError

    def put_embeddings(self, model: str, candidate_ids: Sequence[str], vectors: np.ndarray) -> int:
        """Store row ``i`` of ``vectors`` (n, d) as ``candidate_ids[i]``'s embedding by ``model``.

        One transaction; an existing (candidate, model) vector is overwritten. Returns n.

        Raises:
            StoreError: empty model name, shapes that do not match, non-finite values, a width
                other than the model's stored vectors, or ids not in the store (nothing written).
        """
        if not model:
            raise StoreError("embedding model name must not be empty")
        matrix = np.ascontiguousarray(vectors, dtype="<f4")
        if matrix.ndim != 2 or matrix.shape[0] != len(candidate_ids):
            raise StoreError(f"need one vector per id: {len(candidate_ids)} ids, vectors of shape {matrix.shape}")
        if not np.isfinite(matrix).all():
            raise StoreError(f"embeddings of model {model!r} contain NaN or infinite values")
        ids = list(candidate_ids)
        now = utcnow()
        rows = [
            {"candidate_id": cid, "model": model, "dim": matrix.shape[1], "vector": row.tobytes(), "created_at": now}
            for cid, row in zip(ids, matrix, strict=True)
        ]
        rows = list({r["candidate_id"]: r for r in rows}.values())  # last vector of a repeated id wins
        rows.sort(key=lambda r: r["candidate_id"])  # one lock order for concurrent writers
        with self._write() as conn:
            stored_dim = conn.execute(
                select(_EMBEDDINGS.c.dim).where(_EMBEDDINGS.c.model == model).limit(1)
            ).scalar_one_or_none()
            if stored_dim is not None and stored_dim != matrix.shape[1]:
                raise StoreError(
                    f"model {model!r} has {stored_dim}-dimensional embeddings stored, got {matrix.shape[1]}"
                )
            known: set[str] = set()
            unique = [r["candidate_id"] for r in rows]
            for start in range(0, len(unique), _CHUNK):
                part = unique[start : start + _CHUNK]
                known.update(conn.execute(select(_CANDIDATES.c.id).where(_CANDIDATES.c.id.in_(part))).scalars())
            missing = sorted(set(unique) - known)
            if missing:
                raise StoreError(f"no candidates with ids {missing[:5]} ({len(missing)} missing); add them first")
            for start in range(0, len(rows), _CHUNK):
                stmt = self._insert(_EMBEDDINGS)
                stmt = stmt.on_conflict_do_update(
                    index_elements=["candidate_id", "model"],
                    set_={c: stmt.excluded[c] for c in ("dim", "vector", "created_at")},
                )
                conn.execute(stmt, rows[start : start + _CHUNK])
        return len(ids)

    def load_embeddings(self, model: str, candidate_ids: Sequence[str] | None = None) -> tuple[list[str], np.ndarray]:
        """(ids, (n, d) float32 matrix) of ``model``'s embeddings, in id order.

        ``candidate_ids`` restricts the result to those ids (ids without an embedding are
        left out). A model with no embeddings gives ``([], array of shape (0, 0))``.
        """
        stmt = select(_EMBEDDINGS.c.candidate_id, _EMBEDDINGS.c.dim, _EMBEDDINGS.c.vector).where(
            _EMBEDDINGS.c.model == model
        )
        rows: list[Any] = []
        with self._read() as conn:
            if candidate_ids is None:
                rows = list(conn.execute(stmt.order_by(_EMBEDDINGS.c.candidate_id)))
            else:
                wanted = sorted(set(candidate_ids))
                for start in range(0, len(wanted), _CHUNK):
                    part = wanted[start : start + _CHUNK]
                    rows += conn.execute(stmt.where(_EMBEDDINGS.c.candidate_id.in_(part))).all()
                rows.sort(key=lambda r: r.candidate_id)
        if not rows:
            return [], np.zeros((0, 0), dtype=np.float32)
        dim = rows[0].dim
        matrix = np.frombuffer(b"".join(r.vector for r in rows), dtype="<f4").reshape(len(rows), dim)
        return [r.candidate_id for r in rows], matrix.astype(np.float32)

    def embedding_models(self) -> dict[str, int]:
        """Model name → number of candidates it has embedded."""
        n = func.count().label("n")
        with self._read() as conn:
            found = conn.execute(
                select(_EMBEDDINGS.c.model, n).group_by(_EMBEDDINGS.c.model).order_by(_EMBEDDINGS.c.model)
            )
            return {str(model): int(count) for model, count in found}

    def ids_without_embedding(self, model: str, limit: int | None = None) -> list[str]:
        """Ids of stored candidates that ``model`` has not embedded yet, in id order."""
        embedded = select(_EMBEDDINGS.c.candidate_id).where(_EMBEDDINGS.c.model == model)
        stmt = select(_CANDIDATES.c.id).where(_CANDIDATES.c.id.not_in(embedded)).order_by(_CANDIDATES.c.id)
        if limit is not None:
            stmt = stmt.limit(limit)
        with self._read() as conn:
            return list(conn.execute(stmt).scalars())
