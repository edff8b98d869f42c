"""Element filters on PostgreSQL: the GIN index of revision 0005 against ``candidate_elements`` probes.

One fresh PostgreSQL store (127.0.0.1:5432, database ``test``, a schema of random name dropped
afterwards) is bulk-loaded with seeded synthetic candidates
(:func:`crystaloop.benchmarks.optimade_rows.bulk_load`). Then, on one read-only engine, each
filter is answered by :meth:`StructureSearch.search` (count, one page of 20 full documents, the
work of one ``/v1/structures`` request without HTTP) twice per draw, interleaved: with the
translator of this code (``elements HAS ALL/ANY/ONLY`` as one ``@>``/``&&``/``<@`` comparison of
the generated ``text[]`` column ``candidates.element_array``, answered by its GIN index
``ix_candidates_element_array``) and with
``FilterTranslator.elements_index = False`` (one semi-join of ``candidate_elements`` per ``HAS ALL`` value, the SQL
before revision 0005, which SQLite still runs). Filters: bench_optimade's ``elements_has_all``
pairs, bench_serving's three-element ``HAS ALL`` (two cations and O, its pool probe) and its
199-value ``HAS ALL`` probe, a ``HAS ANY`` of two cations and a ten-element ``HAS ONLY``. Both
paths count every match on every request (count cache off). A third path, ``gin_index_count_cached``,
asks each filter a second time with the count cache of :mod:`crystaloop.data.optimade.counts` on
(the exact count reused while the store is not written, as the API does): what a repeated query
costs, the page and the revision check but no count. A fourth path, ``element_sets``, counts
from the element-set summary of revision 0006 (:mod:`crystaloop.data.optimade.element_sets`:
``sum(n)`` over the distinct element lists that satisfy the filter, exact, no visit of the
matches; on PostgreSQL its page read list by list from the index on ``(elements, id)`` of
revision 0007 where that is cheaper), count cache off: what a first-time element filter costs in
the API now; the other three paths count the matches (``element_sets=False``).

Reported per filter and path: p50/p95 in ms, matches (must be equal for all paths), cache hits, whether
``EXPLAIN`` of the count names the GIN index, and the number of summary rows (distinct element lists). Run ``python -m benchmarks.bench_elements_index``
(``--quick``: 5·10³ candidates, 5 draws; full: 10⁶ candidates, the size issue #22's goal is stated at, 20 draws). Timings on a shared
machine vary 2–4×: the machine and its load average go into every row.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from typing import Any

from sqlalchemy import func, select, text

from benchmarks.bench_optimade import FILTERS, SEED, _machine, _percentile, _postgres_store
from benchmarks.bench_serving import _EXPENSIVE_SYSTEMS, PROBES

logger = logging.getLogger(__name__)

INDEX_NAME = "ix_candidates_element_array"
_TEN = ("Sr", "Ba", "Ca", "Ti", "Zr", "Na", "K", "Cl", "F", "O")
CASES: dict[str, Callable[[random.Random], str]] = {
    "has_all_pair": lambda r: FILTERS["elements_has_all"](r, SEED),
    "has_all_two_cations_and_O": lambda r: "elements HAS ALL " + ",".join(f'"{e}"' for e in (*r.sample(_EXPENSIVE_SYSTEMS, 2), "O")),
    "has_all_199_repeated": lambda r: PROBES["has_all_199_repeated"],
    "has_any_two_cations": lambda r: "elements HAS ANY " + ",".join(f'"{e}"' for e in r.sample(_EXPENSIVE_SYSTEMS, 2)),
    "has_only_ten": lambda r: "elements HAS ONLY " + ",".join(f'"{e}"' for e in _TEN),
}
"""Filter generators (seeded); each draw is answered by both paths."""


def _explain_uses_index(engine: Any, search: Any, flt: str) -> bool:
    """Whether ``EXPLAIN`` of the count ``search`` runs for ``flt`` names the GIN index."""
    from crystaloop.data.optimade.element_sets import element_set_condition, element_set_count

    translation = search.translator.translate(flt)
    summary = element_set_condition(translation, engine.dialect.name) if search.element_sets else None
    stmt = element_set_count(summary) if summary is not None else select(func.count()).where(translation.where)
    compiled = stmt.compile(engine, compile_kwargs={"literal_binds": True})
    with engine.connect() as conn:
        plan = "\n".join(row[0] for row in conn.execute(text(f"EXPLAIN {compiled}")))
    return INDEX_NAME in plan


def _rows_for(engine: Any, n: int, draws: int) -> list[dict[str, Any]]:
    from crystaloop.data.optimade.element_sets import ELEMENT_SETS
    from crystaloop.data.optimade.search import StructureSearch

    searches = {
        "gin_index": StructureSearch(engine, count_cache_size=0, element_sets=False),
        "element_probes": StructureSearch(engine, count_cache_size=0, element_sets=False),
        "gin_index_count_cached": StructureSearch(engine, element_sets=False),
        "element_sets": StructureSearch(engine, count_cache_size=0, element_sets=True),
    }
    with engine.connect() as conn:
        summary_rows = int(conn.execute(select(func.count()).select_from(ELEMENT_SETS)).scalar_one())
    searches["element_probes"].translator.elements_index = False  # the SQL before revision 0005
    rows = []
    for case, make in CASES.items():
        rng = random.Random(f"{SEED}:elements-index:{case}")
        filters = [make(rng) for _ in range(draws)]
        times: dict[str, list[float]] = {name: [] for name in searches}
        matches: dict[str, list[int]] = {name: [] for name in searches}
        for search in searches.values():
            search.search(filters[0], limit=20)  # warm: plan cache, buffers
        hits_before = {name: search.counts.hits for name, search in searches.items()}
        for flt in filters:
            for name, search in searches.items():
                if search.counts.enabled:
                    search.search(flt, limit=20)  # asked before: its count is cached (the store is not written)
                started = time.perf_counter()
                page = search.search(flt, limit=20)
                times[name].append((time.perf_counter() - started) * 1000)
                matches[name].append(page.data_returned)
        for name, search in searches.items():
            rows.append(
                {
                    "case": case,
                    "path": name,
                    "candidates": n,
                    "draws": draws,
                    "p50_ms": _percentile(times[name], 0.5),
                    "p95_ms": _percentile(times[name], 0.95),
                    "mean_matches": sum(matches[name]) / draws,
                    "same_matches": matches[name] == matches["gin_index"],
                    "explain_uses_gin": _explain_uses_index(engine, search, filters[0]),
                    "count_cache_hits": search.counts.hits - hits_before[name],
                    "element_sets_rows": summary_rows,
                    "machine": _machine(),
                }
            )
            logger.info("%s %s: p50 %.1f / p95 %.1f ms", case, name, rows[-1]["p50_ms"], rows[-1]["p95_ms"])
    return rows


def run(quick: bool = False, *, candidates: int | None = None, draws: int | None = None) -> list[dict[str, Any]]:
    """Rows per filter and path (GIN index, ``candidate_elements`` probes, count cache, element-set summary) on PostgreSQL.

    Args:
        quick: 5·10³ candidates and 5 draws per filter instead of 10⁶ and 20.
        candidates: store size (overrides ``quick``'s).
        draws: filters drawn per case (overrides ``quick``'s).
    """
    from crystaloop.benchmarks.optimade_rows import bulk_load
    from crystaloop.data.optimade.search import open_readonly_engine

    n = candidates if candidates is not None else (5_000 if quick else 1_000_000)
    draws = draws if draws is not None else (5 if quick else 20)
    with _postgres_store() as url:
        if url is None:
            return [{"case": "postgresql", "note": "skipped: no server on 127.0.0.1:5432"}]
        report = bulk_load(url, n, seed=SEED)
        logger.info("bulk-loaded %d candidates in %.1f s", n, report.seconds)
        engine = open_readonly_engine(url)
        try:
            return _rows_for(engine, n, draws)
        finally:
            engine.dispose()


if __name__ == "__main__":
    from benchmarks.run_all import run_standalone

    options: dict[str, dict[str, Any]] = {
        "--candidates": {"type": int, "default": None, "help": "store size (default 10^6, --quick 5*10^3)"},
        "--draws": {"type": int, "default": None, "help": "filters per case (default 20, --quick 5)"},
    }
    run_standalone(run, __doc__, options)
