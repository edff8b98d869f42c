"""OPTIMADE serving under load: open-loop rates with a realistic filter mix, and amplification probes.

For each backend (SQLite file, and PostgreSQL when a server answers on 127.0.0.1:5432, database
``test``, in a fresh schema of random name, dropped afterwards: bench_optimade's helper) a fresh store is bulk-loaded
with seeded synthetic candidates and ``crystaloop serve`` (default settings: cost limits,
expensive-query slots, 5 s request budget, 503 + ``Retry-After`` on overload) is started on a free
loopback port. Then:

* ``load`` rows — after 60 untimed warm-up requests, open-loop tests, one per target rate: requests are scheduled at the rate over 32
  keep-alive connections (:func:`benchmarks.bench_optimade._open_loop`), latency counts from the
  scheduled time, so queueing shows. The mix (:data:`MIX`) is what a dashboard and clients ask:
  single-entry reads, ``elements HAS ALL`` pairs, formulas, campaign listings, count ranges,
  energy-above-hull thresholds and chemical systems, with seeded values (some repeat, some not).
  Reported per rate: achieved rate, p50/p95/p99, 200s, 503 refusals and other errors, unsent;
* ``probe`` rows — the amplification cases of issue 22, each on one connection: a ``HAS ALL`` of
  199 repeated values, ``elements:elements_ratios HAS ALL`` with 99 pairs (repeated, and
  distinct), a 17-element ``HAS ALL``, a 309-digit integer (and whether the connection survives
  it), ``nsites=5`` answered while 18 expensive filters are in flight (status mix of those), and a
  burst of 300 requests at once on their own connections, beyond every process's ``max_in_flight``
  (64): the status mix, and how many 503 refusals carry ``Retry-After``.

Run ``python -m benchmarks.bench_serving`` (``--quick``: 10³ candidates per backend, 2 s per rate;
full: 10⁵ on SQLite, 10⁶ on PostgreSQL, 60 s per rate at 50, 100 and 200 requests/s). Timings on a
shared machine vary 2–4×: the machine and its load average go into every row.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import logging
import random
import tempfile
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import quote

from benchmarks.bench_optimade import (
    FILTERS,
    LOAD_FIELDS,
    SEED,
    _machine,
    _open_loop,
    _percentile,
    _postgres_store,
    _sample_ids,
    _server,
)

logger = logging.getLogger(__name__)

RATES = (50.0, 100.0, 200.0)
BIG_INTEGER = "9" * 309
MIX: tuple[tuple[str, float], ...] = (
    ("entry", 0.25),
    ("elements_has_all", 0.20),
    ("formula_reduced", 0.15),
    ("campaign_iteration", 0.15),
    ("nelements_nsites", 0.10),
    ("e_above_hull_status", 0.10),
    ("chemical_system_only", 0.05),
)
"""Share of each request class in the load mix (``entry``: ``/structures/{id}``; others: :data:`FILTERS`)."""
PROBES: dict[str, str] = {
    "has_all_199_repeated": "elements HAS ALL " + ",".join(['"O"'] * 199),
    "zip_99_pairs_repeated": "elements:elements_ratios HAS ALL " + ",".join(['"O":0.6'] * 99),
    "zip_99_pairs_distinct": "elements:elements_ratios HAS ALL " + ",".join(f'"O":{i / 100:.2f}' for i in range(1, 100)),
    "has_all_17_elements": "elements HAS ALL " + ",".join(f'"{e}"' for e in "H He Li Be B C N O F Ne Na Mg Al Si P S Cl".split()),
    "integer_309_digits": f"nsites={BIG_INTEGER}",
}
"""The amplification probes of issue 22 (filter per probe)."""
_EXPENSIVE_SYSTEMS = ("Sr", "Ba", "Ca", "K", "Na", "La", "Pb", "Ti", "Zr", "Nb", "Fe", "Mn")


def _paths(seed: int, ids: list[str], count: int, salt: str = "load") -> list[str]:
    """``count`` request paths drawn from :data:`MIX` with seeded values; pages of 5–20."""
    rng = random.Random(f"{SEED}:serving:{salt}")
    names, weights = zip(*MIX, strict=True)
    paths = []
    for name in rng.choices(names, weights, k=count):
        if name == "entry":
            paths.append(f"/v1/structures/{rng.choice(ids)}?response_fields={LOAD_FIELDS}")
            continue
        flt = FILTERS[name](rng, seed)
        paths.append(f"/v1/structures?page_limit={rng.choice((5, 10, 20))}&response_fields={LOAD_FIELDS}&filter={quote(flt)}")
    return paths


def _load_row(port: int, ids: list[str], rate: float, duration: float, grace: float, backend: str, n: int, workers: int) -> dict[str, Any]:
    paths = _paths(SEED, ids, int(rate * duration))
    result = asyncio.run(_open_loop(port, paths, rate, connections=32, grace=grace))
    latencies = result["latencies"]
    kinds = Counter(error.split(" ", 1)[0] for error in result["errors"])
    row = {
        "case": "load",
        "backend": backend,
        "candidates": n,
        "server_workers": workers,
        "target_rps": rate,
        "duration_s": duration,
        "requests": len(paths),
        "achieved_rps": len(latencies) / result["elapsed"],
        "ok": len(latencies) - len(result["errors"]),
        "refused_503": kinds.pop("503", 0),
        "errors": sum(kinds.values()),
        "unsent": result["unsent"],
        "p50_ms": _percentile(latencies, 0.5) if latencies else float("nan"),
        "p95_ms": _percentile(latencies, 0.95) if latencies else float("nan"),
        "p99_ms": _percentile(latencies, 0.99) if latencies else float("nan"),
        "machine": _machine(),
    }
    if kinds:
        logger.warning("%s load at %.0f/s: errors %s", backend, rate, dict(kinds))
    logger.info(
        "%s load %.0f/s: achieved %.0f/s, p50 %.1f / p95 %.1f / p99 %.1f ms, %d refused, %d errors",
        backend, rate, row["achieved_rps"], row["p50_ms"], row["p95_ms"], row["p99_ms"], row["refused_503"], row["errors"],
    )
    return row


def _warm_up(port: int, ids: list[str], count: int = 60) -> None:
    """Untimed requests of every class first (parser, plans, worker threads), with values the load test does not reuse."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    try:
        for path in _paths(SEED, ids, count, salt="warm-up"):
            conn.request("GET", path)
            conn.getresponse().read()
    finally:
        conn.close()


