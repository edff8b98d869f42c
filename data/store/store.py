"""`CandidateStore`: every candidate a campaign produced, with its status history and results.

One class over SQLAlchemy Core, the same on a SQLite file (default ``sqlite:///crystaloop.db``)
and PostgreSQL. Candidates are keyed by their crystal's canonical hash, so adding is idempotent:
the same crystal from two generators, two processes or two runs is one row.

Writes happen in short transactions: one per :meth:`CandidateStore.add_many` chunk (a candidate
row, its elements, its initial status and its records are committed together or not at all),
one per status change, one per :meth:`CandidateStore.record` call.

Example::

    with CandidateStore("sqlite:///runs/demo/store.db") as store:
        report = store.add_many(candidates)
        store.update_status(report.ids[0], "scored")
        hits = store.query(CandidateFilter(elements=["Sr", "O"], status=["scored"], limit=50))
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from itertools import islice
from typing import Any

from sqlalchemy import Connection, Table, func, select, text, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import SQLAlchemyError

from crystaloop.data.errors import StatusTransitionError, StoreError
from crystaloop.data.records import Candidate, CandidateStatus, Measurement, Prediction, Verdict, check_transition
from crystaloop.data.store import rows as R
from crystaloop.data.store.campaigns import CampaignMixin
from crystaloop.data.store.embeddings import EmbeddingMixin
from crystaloop.data.store.engine import create_store_engine, redact_url, resolve_store_url, write_transaction
from crystaloop.data.store.migrate import check_revision, head_revision, upgrade
from crystaloop.data.store.models import AddReport, IterationRecord, StatusChange
from crystaloop.data.store.queries import CandidateFilter, as_filter, filter_conditions, select_candidates
from crystaloop.data.store.schema import (
    CampaignRow,
    CandidateElementRow,
    CandidateRow,
    MeasurementRow,
    PredictionRow,
    StatusHistoryRow,
    VerdictRow,
    utcnow,
)

__all__ = ["CandidateStore", "AddReport", "StatusChange", "IterationRecord"]

logger = logging.getLogger(__name__)

_CANDIDATES: Table = CandidateRow.__table__  # type: ignore[assignment]
_ELEMENTS: Table = CandidateElementRow.__table__  # type: ignore[assignment]
_PREDICTIONS: Table = PredictionRow.__table__  # type: ignore[assignment]
_MEASUREMENTS: Table = MeasurementRow.__table__  # type: ignore[assignment]
_VERDICTS: Table = VerdictRow.__table__  # type: ignore[assignment]
_HISTORY: Table = StatusHistoryRow.__table__  # type: ignore[assignment]
_CAMPAIGNS: Table = CampaignRow.__table__  # type: ignore[assignment]

ANALYZE_AFTER = 5000
"""A store refreshes the planner statistics once it has added this many candidates (and at least
a fifth of the rows it counted at its last refresh), whatever the sizes of the add_many calls."""
_IN_CHUNK = 500  # ids per IN (...) list, well below SQLite's bound-parameter limit
_UPSERT_KEYS = {
    "predictions": ("candidate_id", "model", "property"),
    "measurements": ("candidate_id", "oracle", "property"),
    "verdicts": ("candidate_id", "guard"),
}


class CandidateStore(CampaignMixin, EmbeddingMixin):
    """Candidates, their status history and results in a SQL database (SQLite or PostgreSQL).

    Args:
        url: SQLAlchemy URL; ``None`` reads ``$CRYSTALOOP_DB_URL`` and falls back to
            ``sqlite:///crystaloop.db`` (see :func:`resolve_store_url`).
        migrate: bring the schema to this code's newest revision (``alembic upgrade head``).
            With ``False`` the database must already be at that revision.

    Raises:
        StoreError: bad URL, unreachable database, or a schema newer than this code knows.
    """

    def __init__(self, url: str | None = None, *, migrate: bool = True) -> None:
        self.url: str = resolve_store_url(url)
        self._closed = False
        self._added_since_analyze = 0
        self._rows_at_analyze = 0
        self._engine = create_store_engine(self.url)
        self._dialect = self._engine.dialect.name
        try:
            if migrate:
                upgrade(self._engine)
            else:
                with self._engine.connect() as conn:
                    revision = check_revision(conn, self.url)
                if revision != head_revision():
                    raise StoreError(
                        f"store {redact_url(self.url)} is at schema revision {revision!r}, this code needs "
                        f"{head_revision()!r}; open it with migrate=True to upgrade"
                    )
        except StoreError:
            self._engine.dispose()
            raise
        except SQLAlchemyError as exc:
            self._engine.dispose()
            raise StoreError(f"cannot open store {redact_url(self.url)}: {exc}") from exc
        logger.debug("opened candidate store %s", redact_url(self.url))

    # ------------------------------------------------------------------ lifecycle
    def close(self) -> None:
        """Release every connection; the store cannot be used afterwards."""
        if not self._closed:
            self._engine.dispose()
            self._closed = True

    def __enter__(self) -> CandidateStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"CandidateStore({redact_url(self.url)!r})"

    def _check_open(self) -> None:
        if self._closed:
            raise StoreError(f"store {redact_url(self.url)} is closed")

    @contextmanager
    def _read(self) -> Iterator[Connection]:
        """A connection for reading; database faults surface as :class:`StoreError`."""
        self._check_open()
        try:
            with self._engine.connect() as conn:
                yield conn
        except SQLAlchemyError as exc:
            raise StoreError(f"store {redact_url(self.url)}: {exc}") from exc

    @contextmanager
    def _write(self) -> Iterator[Connection]:
        """One write transaction (see :func:`write_transaction`); faults surface as :class:`StoreError`."""
        self._check_open()
        try:
            with write_transaction(self._engine) as conn:
                yield conn
        except SQLAlchemyError as exc:
            raise StoreError(f"store {redact_url(self.url)}: {exc}") from exc

    def _insert(self, table: Table) -> Any:
        return postgresql.insert(table) if self._dialect == "postgresql" else sqlite.insert(table)

    def _upsert(self, conn: Connection, table: Table, rows: list[dict[str, Any]]) -> None:
        """INSERT … ON CONFLICT (its unique key) DO UPDATE: re-recording overwrites."""
        keys = _UPSERT_KEYS[table.name]
        rows = R.dedupe(rows, keys)  # keeps the given order: records read back in insertion order
        if not rows:
            return
        stmt = self._insert(table)
        update_cols = [c for c in rows[0] if c not in keys]
        stmt = stmt.on_conflict_do_update(index_elements=list(keys), set_={c: stmt.excluded[c] for c in update_cols})
        conn.execute(stmt, rows)

    # ------------------------------------------------------------------ adding
    def add(self, candidate: Candidate, *, compute_spacegroup: bool = True) -> bool:
        """Store ``candidate`` unless its id is already stored; ``True`` if it was new.

        A new candidate gets one status-history row (its current status) and its predictions,
        measurements and verdicts; an existing one is left untouched (use :meth:`record` and
        :meth:`update_status` to change it).
        """
        return self.add_many([candidate], compute_spacegroup=compute_spacegroup).added == 1

    def add_many(
        self, candidates: Iterable[Candidate], *, chunk_size: int = 1000, compute_spacegroup: bool = True
    ) -> AddReport:
        """Store many candidates, ``chunk_size`` per transaction; existing ids are skipped.

        Uses ``INSERT … ON CONFLICT DO NOTHING``, so concurrent writers adding the same crystals
        never fail and never duplicate. A failure in one chunk leaves the chunks before it
        committed and no part of its own candidates written.

        Args:
            candidates: any iterable (consumed once, chunk by chunk).
            chunk_size: candidates per transaction (≥ 1).
            compute_spacegroup: fill ``spacegroup_number`` with spglib (about 1 ms per candidate);
                ``False`` leaves it NULL, for bulk imports where insert speed matters.

        Note:
            Predictions of a :class:`Candidate` carry no model name; they are stored with model
            ``""`` (use :meth:`record` with ``model=`` to name it).
        """
        if not isinstance(chunk_size, int) or chunk_size < 1:
            raise StoreError(f"chunk_size must be a positive integer, got {chunk_size!r}")
        ids: list[str] = []
        added = 0
        iterator = iter(candidates)
        while chunk := list(islice(iterator, chunk_size)):
            for item in chunk:
                if not isinstance(item, Candidate):
                    raise StoreError(f"add_many takes Candidate records, got {type(item).__name__}")
            chunk_ids = [c.id for c in chunk]
            ids.extend(chunk_ids)
            added += self._add_chunk(chunk, chunk_ids, compute_spacegroup)
        logger.debug("add_many: %d new, %d existing", added, len(ids) - added)
        self._added_since_analyze += added
        if self._added_since_analyze >= max(ANALYZE_AFTER, self._rows_at_analyze // 5):
            self.analyze()
        return AddReport(added=added, existing=len(ids) - added, ids=ids)

    def _add_chunk(self, chunk: list[Candidate], chunk_ids: list[str], compute_spacegroup: bool) -> int:
        unique: dict[str, Candidate] = {}
        for cid, candidate in zip(chunk_ids, chunk, strict=True):
            unique.setdefault(cid, candidate)
        with self._read() as conn:  # skip the derived-column work for rows we already have
            known = self._existing_ids(conn, list(unique))
        fresh = {cid: c for cid, c in unique.items() if cid not in known}
        if not fresh:
            return 0
        now = utcnow()
        # Rows in id order: concurrent writers then take row locks in one global order and
        # cannot deadlock on PostgreSQL (SQLite serialises writers anyway).
        rows = [R.candidate_row(fresh[cid], cid, now, compute_spacegroup=compute_spacegroup) for cid in sorted(fresh)]
        with self._write() as conn:
            self._ensure_campaigns(conn, (r["campaign_id"] for r in rows if r["campaign_id"] is not None), now)
            stmt = self._insert(_CANDIDATES).on_conflict_do_nothing(index_elements=["id"]).returning(_CANDIDATES.c.id)
            inserted = set(conn.execute(stmt, rows).scalars().all())
            if not inserted:
                return 0
            new_rows = [r for r in rows if r["id"] in inserted]
            conn.execute(
                self._insert(_ELEMENTS),
                [e for r in new_rows for e in R.element_rows(r["id"], r["elements"], fresh[r["id"]].crystal.composition)],
            )
            conn.execute(
                self._insert(_HISTORY),
                [
                    {"candidate_id": r["id"], "from_status": None, "to_status": r["status"], "note": "added", "at": now}
                    for r in new_rows
                ],
            )
            predictions: list[dict[str, Any]] = []
            measurements: list[dict[str, Any]] = []
            verdicts: list[dict[str, Any]] = []
            for r in new_rows:
                candidate = fresh[r["id"]]
                predictions += R.prediction_rows(r["id"], candidate.predictions, "", now)
                measurements += R.measurement_rows(r["id"], candidate.measurements, now)
                verdicts += R.verdict_rows(r["id"], candidate.verdicts, now)
            self._upsert(conn, _PREDICTIONS, predictions)
            self._upsert(conn, _MEASUREMENTS, measurements)
            self._upsert(conn, _VERDICTS, verdicts)
        return len(inserted)

    def analyze(self) -> None:
        """Refresh the query planner's statistics (``ANALYZE``); cheap, worth it after bulk imports.

        Without statistics SQLite picks poor plans for element queries on large stores.
        :meth:`add_many` calls it by itself as the store grows (see ``ANALYZE_AFTER``).
        """
        # Bare ANALYZE on PostgreSQL would visit every table of the database, not just ours.
        statement = "ANALYZE" if self._dialect == "sqlite" else "ANALYZE candidates, candidate_elements, status_history"
        with self._write() as conn:
            conn.execute(text(statement))
            self._rows_at_analyze = conn.execute(select(func.count()).select_from(_CANDIDATES)).scalar_one()
        self._added_since_analyze = 0

    @staticmethod
    def _existing_ids(conn: Connection, ids: Sequence[str]) -> set[str]:
        found: set[str] = set()
        for part in _chunks(ids, _IN_CHUNK):
            found.update(conn.execute(select(_CANDIDATES.c.id).where(_CANDIDATES.c.id.in_(part))).scalars())
        return found

    # ------------------------------------------------------------------ reading
    def __contains__(self, candidate_id: object) -> bool:
        """Whether a candidate (or a candidate id) is stored."""
        if isinstance(candidate_id, Candidate):
            candidate_id = candidate_id.id
        if not isinstance(candidate_id, str):
            return False
        with self._read() as conn:
            return bool(self._existing_ids(conn, [candidate_id]))

    def get(self, candidate_id: str) -> Candidate:
        """The stored candidate with this id, with its verdicts, predictions and measurements.

        Raises:
            StoreError: no candidate has this id.
        """
        with self._read() as conn:
            found = self._load(conn, conn.execute(select(_CANDIDATES).where(_CANDIDATES.c.id == candidate_id)))
        if not found:
            raise StoreError(f"no candidate with id {candidate_id!r} in store {redact_url(self.url)}")
        return found[0]

    def query(self, filter: CandidateFilter | Mapping[str, Any] | None = None) -> list[Candidate]:  # noqa: A002
        """Candidates matching ``filter`` (default: the first 100 by creation time).

        Raises:
            QueryError: ``filter`` is not a filter. ``pydantic.ValidationError``: a dict with bad values.
        """
        flt = as_filter(dict(filter) if isinstance(filter, Mapping) else filter)
        with self._read() as conn:
            return self._load(conn, conn.execute(select_candidates(flt)))

    def count(self, filter: CandidateFilter | Mapping[str, Any] | None = None) -> int:  # noqa: A002
        """How many candidates match ``filter`` (its ``limit`` and ``offset`` are ignored)."""
        flt = as_filter(dict(filter) if isinstance(filter, Mapping) else filter)
        stmt = select(func.count()).select_from(_CANDIDATES).where(*filter_conditions(flt))
        with self._read() as conn:
            return int(conn.execute(stmt).scalar_one())

    def _load(self, conn: Connection, result: Any) -> list[Candidate]:
        """Candidates for the candidate rows in ``result``, with their records, in row order."""
        rows = [dict(r._mapping) for r in result]
        if not rows:
            return []
        ids = [r["id"] for r in rows]
        children: dict[str, dict[str, list[dict[str, Any]]]] = {cid: {} for cid in ids}
        for name, table, order in (
            ("predictions", _PREDICTIONS, (_PREDICTIONS.c.created_at, _PREDICTIONS.c.id)),
            ("measurements", _MEASUREMENTS, (_MEASUREMENTS.c.id,)),
            ("verdicts", _VERDICTS, (_VERDICTS.c.id,)),
        ):
            for part in _chunks(ids, _IN_CHUNK):
                stmt = select(table).where(table.c.candidate_id.in_(part)).order_by(*order)
                for child in conn.execute(stmt):
                    children[child.candidate_id].setdefault(name, []).append(dict(child._mapping))
        return [R.row_to_candidate(r, **children[r["id"]]) for r in rows]

    # ------------------------------------------------------------------ changing
    def update_status(self, candidate_id: str, status: CandidateStatus | str, note: str = "") -> None:
        """Move a candidate to ``status`` and log the change (a no-op when it already has it).

        The row is locked for the check-and-write (``SELECT … FOR UPDATE`` on PostgreSQL, the
        write lock on SQLite), so concurrent updates cannot both pass the transition check.

        Raises:
            StatusTransitionError: ``status`` is unknown or not reachable from the current one
                (nothing is written).
            StoreError: no candidate has this id.
        """
        try:
            new = CandidateStatus(status)
        except ValueError:
            allowed = ", ".join(s.value for s in CandidateStatus)
            raise StatusTransitionError(f"unknown status {status!r}; allowed: {allowed}") from None
        with self._write() as conn:
            current = conn.execute(
                select(_CANDIDATES.c.status).where(_CANDIDATES.c.id == candidate_id).with_for_update()
            ).scalar_one_or_none()
            if current is None:
                raise StoreError(f"no candidate with id {candidate_id!r} in store {redact_url(self.url)}")
            check_transition(current, new)
            if CandidateStatus(current) == new:
                return
            now = utcnow()
            conn.execute(
                update(_CANDIDATES).where(_CANDIDATES.c.id == candidate_id).values(status=new.value, updated_at=now)
            )
            conn.execute(
                self._insert(_HISTORY).values(
                    candidate_id=candidate_id, from_status=current, to_status=new.value, note=note, at=now
                )
            )

    def record(
        self,
        candidate_id: str,
        *,
        predictions: Mapping[str, tuple[float, float, str]] | Prediction | None = None,
        model: str | None = None,
        measurements: Iterable[Measurement] = (),
        verdicts: Iterable[Verdict] = (),
    ) -> None:
        """Store results for a candidate; a result with the same key overwrites the old one.

        Keys: (model, property) for predictions, (oracle, property) for measurements, guard for
        verdicts.

        Args:
            predictions: property → (mean, std, units), or a one-row :class:`Prediction`.
            model: model name of ``predictions`` (default: the Prediction's ``model``, else ``""``).
            measurements: oracle results.
            verdicts: guard verdicts.

        Raises:
            StoreError: no candidate has this id, or a malformed prediction.
        """
        if isinstance(predictions, Prediction):
            if len(predictions) != 1:
                raise StoreError(
                    f"record() takes a one-row Prediction, got {len(predictions)} rows; "
                    "pass prediction.row(i) with model=... or use record_predictions()"
                )
            model = predictions.model if model is None else model
            predictions = predictions.row(0)
        now = utcnow()
        prediction_rows = R.prediction_rows(candidate_id, predictions or {}, model or "", now)
        measurement_rows = R.measurement_rows(candidate_id, measurements, now)
        verdict_rows = R.verdict_rows(candidate_id, verdicts, now)
        with self._write() as conn:
            # Locks the candidate row first: concurrent record() calls on one candidate queue here.
            touched = conn.execute(
                update(_CANDIDATES).where(_CANDIDATES.c.id == candidate_id).values(updated_at=now)
            ).rowcount
            if not touched:
                raise StoreError(f"no candidate with id {candidate_id!r} in store {redact_url(self.url)}")
            self._upsert(conn, _PREDICTIONS, prediction_rows)
            self._upsert(conn, _MEASUREMENTS, measurement_rows)
            self._upsert(conn, _VERDICTS, verdict_rows)

    def record_predictions(self, candidate_ids: Sequence[str], prediction: Prediction) -> None:
        """Store a surrogate's :class:`Prediction` for many candidates in one transaction.

        Row ``i`` of ``prediction`` belongs to ``candidate_ids[i]``; the model name is
        ``prediction.model``.

        Raises:
            StoreError: lengths differ, or an id is not stored (nothing is written then).
        """
        if len(candidate_ids) != len(prediction):
            raise StoreError(f"{len(candidate_ids)} candidate ids for a Prediction of {len(prediction)} rows")
        now = utcnow()
        rows = [
            row
            for i, cid in enumerate(candidate_ids)
            for row in R.prediction_rows(cid, prediction.row(i), prediction.model, now)
        ]
        with self._write() as conn:
            missing = set(candidate_ids) - self._existing_ids(conn, list(dict.fromkeys(candidate_ids)))
            if missing:
                raise StoreError(f"no candidates with ids {sorted(missing)[:5]} ({len(missing)} missing)")
            # Sorted by key so that concurrent batches lock rows in one order (no deadlocks).
            rows.sort(key=lambda r: (r["candidate_id"], r["property"]))
            for part in _chunks(rows, 5000):
                self._upsert(conn, _PREDICTIONS, list(part))

    # ------------------------------------------------------------------ history
    def status_history(self, candidate_id: str) -> list[StatusChange]:
        """Every status of one candidate, oldest first (the first has ``from_status=None``).

        Raises:
            StoreError: no candidate has this id.
        """
        stmt = select(_HISTORY).where(_HISTORY.c.candidate_id == candidate_id).order_by(_HISTORY.c.id)
        with self._read() as conn:
            changes = [_change(r) for r in conn.execute(stmt)]
        if not changes and candidate_id not in self:
            raise StoreError(f"no candidate with id {candidate_id!r} in store {redact_url(self.url)}")
        return changes

    def history(self, campaign: str) -> list[StatusChange]:
        """All status changes of a campaign's candidates, in the order they happened.

        Raises:
            StoreError: no campaign has this id.
        """
        stmt = (
            select(_HISTORY)
            .join(_CANDIDATES, _CANDIDATES.c.id == _HISTORY.c.candidate_id)
            .where(_CANDIDATES.c.campaign_id == campaign)
            .order_by(_HISTORY.c.id)
        )
        with self._read() as conn:
            changes = [_change(r) for r in conn.execute(stmt)]
            if not changes:
                self._require_campaign(conn, campaign)
        return changes

    # ------------------------------------------------------------------ overview
    def summary(self, top: int = 10) -> dict[str, Any]:
        """Counts for a quick look (``crystaloop db ls``, the demo).

        Returns:
            ``{"url", "backend", "total", "by_status": {status: n}, "by_nelements": {k: n},
            "top_formulas": [(formula, n), …] (the ``top`` most frequent, most frequent first),
            "campaigns": n}``.
        """
        c = _CANDIDATES.c
        with self._read() as conn:
            by_status = dict(conn.execute(select(c.status, func.count()).group_by(c.status).order_by(c.status)).all())
            by_nelements = dict(
                conn.execute(select(c.nelements, func.count()).group_by(c.nelements).order_by(c.nelements)).all()
            )
            n = func.count().label("n")
            formulas = conn.execute(
                select(c.reduced_formula, n)
                .group_by(c.reduced_formula)
                .order_by(n.desc(), c.reduced_formula)
                .limit(top)
            ).all()
            campaigns = conn.execute(select(func.count()).select_from(_CAMPAIGNS)).scalar_one()
        return {
            "url": redact_url(self.url),
            "backend": self._dialect,
            "total": int(sum(by_status.values())),
            "by_status": {str(k): int(v) for k, v in by_status.items()},
            "by_nelements": {int(k): int(v) for k, v in by_nelements.items()},
            "top_formulas": [(str(f), int(k)) for f, k in formulas],
            "campaigns": int(campaigns),
        }


def _change(row: Any) -> StatusChange:
    return StatusChange(
        candidate_id=row.candidate_id,
        from_status=row.from_status,
        to_status=row.to_status,
        note=row.note,
        at=row.at,
    )


def _chunks(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
