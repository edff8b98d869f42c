"""Seeded synthetic candidate rows loaded in bulk, for benchmarks of the OPTIMADE API at 10⁵–10⁶ rows.

Every candidate is a valid crystal (a small perovskite, rock-salt, zinc-blende or fluorite cell
with random species, a random strain of ±3 % and site displacements of 0.02 in fractional units)
with every derived column the store computes, one status-history row, per-element counts and
ratios, and records that match its status: predictions (formation energy and band gap, mean ± std)
from ``scored`` on, oracle measurements (``e_above_hull`` in eV/atom, ``formation_energy_per_atom``)
for ``evaluated`` and a failed measurement for ``failed``, guard verdicts (a failed ``smact``
verdict for ``rejected``). Statuses, campaigns (``bulk-<seed>-<k>``) and iterations are drawn
from fixed mixes.

Two shortcuts keep it fast, and make these rows unlike ``CandidateStore.add`` ones: ids are
synthetic (sha256 of seed and index, not the canonical hash, which costs ~5 ms a crystal) and
``spacegroup_number`` is NULL (spglib ~1 ms a crystal). Rows go in with ``COPY`` on PostgreSQL
(foreign-key triggers off for superusers, secondary indexes built after the load into an empty
store) and with one executemany per table and batch on SQLite; the planner statistics are
refreshed at the end.

Example::

    report = bulk_load("postgresql://postgres@127.0.0.1/test", 1_000_000, seed=7)
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import numpy as np
import orjson
from ase.data import atomic_masses, chemical_symbols
from sqlalchemy import Engine, Table, TextClause, insert, select, text

from crystaloop.data.errors import StoreError
from crystaloop.data.store import CandidateStore
from crystaloop.data.store import rows as R
from crystaloop.data.store.engine import create_store_engine, redact_url
from crystaloop.data.store.schema import (
    ELEMENT_ARRAY_INDEX,
    CampaignRow,
    CandidateElementRow,
    CandidateRow,
    MeasurementRow,
    PredictionRow,
    StatusHistoryRow,
    VerdictRow,
)

__all__ = ["BulkReport", "synthetic_batches", "bulk_load", "synthetic_id", "STATUS_MIX"]

logger = logging.getLogger(__name__)

STATUS_MIX: tuple[tuple[str, float], ...] = (
    ("generated", 0.40),
    ("scored", 0.25),
    ("rejected", 0.15),
    ("selected", 0.05),
    ("evaluated", 0.12),
    ("failed", 0.03),
)
"""Share of each status among the synthetic candidates."""
CAMPAIGNS = 10
ITERATIONS = 8
_EPOCH = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
_AVOGADRO = 6.02214076e23

# (name, lattice in units of a, fractional sites, species pool per site label, site labels, a in Å)
_PROTOTYPES: tuple[tuple[str, np.ndarray, np.ndarray, tuple[tuple[str, ...], ...], tuple[int, ...], float], ...] = (
    (
        "perovskite",
        np.eye(3),
        np.array([[0, 0, 0], [0.5, 0.5, 0.5], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]], dtype=float),
        (("Sr", "Ba", "Ca", "La", "K", "Na", "Pb"), ("Ti", "Zr", "Nb", "Fe", "Mn", "Co", "Sn"), ("O", "F")),
        (0, 1, 2, 2, 2),
        3.95,
    ),
    (
        "rocksalt",
        np.eye(3),
        np.array(
            [[0, 0, 0], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5], [0.5, 0, 0], [0, 0.5, 0], [0, 0, 0.5], [0.5, 0.5, 0.5]],
            dtype=float,
        ),
        (("Na", "K", "Mg", "Ca", "Li", "Sr", "Ba"), ("Cl", "O", "F", "Br", "S", "I")),
        (0, 0, 0, 0, 1, 1, 1, 1),
        5.3,
    ),
    (
        "zincblende",
        0.5 * np.array([[0.0, 1.0, 1.0], [1.0, 0.0, 1.0], [1.0, 1.0, 0.0]]),
        np.array([[0, 0, 0], [0.25, 0.25, 0.25]], dtype=float),
        (("Si", "Ge", "C", "Ga", "Zn", "Cd", "In"), ("Si", "Ge", "C", "As", "S", "Se", "P")),
        (0, 1),
        5.6,
    ),
    (
        "fluorite",
        0.5 * np.array([[0.0, 1.0, 1.0], [1.0, 0.0, 1.0], [1.0, 1.0, 0.0]]),
        np.array([[0, 0, 0], [0.25, 0.25, 0.25], [0.75, 0.75, 0.75]], dtype=float),
        (("Ca", "Sr", "Ba", "Ce", "Zr", "U", "Th"), ("F", "O", "Cl")),
        (0, 1, 1),
        5.5,
    ),
)
_Z = {s: i for i, s in enumerate(chemical_symbols)}


@dataclass
class BulkReport:
    """What :func:`bulk_load` wrote: rows per table, wall time in seconds, backend."""

    candidates: int
    seconds: float
    backend: str
    rows: dict[str, int] = field(default_factory=dict)

    @property
    def per_second(self) -> float:
        """Candidates (with all their rows) loaded per second."""
        return self.candidates / self.seconds if self.seconds > 0 else float("inf")


def synthetic_id(seed: int, index: int) -> str:
    """The id of synthetic candidate ``index`` of ``seed`` (64 hex characters, like real ids)."""
    return hashlib.sha256(f"crystaloop-bulk:{seed}:{index}".encode()).hexdigest()


def _dumps(value: Any) -> str:
    """Compact JSON text (shortest round-trip floats, like ``json.dumps``)."""
    return orjson.dumps(value).decode()


def _timestamp(seconds: float) -> dt.datetime:
    return _EPOCH + dt.timedelta(seconds=float(seconds))


def synthetic_batches(n: int, seed: int, *, start: int = 0, batch_size: int = 20_000) -> Iterator[dict[str, list[dict[str, Any]]]]:
    """Rows of ``n`` synthetic candidates per table, ``batch_size`` candidates at a time (seeded).

    Each batch maps table name → list of row dicts (``campaigns`` only in the first batch). The
    random generator of a batch is seeded with ``(seed, first index)``, so the rows are the same
    for the same ``seed``, ``start`` and ``batch_size``.
    """
    statuses = [s for s, _ in STATUS_MIX]
    shares = np.array([p for _, p in STATUS_MIX])
    for batch_start in range(start, start + n, batch_size):
        count = min(batch_size, start + n - batch_start)
        rng = np.random.default_rng([seed, batch_start])
        batch: dict[str, list[dict[str, Any]]] = {t: [] for t in ("campaigns", "candidates", "candidate_elements", "status_history", "predictions", "measurements", "verdicts")}
        if batch_start == start:
            batch["campaigns"] = [
                {"id": f"bulk-{seed}-{k}", "name": f"bulk campaign {k}", "config_json": "{}", "config_hash": f"bulk-{seed}-{k}", "created_at": _EPOCH}
                for k in range(CAMPAIGNS)
            ]
        kinds = rng.integers(len(_PROTOTYPES), size=count)
        status_idx = rng.choice(len(statuses), size=count, p=shares)
        campaigns = rng.integers(-1, CAMPAIGNS, size=count)  # -1: no campaign (imported-like)
        iterations = rng.integers(ITERATIONS, size=count)
        strains = np.eye(3) + rng.uniform(-0.03, 0.03, size=(count, 3, 3))
        noise = rng.normal(0.0, 0.02, size=(count, 8, 3))
        picks = rng.random(size=(count, 3))
        values = rng.normal(size=(count, 6))
        bases = np.stack([p[5] * p[1] for p in _PROTOTYPES])[kinds]
        lattices = np.einsum("nij,njk->nik", bases, strains)
        volumes = np.abs(np.linalg.det(lattices))
        for j in range(count):
            _, _, base_frac, pools, labels, _ = _PROTOTYPES[kinds[j]]
            chosen = [pool[int(picks[j, k] * len(pool))] for k, pool in enumerate(pools)]
            symbols = [chosen[label] for label in labels]
            frac = base_frac + noise[j, : len(labels)]
            frac -= np.floor(frac)
            frac[frac >= 1.0] = 0.0
            _candidate_rows(
                batch, seed, batch_start + j, statuses[status_idx[j]], int(campaigns[j]), int(iterations[j]),
                symbols, lattices[j], float(volumes[j]), frac, values[j],
            )
        yield batch


def _candidate_rows(
    batch: dict[str, list[dict[str, Any]]],
    seed: int,
    i: int,
    status: str,
    campaign: int,
    iteration: int,
    symbols: list[str],
    lattice: np.ndarray,
    volume: float,
    frac: np.ndarray,
    values: np.ndarray,
) -> None:
    """Append the rows of synthetic candidate ``i`` (all tables) to ``batch``."""
    cid = synthetic_id(seed, i)
    numbers = [_Z[s] for s in symbols]
    counts: dict[str, int] = {}
    for s in sorted(symbols, key=_Z.__getitem__):
        counts[s] = counts.get(s, 0) + 1
    composition = tuple(counts.items())
    reduced, anonymous = R.formulas(composition)
    optimade_reduced, descriptive = R.optimade_formulas(composition)
    mass = float(sum(atomic_masses[z] for z in numbers))
    created = _timestamp(i * 0.5)
    updated = created + dt.timedelta(seconds=3600.0 * (1 + iteration))
    campaign_id = f"bulk-{seed}-{campaign}" if campaign >= 0 else None
    provenance = {"component": "bulk-synthetic", "version": "1", "checkpoint_hash": None, "config_hash": None, "seed": seed,
                  "campaign": campaign_id, "iteration": iteration if campaign_id else None, "source": None}
    elements = sorted(counts)
    batch["candidates"].append({
        "id": cid, "lattice": _dumps(lattice.tolist()), "frac_coords": _dumps(frac.tolist()), "numbers": _dumps(numbers),
        "reduced_formula": reduced, "chemical_formula_anonymous": anonymous, "chemical_formula_reduced": optimade_reduced,
        "chemical_formula_descriptive": descriptive, "elements": ",".join(elements), "nelements": len(elements),
        "nsites": len(numbers), "spacegroup_number": None, "volume": volume, "density": mass / _AVOGADRO / (volume * 1e-24),
        "status": status, "campaign_id": campaign_id, "iteration": provenance["iteration"],
        "provenance_json": _dumps(provenance), "condition_json": None, "created_at": created, "updated_at": updated,
    })
    batch["candidate_elements"] += R.element_rows(cid, ",".join(elements), counts)
    batch["status_history"].append({"candidate_id": cid, "from_status": None, "to_status": status, "note": "bulk", "at": created})
    if status in ("scored", "selected", "evaluated", "rejected", "failed"):
        for prop, mean, std, units in (
            ("formation_energy_per_atom", -1.5 + 0.8 * values[0], 0.05 + 0.05 * abs(values[1]), "eV/atom"),
            ("band_gap", max(0.0, 1.5 + 1.2 * values[2]), 0.1 + 0.1 * abs(values[3]), "eV"),
        ):
            batch["predictions"].append({"candidate_id": cid, "model": "bulk-ensemble", "property": prop, "mean": float(mean),
                                         "std": float(std), "units": units, "created_at": updated})
    if status == "evaluated":
        for prop, value, units in (("e_above_hull", abs(0.02 + 0.12 * values[4]), "eV/atom"),
                                   ("formation_energy_per_atom", -1.5 + 0.8 * values[0] + 0.05 * values[5], "eV/atom")):
            batch["measurements"].append({"candidate_id": cid, "oracle": "chgnet", "property": prop, "value": float(value),
                                          "units": units, "status": "ok", "reason": "", "created_at": updated})
    elif status == "failed":
        batch["measurements"].append({"candidate_id": cid, "oracle": "chgnet", "property": "e_above_hull", "value": None,
                                      "units": "eV/atom", "status": "failed", "reason": "relaxation did not converge",
                                      "created_at": updated})
    if status != "generated":
        batch["verdicts"].append({"candidate_id": cid, "guard": "min_distance", "ok": True, "reason": "", "score": 1.2, "created_at": created})
        ok = status != "rejected"
        batch["verdicts"].append({"candidate_id": cid, "guard": "smact", "ok": ok, "reason": "" if ok else "not charge-balanced",
                                  "score": None, "created_at": created})


_TABLES: dict[str, Table] = {
    "campaigns": CampaignRow.__table__,  # type: ignore[dict-item]
    "candidates": CandidateRow.__table__,  # type: ignore[dict-item]
    "candidate_elements": CandidateElementRow.__table__,  # type: ignore[dict-item]
    "status_history": StatusHistoryRow.__table__,  # type: ignore[dict-item]
    "predictions": PredictionRow.__table__,  # type: ignore[dict-item]
    "measurements": MeasurementRow.__table__,  # type: ignore[dict-item]
    "verdicts": VerdictRow.__table__,  # type: ignore[dict-item]
}


def _copy_postgres(engine: Engine, batch: dict[str, list[dict[str, Any]]], *, skip_fk_checks: bool = False) -> None:
    """One transaction of ``COPY … FROM STDIN`` per table (psycopg 3).

    ``skip_fk_checks`` (superusers only) turns off the foreign-key triggers for the transaction:
    the rows are consistent by construction, and the checks cost about a third of the load.
    """
    raw = engine.raw_connection()
    try:
        with raw.cursor() as cursor:  # type: ignore[attr-defined]
            cursor.execute("SET LOCAL synchronous_commit = off")  # a crash loses the batch, not consistency
            if skip_fk_checks:
                cursor.execute("SET LOCAL session_replication_role = replica")
            for name, rows in batch.items():
                if not rows:
                    continue
                columns = list(rows[0])
                statement = f"COPY {name} ({', '.join(columns)}) FROM STDIN"  # names are ours, never user input
                with cursor.copy(statement) as copy:
                    for row in rows:
                        copy.write_row([row[c] for c in columns])
        raw.commit()
    except Exception:
        raw.rollback()
        raise
    finally:
        raw.close()


def _executemany_sqlite(engine: Engine, batch: dict[str, list[dict[str, Any]]]) -> None:
    """One write transaction with one executemany INSERT per table."""
    from crystaloop.data.store.engine import write_transaction

    with write_transaction(engine) as conn:
        for name, rows in batch.items():
            if rows:
                conn.execute(insert(_TABLES[name]), rows)


def bulk_load(
    url: str | None,
    n: int,
    *,
    seed: int = 0,
    batch_size: int = 20_000,
    defer_indexes: bool = True,
    progress: Callable[[int, int], None] | None = None,
) -> BulkReport:
    """Load ``n`` synthetic candidates (seeded) into the store at ``url``, fast.

    The store is created or migrated first; the same ``seed`` cannot be loaded twice into one
    store (ids would collide). With ``defer_indexes`` (PostgreSQL, empty store only) the
    secondary indexes are dropped during the load and built afterwards (faster than
    maintaining them row by row); queries on the store are slow until it returns.

    Raises:
        StoreError: ``n`` < 1, the seed's candidates are already there, or a database fault.
    """
    if n < 1:
        raise StoreError(f"bulk_load needs n >= 1 candidates, got {n}")
    CandidateStore(url).close()
    engine = create_store_engine(url)
    backend = engine.dialect.name
    rows: dict[str, int] = {}
    started = time.perf_counter()
    try:
        with engine.connect() as conn:
            if conn.execute(select(CandidateRow.id).where(CandidateRow.id == synthetic_id(seed, 0))).first():
                raise StoreError(f"store {redact_url(str(engine.url))} already holds the synthetic candidates of seed {seed}")
        if backend == "postgresql":
            with engine.connect() as conn:
                superuser = conn.execute(text("SHOW is_superuser")).scalar_one() == "on"
            write = partial(_copy_postgres, skip_fk_checks=superuser)
        else:
            write = _executemany_sqlite
        deferred = _drop_secondary_indexes(engine) if backend == "postgresql" and defer_indexes else []
        try:
            _write_batches(engine, write, synthetic_batches(n, seed, batch_size=batch_size), rows, n, progress)
        finally:
            _create_indexes(engine, deferred)  # also after a failed load: the schema stays whole
        _refresh_statistics(engine)
    finally:
        engine.dispose()
    seconds = time.perf_counter() - started
    logger.info("bulk-loaded %d candidates into %s in %.1f s", n, backend, seconds)
    return BulkReport(candidates=n, seconds=seconds, backend=backend, rows=rows)


def _write_batches(
    engine: Engine,
    write: Callable[[Engine, dict[str, list[dict[str, Any]]]], None],
    batches: Iterator[dict[str, list[dict[str, Any]]]],
    rows: dict[str, int],
    n: int,
    progress: Callable[[int, int], None] | None,
) -> None:
    """Write ``batches`` with one writer thread: the database ingests batch k while k+1 is generated."""
    written = 0
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="bulk-writer") as writer:
        pending: tuple[Future[None], int] | None = None
        for batch in batches:
            if pending is not None:
                pending[0].result()
                written += pending[1]
                if progress is not None:
                    progress(written, n)
            pending = (writer.submit(write, engine, batch), len(batch["candidates"]))
            for name, batch_rows in batch.items():
                rows[name] = rows.get(name, 0) + len(batch_rows)
        if pending is not None:
            pending[0].result()
            written += pending[1]
    if progress is not None:
        progress(written, n)


def _drop_secondary_indexes(engine: Engine) -> list[Any]:
    """Drop the non-unique indexes of the loaded tables if the store is empty; what to build again.

    That is the models' ``Index`` objects, plus the PostgreSQL-only GIN index of
    ``candidates.element_array`` (revision 0005) as its ``CREATE INDEX`` statement.
    """
    with engine.begin() as conn:
        if conn.execute(select(CandidateRow.id).limit(1)).first() is not None:
            return []
        dropped: list[Any] = [index for table in _TABLES.values() for index in table.indexes if not index.unique]
        for index in dropped:
            index.drop(conn)
        find = text("SELECT indexdef FROM pg_indexes WHERE schemaname = current_schema() AND indexname = :name")
        gin = conn.execute(find, {"name": ELEMENT_ARRAY_INDEX}).scalar()
        if gin is not None:
            conn.execute(text(f"DROP INDEX {ELEMENT_ARRAY_INDEX}"))  # a constant name, never user input
            dropped.append(text(gin))
    return dropped


def _create_indexes(engine: Engine, indexes: list[Any]) -> None:
    """Build the indexes that :func:`_drop_secondary_indexes` dropped (one transaction)."""
    if not indexes:
        return
    with engine.begin() as conn:
        conn.execute(text("SET LOCAL maintenance_work_mem = '256MB'"))
        for index in indexes:
            if isinstance(index, TextClause):
                conn.execute(index)
            else:
                index.create(conn)


def _refresh_statistics(engine: Engine) -> None:
    """``VACUUM ANALYZE`` our tables on PostgreSQL (visibility map for index-only scans), ``ANALYZE`` on SQLite."""
    if engine.dialect.name == "postgresql":
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text("VACUUM (ANALYZE) " + ", ".join(_TABLES)))
    else:
        with engine.connect() as conn:
            conn.execute(text("ANALYZE"))
            conn.commit()