def _get(conn: http.client.HTTPConnection, flt: str) -> tuple[int, float, str]:
    """(status, milliseconds, error detail or '') of one ``/v1/structures`` request on ``conn``."""
    started = time.perf_counter()
    conn.request("GET", f"/v1/structures?page_limit=5&response_fields=id&filter={quote(flt)}")
    response = conn.getresponse()
    body = response.read()
    elapsed = (time.perf_counter() - started) * 1000
    detail = ""
    if response.status != 200:
        try:
            detail = json.loads(body)["errors"][0]["detail"][:120]
        except (ValueError, KeyError, IndexError):
            detail = body[:120].decode(errors="replace")
    return response.status, elapsed, detail


def _probe_rows(port: int, backend: str, n: int) -> list[dict[str, Any]]:
    rows = []
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    try:
        for name, flt in PROBES.items():
            status, ms, detail = _get(conn, flt)
            row: dict[str, Any] = {"case": f"probe:{name}", "backend": backend, "candidates": n, "status": status, "latency_ms": ms}
            if name == "integer_309_digits":
                sock = conn.sock
                after, _, _ = _get(conn, "nsites=5")
                row["connection_kept"] = sock is not None and conn.sock is sock and after == 200
            row["detail"] = detail
            rows.append(row | {"machine": _machine()})
            logger.info("%s %s: %d in %.1f ms %s", backend, name, status, ms, detail)
    finally:
        conn.close()
    rows.append(_pool_probe(port, backend, n))
    rows.append(_overload_probe(port, backend, n))
    return rows


def _overload_probe(port: int, backend: str, n: int, burst: int = 300) -> dict[str, Any]:
    """``burst`` requests sent at once on their own connections (more than every process's
    ``max_in_flight`` of 64): how many are refused with 503, and whether each refusal has ``Retry-After``."""
    rng = random.Random(f"{SEED}:overload")
    filters = [FILTERS["elements_has_all"](rng, SEED) + f" AND nsites>={i % 9}" for i in range(burst)]
    gate = threading.Barrier(burst, timeout=60)

    def one(flt: str) -> tuple[int, str | None]:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        try:
            conn.connect()
            gate.wait()
            conn.request("GET", f"/v1/structures?page_limit=20&filter={quote(flt)}")
            response = conn.getresponse()
            response.read()
            return response.status, response.getheader("Retry-After")
        except (OSError, threading.BrokenBarrierError) as exc:
            return -1, type(exc).__name__
        finally:
            conn.close()

    started = time.perf_counter()
    with ThreadPoolExecutor(burst) as pool:
        answers = list(pool.map(one, filters))
    seconds = time.perf_counter() - started
    statuses = Counter(status for status, _ in answers)
    refused = [after for status, after in answers if status == 503]
    row = {
        "case": "probe:overload_burst_300",
        "backend": backend,
        "candidates": n,
        "status": statuses.most_common(1)[0][0],
        "latency_ms": seconds * 1000,
        "expensive_statuses": " ".join(f"{k}×{v}" for k, v in sorted(statuses.items())),
        "refused_with_retry_after": sum(after is not None for after in refused),
        "refused_503": len(refused),
        "machine": _machine(),
    }
    logger.info("%s burst of %d: %s in %.1f s; %d of %d refusals with Retry-After", backend, burst, row["expensive_statuses"], seconds, row["refused_with_retry_after"], len(refused))
    return row


