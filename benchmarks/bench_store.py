"""Candidate store benchmark: bulk insert throughput and query latency at 10⁵ candidates.

For each backend (SQLite file, PostgreSQL on 127.0.0.1:5432 when one answers) this inserts
``n`` candidates with :meth:`CandidateStore.add_many` and times typical queries:

* ``has_all_2_elements+status`` — elements HAS ALL two elements, one status, limit 50;
* ``count_by_status`` — ``count`` of one status;
* ``get_by_id`` — one candidate with its records;
* ``re_add_existing`` — ``add_many`` of candidates that are all stored already (idempotent
  re-import; its rate is in ``insert_per_s``).

Test crystals are perturbed small cells (rock salt, perovskite, diamond) with random species,
strain and displacements from a seeded generator; space groups are not computed. Their ids are
synthetic (sha256 of seed and index) because the real canonical hash costs ~5 ms per crystal and
would dominate both generation and insert; the ``canonical_hash`` and ``spacegroup_number`` rows
time those two per-crystal costs on a sample, so the end-to-end rate of a real import is bounded
by ``1000 / (canonical_hash p50_ms)`` per core.

Run ``python -m benchmarks.bench_store`` (``--quick`` for 10⁴ candidates). Rows are returned and
logged; RESULTS.md is written by ``benchmarks/run_all``.
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import os
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from crystaloop.data.crystal import Crystal
from crystaloop.data.records import Candidate, CandidateStatus, Provenance
from crystaloop.data.store import CandidateFilter, CandidateStore
from crystaloop.data.store.testing import diamond, perovskite, rock_salt

logger = logging.getLogger(__name__)

SEED = 20261127
PG_URLS = ("postgresql://postgres@127.0.0.1:5432/test", "postgresql://root@127.0.0.1:5432/test")
QUERY_PAIRS = (("Sr", "Ti"), ("Ba", "O"), ("Na", "Cl"), ("Ca", "Zr"), ("La", "Fe"))
A_SITES, B_SITES, X_SITES = ("Sr", "Ba", "Ca", "La", "K", "Na"), ("Ti", "Zr", "Nb", "Fe", "Mn", "Co"), ("O", "F")
CATIONS, ANIONS = ("Na", "K", "Mg", "Ca", "Li", "Sr"), ("Cl", "O", "F", "Br", "S", "I")
GROUP_IV = ("C", "Si", "Ge", "Sn")
STATUS_MIX = ((CandidateStatus.GENERATED, 0.6), (CandidateStatus.SCORED, 0.25), (CandidateStatus.REJECTED, 0.15))


@dataclass(frozen=True)
class _PrehashedCandidate(Candidate):
    """A Candidate whose id is given instead of computed (benchmark only, see module docstring)."""

    bench_id: str = ""

    @property
    def id(self) -> str:
        return self.bench_id


def _base_cells() -> list[Crystal]:
    """Every species combination of the three prototypes (112 small cells)."""
    cells = [perovskite(3.9, a, b, x) for a in A_SITES for b in B_SITES for x in X_SITES]
    cells += [rock_salt(5.0, c, x) for c in CATIONS for x in ANIONS]
    cells += [diamond(4.5, e) for e in GROUP_IV]
    return cells


def make_bench_candidates(n: int, seed: int = SEED) -> list[Candidate]:
    """``n`` distinct candidates, about 10 s per 10⁵ (synthetic ids, seeded)."""
    rng = np.random.default_rng(seed)
    bases = _base_cells()
    which = rng.integers(len(bases), size=n)
    strains = np.eye(3) + rng.uniform(-0.03, 0.03, size=(n, 3, 3))
    statuses = [s for s, _ in STATUS_MIX]
    status_draw = rng.choice(len(statuses), size=n, p=[p for _, p in STATUS_MIX])
    provenance = Provenance(component="bench", version="0", seed=seed, campaign="bench", iteration=0)
    out: list[Candidate] = []
    for i in range(n):
        base = bases[which[i]]
        crystal = Crystal(
            base.lattice @ strains[i],
            base.frac_coords + rng.normal(0.0, 0.03, base.frac_coords.shape),
            base.numbers,
        )
        bench_id = hashlib.sha256(f"bench-{seed}-{i}".encode()).hexdigest()
        out.append(
            _PrehashedCandidate(
                crystal=crystal, provenance=provenance, status=statuses[status_draw[i]], bench_id=bench_id
            )
        )
    return out


def _percentiles(samples_s: list[float]) -> tuple[float, float]:
    ms = np.array(samples_s) * 1e3
    return float(np.percentile(ms, 50)), float(np.percentile(ms, 95))


def _time(fn: Callable[[int], Any], repeats: int) -> tuple[float, float]:
    samples = []
    for i in range(repeats):
        start = time.perf_counter()
        fn(i)
        samples.append(time.perf_counter() - start)
    return _percentiles(samples)


def _row(backend: str, n: int, insert_per_s: float | None, query: str, p50: float | None, p95: float | None) -> dict:
    return {
        "backend": backend,
        "n_candidates": n,
        "insert_per_s": None if insert_per_s is None else round(insert_per_s, 1),
        "query": query,
        "p50_ms": None if p50 is None else round(p50, 3),
        "p95_ms": None if p95 is None else round(p95, 3),
    }


def _per_crystal_costs(repeats: int) -> list[dict]:
    """Time the real canonical hash and spglib space group on fresh crystals."""
    crystals = [c.crystal for c in make_bench_candidates(repeats, seed=SEED + 1)]
    hash_p = _time(lambda i: crystals[i].canonical_hash(), repeats)
    sg_p = _time(lambda i: crystals[i].spacegroup_number(), repeats)
    return [
        _row("-", repeats, None, "canonical_hash (per crystal)", *hash_p),
        _row("-", repeats, None, "spacegroup_number (per crystal)", *sg_p),
    ]


@contextmanager
def _sqlite_url() -> Iterator[str]:
    with tempfile.TemporaryDirectory(prefix="cl-bench-") as tmp:
        yield f"sqlite:///{Path(tmp) / 'bench.db'}"


@contextmanager
def _postgres_url() -> Iterator[str | None]:
    try:
        import psycopg
        from psycopg import sql
    except ImportError:  # pragma: no cover - psycopg is a dependency
        yield None
        return
    override = os.environ.get("CRYSTALOOP_BENCH_POSTGRES_URL")
    for conninfo in (override,) if override else PG_URLS:
        try:
            with psycopg.connect(conninfo, connect_timeout=3, autocommit=True) as conn:
                conn.execute("SELECT 1")
            break
        except psycopg.Error as exc:
            logger.debug("no PostgreSQL at %s: %s", conninfo, exc)
    else:
        logger.warning("PostgreSQL not reachable on 127.0.0.1:5432 (database test); skipping the postgres rows")
        yield None
        return
    schema = f"cl_bench_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
    try:
        yield conninfo.replace("postgresql://", "postgresql+psycopg://", 1) + f"?options=-csearch_path%3D{schema}"
    finally:
        with psycopg.connect(conninfo, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))


def _bench_backend(backend: str, url: str, candidates: list[Candidate], repeats: int) -> list[dict]:
    n = len(candidates)
    rng = np.random.default_rng(SEED + 2)
    with CandidateStore(url) as store:
        start = time.perf_counter()
        report = store.add_many(candidates, chunk_size=2000, compute_spacegroup=False)
        insert_per_s = n / (time.perf_counter() - start)
        if report.added != n:
            raise RuntimeError(f"expected {n} new candidates, {report.added} were added")
        logger.info("%s: inserted %d candidates at %.0f /s", backend, n, insert_per_s)

        filters = [
            CandidateFilter(elements=list(pair), status=[CandidateStatus.SCORED], limit=50) for pair in QUERY_PAIRS
        ]
        hits = [store.count(f) for f in filters]
        logger.info("%s: matches per query pair %s", backend, dict(zip(QUERY_PAIRS, hits, strict=True)))
        scored = CandidateFilter(status=[CandidateStatus.SCORED])
        ids = [candidates[int(k)].id for k in rng.integers(n, size=repeats)]
        sample = candidates[: min(n, 10_000)]

        rows = [
            _row(
                backend,
                n,
                insert_per_s,
                "has_all_2_elements+status limit 50",
                *_time(lambda i: store.query(filters[i % len(filters)]), repeats),
            ),
            _row(backend, n, insert_per_s, "count_by_status", *_time(lambda i: store.count(scored), repeats)),
            _row(backend, n, insert_per_s, "get_by_id", *_time(lambda i: store.get(ids[i]), repeats)),
        ]
        start = time.perf_counter()
        again = store.add_many(sample, chunk_size=2000, compute_spacegroup=False)
        readd_per_s = len(sample) / (time.perf_counter() - start)
        if again.added:
            raise RuntimeError(f"re-adding stored candidates added {again.added}")
        rows.append(_row(backend, n, readd_per_s, "re_add_existing (insert_per_s = its rate)", None, None))
    return rows


def run(quick: bool = False) -> list[dict]:
    """Benchmark the store; ``quick`` uses 10⁴ candidates instead of 10⁵.

    Returns:
        Rows ``{backend, n_candidates, insert_per_s, query, p50_ms, p95_ms}`` (latencies in ms,
        throughput in candidates per second), also logged.
    """
    n = 10_000 if quick else 100_000
    repeats = 30 if quick else 100
    start = time.perf_counter()
    candidates = make_bench_candidates(n)
    logger.info("generated %d candidates in %.1f s", n, time.perf_counter() - start)
    rows = _per_crystal_costs(50 if quick else 200)
    with _sqlite_url() as url:
        rows += _bench_backend("sqlite", url, candidates, repeats)
    with _postgres_url() as url:
        if url is not None:
            rows += _bench_backend("postgresql", url, candidates, repeats)
    for row in rows:
        logger.info("%s", row)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="10^4 candidates instead of 10^5")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    run(quick=args.quick)


if __name__ == "__main__":
    main()
