"""OPTIMADE API benchmark: filter latency at 10⁵ (SQLite) and 10⁶ (PostgreSQL) candidates, and a load test.

For each backend a fresh store is bulk-loaded with seeded synthetic candidates
(:func:`crystaloop.benchmarks.optimade_rows.bulk_load`), ``crystaloop serve`` is started on a free
loopback port in a subprocess, and this process times HTTP requests against it:

* ``filter:<name>`` — p50/p95 latency of ``GET /v1/structures?filter=…&page_limit=20`` (full
  documents, ``meta.data_returned`` counted) over one keep-alive connection, for five typical
  filters (plus a chemical-system ``HAS ONLY`` search). Each request draws its values (element
  pair, formula, threshold, campaign) from a seeded generator, so some filter strings repeat and
  hit the parse cache and some do not;
* ``load`` — open-loop load tests: requests are scheduled at a fixed rate (100/s, then 200/s, 30 s
  each) over 32 keep-alive connections: single-entry reads and selective filters with small
  pages (see :func:`_load_paths`); latency counts from the scheduled time, so queueing behind a
  saturated server shows; every non-200 answer or socket error counts as an error, and requests
  a saturated server could not take within 10 s after the schedule ended are counted as
  ``unsent``. The server is one ``crystaloop serve`` process (one uvicorn worker).

Run ``python -m benchmarks.bench_optimade`` (``--quick``: 5·10³ / 2·10⁴ candidates, a 5 s load
test). PostgreSQL is used when a server answers on 127.0.0.1:5432 (database ``test``), in a
schema of its own that is dropped afterwards. Rows are returned and logged; RESULTS.md is written
by ``benchmarks/run_all``. Timings on a shared machine vary 2–4×: the machine and its load
average go into every row.
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import logging
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import quote

logger = logging.getLogger(__name__)

SEED = 20261128
PG_ADMIN_URLS = ("postgresql://postgres@127.0.0.1:5432/test", "postgresql://root@127.0.0.1:5432/test")
PAIRS = (("Sr", "Ti"), ("Ba", "O"), ("Na", "Cl"), ("Ca", "F"), ("Ga", "As"), ("K", "Nb"), ("Zr", "O"), ("Li", "Br"))
FORMULAS = ("O3SrTi", "ClNa", "F3KMn", "CaF2", "AsGa", "BaO3Zr", "MgO", "O2U", "BrLi", "CSi")
SYSTEMS = (("Ba", "Ti", "O"), ("Sr", "Zr", "O"), ("Na", "Cl"), ("Ca", "F"), ("K", "Fe", "F"))

FILTERS: dict[str, Callable[[random.Random, int], str]] = {
    "elements_has_all": lambda r, s: 'elements HAS ALL "{}","{}"'.format(*r.choice(PAIRS)),
    "nelements_nsites": lambda r, s: f"nelements<={r.choice((2, 3))} AND nsites>={r.choice((3, 5, 8))}",
    "formula_reduced": lambda r, s: f'chemical_formula_reduced="{r.choice(FORMULAS)}"',
    "e_above_hull_status": lambda r, s: f'_crystaloop_e_above_hull<{r.uniform(0.01, 0.1):.3f} AND _crystaloop_status="evaluated"',
    "campaign_iteration": lambda r, s: f'_crystaloop_campaign="bulk-{s}-{r.randrange(10)}" AND _crystaloop_iteration={r.randrange(8)}',
    "chemical_system_only": lambda r, s: "elements HAS ONLY " + ",".join(f'"{e}"' for e in r.choice(SYSTEMS)),
}
"""The five typical filters (the first five) and a chemical-system search, as value generators."""
LOAD_FIELDS = "chemical_formula_reduced,nsites,_crystaloop_status,_crystaloop_e_above_hull"


def _machine() -> str:
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return f"{os.cpu_count()} cores, load {load:.1f}"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _postgres_admin_url() -> str | None:
    import psycopg

    for url in PG_ADMIN_URLS:
        try:
            with psycopg.connect(url, connect_timeout=3) as conn:
                conn.execute("SELECT 1")
            return url
        except psycopg.Error:
            continue
    return None


@contextmanager
def _postgres_store() -> Iterator[str | None]:
    """A store URL in a fresh PostgreSQL schema (dropped afterwards), or None without a server."""
    import psycopg
    from psycopg import sql

    admin = _postgres_admin_url()
    if admin is None:
        yield None
        return
    schema = f"bench_optimade_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
    try:
        yield admin.replace("postgresql://", "postgresql+psycopg://", 1) + f"?options=-csearch_path%3D{schema}"
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))


@contextmanager
def _server(url: str, workers: int = 1) -> Iterator[int]:
    """``crystaloop serve`` on a free loopback port for the store at ``url``; yields the port."""
    port = _free_port()
    log = tempfile.TemporaryFile()
    process = subprocess.Popen(
        [sys.executable, "-m", "crystaloop.cli", "serve", "--port", str(port), "--store", url, "--workers", str(workers)],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 120
        while True:
            if process.poll() is not None:
                log.seek(0)
                raise RuntimeError(f"crystaloop serve exited: {log.read().decode()[-2000:]}")
            try:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
                conn.request("GET", "/v1/info")
                if conn.getresponse().status == 200:
                    conn.close()
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError("crystaloop serve did not start within 120 s") from None
                time.sleep(0.3)
        yield port
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def _filter_latencies(port: int, seed: int, repeats: int, backend: str, n: int) -> list[dict[str, Any]]:
    """p50/p95 of each filter over ``repeats`` sequential requests (after 3 untimed ones)."""
    import json

    rows = []
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
    try:
        for name, make in FILTERS.items():
            rng = random.Random(f"{SEED}:{name}")
            times, matches = [], []
            for i in range(repeats + 3):
                path = f"/v1/structures?page_limit=20&filter={quote(make(rng, seed))}"
                started = time.perf_counter()
                conn.request("GET", path)
                response = conn.getresponse()
                body = response.read()
                elapsed = time.perf_counter() - started
                if response.status != 200:
                    raise RuntimeError(f"{path} answered {response.status}: {body[:300]!r}")
                if i >= 3:
                    times.append(elapsed * 1000)
                    matches.append(json.loads(body)["meta"]["data_returned"])
            rows.append(
                {
                    "case": f"filter:{name}",
                    "backend": backend,
                    "candidates": n,
                    "requests": len(times),
                    "median_matches": int(statistics.median(matches)),
                    "p50_ms": _percentile(times, 0.5),
                    "p95_ms": _percentile(times, 0.95),
                    "max_ms": max(times),
                    "machine": _machine(),
                }
            )
            logger.info("%s %s: p50 %.1f ms, p95 %.1f ms", backend, name, rows[-1]["p50_ms"], rows[-1]["p95_ms"])
    finally:
        conn.close()
    return rows


def _load_paths(seed: int, ids: list[str], count: int) -> list[str]:
    """The request mix of the load test: the lookups a loop dashboard or client repeats at a high rate.

    30 % single-entry reads by id, 25 % formula lookups, 25 % campaign + iteration listings, 20 %
    campaign + iteration + energy-above-hull threshold; pages of 5 with four response fields.
    """
    rng = random.Random(f"{SEED}:load")
    paths = []
    for _ in range(count):
        draw = rng.random()
        if draw < 0.3 and ids:
            paths.append(f"/v1/structures/{rng.choice(ids)}?response_fields={LOAD_FIELDS}")
            continue
        if draw < 0.55:
            flt = FILTERS["formula_reduced"](rng, seed)
        elif draw < 0.8:
            flt = FILTERS["campaign_iteration"](rng, seed)
        else:
            flt = f"{FILTERS['campaign_iteration'](rng, seed)} AND _crystaloop_e_above_hull<{rng.uniform(0.01, 0.1):.3f}"
        paths.append(f"/v1/structures?page_limit=5&response_fields={LOAD_FIELDS}&filter={quote(flt)}")
    return paths


async def _open_loop(port: int, paths: list[str], rate: float, connections: int, grace: float = 10.0) -> dict[str, Any]:
    """Send ``paths`` at ``rate`` per second over ``connections`` keep-alive connections.

    Bounded: requests still waiting for a connection ``grace`` seconds after the schedule ended
    are not sent (counted as ``unsent``), so an overloaded server cannot stretch the test.
    """
    queue: asyncio.Queue[tuple[float, str] | None] = asyncio.Queue()
    latencies: list[float] = []
    errors: list[str] = []
    unsent = 0
    cutoff = time.perf_counter() + len(paths) / rate + grace

    async def worker() -> None:
        nonlocal unsent
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            while (item := await queue.get()) is not None:
                scheduled, path = item
                if time.perf_counter() > cutoff:
                    unsent += 1
                    continue
                try:
                    writer.write(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
                    head = await reader.readuntil(b"\r\n\r\n")
                    status = int(head.split(b" ", 2)[1])
                    length = next(
                        int(line.split(b":", 1)[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:")
                    )
                    await reader.readexactly(length)
                    if status != 200:
                        errors.append(f"{status} {path}")
                except (OSError, asyncio.IncompleteReadError, StopIteration, ValueError) as exc:
                    errors.append(f"{type(exc).__name__} {path}")
                    writer.close()
                    reader, writer = await asyncio.open_connection("127.0.0.1", port)
                latencies.append((time.perf_counter() - scheduled) * 1000)
        finally:
            writer.close()

    workers = [asyncio.create_task(worker()) for _ in range(connections)]
    started = time.perf_counter()
    for i, path in enumerate(paths):
        due = started + i / rate
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        queue.put_nowait((due, path))
    for _ in workers:
        queue.put_nowait(None)
    await asyncio.gather(*workers)
    elapsed = time.perf_counter() - started
    return {"latencies": latencies, "errors": errors, "elapsed": elapsed, "unsent": unsent}


def _load_test(port: int, seed: int, ids: list[str], rate: float, duration: float, backend: str, n: int) -> dict[str, Any]:
    paths = _load_paths(seed, ids, int(rate * duration))
    result = asyncio.run(_open_loop(port, paths, rate, connections=32))
    latencies = result["latencies"]
    row = {
        "case": "load",
        "backend": backend,
        "candidates": n,
        "target_rps": rate,
        "duration_s": duration,
        "requests": len(paths),
        "achieved_rps": len(latencies) / result["elapsed"],
        "errors": len(result["errors"]),
        "unsent": result["unsent"],
        "p50_ms": _percentile(latencies, 0.5),
        "p95_ms": _percentile(latencies, 0.95),
        "p99_ms": _percentile(latencies, 0.99),
        "machine": _machine(),
    }
    if result["errors"]:
        logger.warning("load test errors (first 5): %s", result["errors"][:5])
    logger.info("%s load: %.0f/s achieved of %.0f/s, %d errors, p95 %.1f ms", backend, row["achieved_rps"], rate, row["errors"], row["p95_ms"])
    return row


def _sample_ids(k: int = 200) -> list[str]:
    from crystaloop.benchmarks.optimade_rows import synthetic_id

    return [synthetic_id(SEED, i) for i in range(k)]


def _bench_backend(url: str, backend: str, n: int, repeats: int, rates: tuple[float, ...], duration: float) -> list[dict[str, Any]]:
    from crystaloop.benchmarks.optimade_rows import bulk_load

    report = bulk_load(url, n, seed=SEED)
    rows: list[dict[str, Any]] = [
        {
            "case": "bulk_load",
            "backend": backend,
            "candidates": n,
            "seconds": report.seconds,
            "candidates_per_s": report.per_second,
            "rows": sum(report.rows.values()),
            "machine": _machine(),
        }
    ]
    logger.info("%s: bulk-loaded %d candidates in %.1f s", backend, n, report.seconds)
    with _server(url) as port:
        rows += _filter_latencies(port, SEED, repeats, backend, n)
        for rate in rates:
            if rate > 0:
                rows.append(_load_test(port, SEED, _sample_ids(), rate, duration, backend, n))
    return rows


def run(
    quick: bool = False, *, load_rates: tuple[float, ...] = (100.0, 200.0), load_duration: float | None = None
) -> list[dict[str, Any]]:
    """Benchmark rows: bulk load, filter latencies and load tests, for SQLite and PostgreSQL.

    Args:
        quick: 5·10³ (SQLite) and 2·10⁴ (PostgreSQL) candidates instead of 10⁵ and 10⁶, 10
            requests per filter instead of 40, 5 s load tests instead of 30 s.
        load_rates: target request rates of the load tests (requests/s; each its own run).
        load_duration: seconds per load test (default by ``quick``).
    """
    n_sqlite, n_postgres = (5_000, 20_000) if quick else (100_000, 1_000_000)
    repeats = 10 if quick else 40
    duration = load_duration if load_duration is not None else (5.0 if quick else 30.0)
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="bench-optimade-") as folder:
        url = f"sqlite:///{Path(folder) / 'store.db'}"
        rows += _bench_backend(url, "sqlite", n_sqlite, repeats, load_rates, duration)
    with _postgres_store() as pg_url:
        if pg_url is None:
            rows.append({"case": "postgresql", "backend": "postgresql", "note": "skipped: no server on 127.0.0.1:5432"})
        else:
            rows += _bench_backend(pg_url, "postgresql", n_postgres, repeats, load_rates, duration)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small stores and a 5 s load test")
    parser.add_argument("--rate", type=float, action="append", help="load test requests per second, repeatable (default 100 and 200; 0: none)")
    parser.add_argument("--duration", type=float, default=None, help="load test seconds")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    logging.getLogger("alembic").setLevel(logging.WARNING)
    rates = tuple(args.rate) if args.rate else (100.0, 200.0)
    for row in run(args.quick, load_rates=rates, load_duration=args.duration):
        logger.info("%s", {k: round(v, 2) if isinstance(v, float) else v for k, v in row.items()})


if __name__ == "__main__":
    main()