def _pool_probe(port: int, backend: str, n: int, in_flight: int = 18) -> dict[str, Any]:
    """``nsites=5`` while ``in_flight`` distinct expensive filters are sent at once (issue 22: 30.4 s)."""
    rng = random.Random(f"{SEED}:pool")
    filters = ["elements HAS ALL " + ",".join(f'"{e}"' for e in (*rng.sample(_EXPENSIVE_SYSTEMS, 2), "O")) + f" AND nsites>={i % 7}" for i in range(in_flight)]

    def one(flt: str) -> tuple[int, float, str]:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        try:
            return _get(conn, flt)
        finally:
            conn.close()

    with ThreadPoolExecutor(in_flight + 1) as pool:
        expensive = [pool.submit(one, flt) for flt in filters]
        time.sleep(0.05)  # let them reach the server first
        cheap = pool.submit(one, "nsites=5").result()
        statuses = Counter(f.result()[0] for f in expensive)
    row = {
        "case": "probe:cheap_during_18_expensive",
        "backend": backend,
        "candidates": n,
        "status": cheap[0],
        "latency_ms": cheap[1],
        "expensive_statuses": " ".join(f"{k}×{v}" for k, v in sorted(statuses.items())),
        "machine": _machine(),
    }
    logger.info("%s nsites=5 during %d expensive: %d in %.1f ms; expensive %s", backend, in_flight, cheap[0], cheap[1], row["expensive_statuses"])
    return row


def _backend(url: str, backend: str, n: int, rates: tuple[float, ...], duration: float, grace: float, workers: int) -> list[dict[str, Any]]:
    from crystaloop.benchmarks.optimade_rows import bulk_load

    report = bulk_load(url, n, seed=SEED)
    logger.info("%s: bulk-loaded %d candidates in %.1f s", backend, n, report.seconds)
    rows: list[dict[str, Any]] = []
    ids = _sample_ids(min(200, n))
    with _server(url, workers) as port:
        _warm_up(port, ids)
        for rate in rates:
            rows.append(_load_row(port, ids, rate, duration, grace, backend, n, workers))
        rows += _probe_rows(port, backend, n)
    return rows


def run(
    quick: bool = False, *, rates: tuple[float, ...] = RATES, duration: float | None = None, workers: int | None = None
) -> list[dict[str, Any]]:
    """Load and probe rows for SQLite and PostgreSQL.

    Args:
        quick: 10³ candidates per backend and 2 s per rate (under a minute in all) instead of
            10⁵ (SQLite) / 10⁶ (PostgreSQL) and 60 s.
        rates: target request rates, requests/s.
        duration: seconds per rate (default by ``quick``).
        workers: ``crystaloop serve --workers`` (default: what ``serve`` starts without it, one per core, 1 to 4).
    """
    from crystaloop.data.optimade.config import default_workers

    workers = workers if workers is not None else default_workers()
    n_sqlite, n_postgres = (1_000, 1_000) if quick else (100_000, 1_000_000)
    seconds = duration if duration is not None else (2.0 if quick else 60.0)
    grace = 2.0 if quick else 10.0
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="bench-serving-") as folder:
        rows += _backend(f"sqlite:///{Path(folder) / 'store.db'}", "sqlite", n_sqlite, rates, seconds, grace, workers)
    with _postgres_store() as pg_url:
        if pg_url is None:
            rows.append({"case": "postgresql", "backend": "postgresql", "note": "skipped: no server on 127.0.0.1:5432"})
        else:
            rows += _backend(pg_url, "postgresql", n_postgres, rates, seconds, grace, workers)
    return rows


def _rates(text: str) -> tuple[float, ...]:
    return tuple(float(x) for x in text.split(",") if x.strip())


if __name__ == "__main__":
    from benchmarks.run_all import run_standalone

    options: dict[str, dict[str, Any]] = {
        "--rates": {"type": _rates, "default": RATES, "help": "comma-separated target rates, requests/s"},
        "--duration": {"type": float, "default": None, "help": "seconds per rate"},
        "--workers": {"type": int, "default": None, "help": "server processes (default: one per core, 1 to 4, as crystaloop serve)"},
    }
    run_standalone(run, __doc__, options)
