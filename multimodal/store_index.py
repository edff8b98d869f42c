"""Embeddings of the candidate store: index the stored crystals with a fusion model, search them.

:func:`index_store` embeds every stored candidate that the model has not embedded yet (paging
through the store in id order) and writes the vectors with ``CandidateStore.put_embeddings``
under :func:`embedding_name` (the checkpoint's hash, so vectors of different weights are never
mixed). :func:`search_store` loads that model's vectors into an
:class:`~.retrieval.EmbeddingIndex` and ranks them against a query embedding from any modality.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from crystaloop.data.errors import QueryError
from crystaloop.data.progress import progress_bar
from crystaloop.data.store import CandidateFilter, CandidateStore
from crystaloop.multimodal.fusion import FusionModel
from crystaloop.multimodal.retrieval import EmbeddingIndex, SearchHit

__all__ = ["embedding_name", "index_store", "search_store"]

logger = logging.getLogger(__name__)

_PAGE = 1000


def embedding_name(info: dict[str, Any]) -> str:
    """Store key of a checkpoint's embeddings: ``fusion-<first 16 hex of its sha256>``."""
    return f"fusion-{str(info['checkpoint_hash'])[:16]}"


def index_store(
    store: CandidateStore, model: FusionModel, name: str, *, batch_size: int = 256, progress: bool = False
) -> int:
    """Embed the stored candidates ``name`` has no vector for; returns how many were embedded."""
    missing = set(store.ids_without_embedding(name))
    if not missing:
        return 0
    done = 0
    with progress_bar(progress) as bar:
        task = bar.add_task("embedding stored candidates", total=len(missing))
        offset = 0
        while True:
            page = store.query(CandidateFilter(order_by="id", limit=_PAGE, offset=offset))
            if not page:
                break
            offset += len(page)
            todo = [c for c in page if c.id in missing]
            for start in range(0, len(todo), batch_size):
                chunk = todo[start : start + batch_size]
                vectors = model.embed("structure", [c.crystal for c in chunk], batch_size=batch_size)
                store.put_embeddings(name, [c.id for c in chunk], vectors)
                done += len(chunk)
                bar.advance(task, len(chunk))
    logger.info("embedded %d candidates as %s", done, name)
    return done


def search_store(store: CandidateStore, name: str, query: np.ndarray, *, top: int = 10) -> list[SearchHit]:
    """The ``top`` stored candidates closest (cosine) to one query embedding (d,), best first.

    Raises:
        QueryError: the store holds no embeddings of ``name`` (run :func:`index_store` first).
    """
    ids, matrix = store.load_embeddings(name)
    if not ids:
        known = ", ".join(store.embedding_models()) or "none"
        raise QueryError(f"the store has no embeddings of model {name!r} (stored: {known}); index it first")
    return EmbeddingIndex(ids, matrix).search(np.asarray(query, dtype=np.float32), top=top)[0]
