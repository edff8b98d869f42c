"""The alembic migrations build exactly the ORM schema, go down and up again, and keep data."""

from __future__ import annotations

import importlib

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Column, Integer, MetaData, Table, inspect, text, update

from crystaloop.data.errors import StoreError
from crystaloop.data.store import CandidateStore, current_revision, downgrade, head_revision, upgrade
from crystaloop.data.store.engine import create_store_engine, write_transaction
from crystaloop.data.store.schema import Base, include_object
from crystaloop.data.store.testing import make_candidates

TABLES = {
    "campaigns",
    "iterations",
    "candidates",
    "candidate_elements",
    "predictions",
    "measurements",
    "verdicts",
    "status_history",
    "candidate_embeddings",
    "candidate_element_sets",
}


def _diffs(engine, metadata: MetaData = Base.metadata) -> list:
    with engine.connect() as conn:
        # include_object: leave out the PostgreSQL-only element array of revision 0005 (not in the models)
        opts = {"compare_type": True, "compare_server_default": True, "include_object": include_object}
        context = MigrationContext.configure(conn, opts=opts)
        return compare_metadata(context, metadata)


def _tables(engine) -> set[str]:
    return set(inspect(engine).get_table_names()) - {"alembic_version"}


def test_upgrade_head_gives_exactly_the_orm_schema(store_url: str) -> None:
    engine = create_store_engine(store_url)
    try:
        assert _tables(engine) == set()
        upgrade(engine)
        assert _tables(engine) == TABLES
        assert _diffs(engine) == []
        with engine.connect() as conn:
            assert current_revision(conn) == head_revision() == "0007"
        # Control: the comparison does see a difference when there is one.
        changed = MetaData()
        for table in Base.metadata.sorted_tables:
            table.to_metadata(changed)
        Table("extra", changed, Column("id", Integer, primary_key=True))
        changed.tables["candidates"].append_column(Column("extra_col", Integer))
        kinds = {d[0] if isinstance(d, tuple) else d[0][0] for d in _diffs(engine, changed)}
        assert {"add_table", "add_column"} <= kinds
    finally:
        engine.dispose()


def test_downgrade_to_base_then_upgrade_again(store_url: str) -> None:
    engine = create_store_engine(store_url)
    try:
        upgrade(engine)
        downgrade(engine, "base")
        assert _tables(engine) == set()
        with engine.connect() as conn:
            assert current_revision(conn) is None
        upgrade(engine)
        assert _diffs(engine) == []
    finally:
        engine.dispose()
    with CandidateStore(store_url) as store:  # usable after the round trip
        assert store.add(make_candidates(1, seed=21)[0])


def test_reopening_keeps_data(store_url: str) -> None:
    candidates = make_candidates(3, seed=22)
    with CandidateStore(store_url) as store:
        store.add_many(candidates)
        store.update_status(candidates[0].id, "scored")
    for migrate in (True, False):
        with CandidateStore(store_url, migrate=migrate) as store:
            assert store.count() == 3
            assert store.get(candidates[1].id) == candidates[1]
            assert len(store.status_history(candidates[0].id)) == 2


def test_newer_schema_is_refused(store_url: str) -> None:
    with CandidateStore(store_url) as store:
        store.add(make_candidates(1, seed=23)[0])
        with write_transaction(store._engine) as conn:
            conn.execute(update(Table("alembic_version", MetaData(), Column("version_num"))).values(version_num="9999"))
    with pytest.raises(StoreError, match="revision '9999'.*upgrade crystaloop"):
        CandidateStore(store_url)
    with pytest.raises(StoreError, match="revision '9999'"):
        CandidateStore(store_url, migrate=False)


def test_unmigrated_database_needs_migrate(store_url: str) -> None:
    with pytest.raises(StoreError, match="revision None.*migrate=True"):
        CandidateStore(store_url, migrate=False)
    with CandidateStore(store_url) as store:
        assert store.count() == 0


def test_sqlite_pragmas(sqlite_url: str) -> None:
    with CandidateStore(sqlite_url) as store, store._engine.connect() as conn:
        assert conn.execute(text("PRAGMA journal_mode")).scalar_one().lower() == "wal"
        assert conn.execute(text("PRAGMA busy_timeout")).scalar_one() == 30000
        assert conn.execute(text("PRAGMA foreign_keys")).scalar_one() == 1


def test_env_module_is_inert_outside_alembic() -> None:
    module = importlib.import_module("crystaloop.data.store.migrations.env")
    assert module.MIGRATION_LOCK_KEY > 0


def test_in_memory_sqlite_works() -> None:
    with CandidateStore("sqlite://") as store:
        candidate = make_candidates(1, seed=24)[0]
        store.add(candidate)
        assert store.get(candidate.id) == candidate


def test_store_written_at_0003_upgrades_and_keeps_its_rows(store_url: str) -> None:
    """Rows written by revision-0003 code survive 0004 (details read as {}), which then takes unconverged."""
    from crystaloop.data.records import Measurement
    from crystaloop.data.store import rows as R
    from crystaloop.data.store.schema import utcnow

    candidate = make_candidates(1, seed=25)[0]
    old = (
        Measurement(oracle="chgnet", property="energy_per_atom", value=-3.5, units="eV/atom"),
        Measurement(oracle="chgnet", property="e_above_hull", value=None, status="failed", reason="no reference"),
    )
    engine = create_store_engine(store_url)
    try:
        upgrade(engine, "0003")
        tables = MetaData()
        tables.reflect(engine)
        now = utcnow()
        row = R.candidate_row(candidate, candidate.id, now)
        measurement_rows = R.measurement_rows(candidate.id, old, now)
        for m in measurement_rows:
            assert m.pop("details_json") is None  # the 0003 table has no such column
        with write_transaction(engine) as conn:
            conn.execute(tables.tables["candidates"].insert(), [row])
            conn.execute(tables.tables["candidate_elements"].insert(), R.element_rows(candidate.id, row["elements"]))
            conn.execute(tables.tables["measurements"].insert(), measurement_rows)
        with pytest.raises(Exception, match="(?i)check|too long"):  # 0003 refuses the new status
            with write_transaction(engine) as conn:
                conn.execute(tables.tables["measurements"].insert(), [{**measurement_rows[0], "property": "x", "status": "unconverged"}])
    finally:
        engine.dispose()
    with CandidateStore(store_url) as store:
        back = store.get(candidate.id)
        assert back.measurements == old and all(m.details == {} for m in back.measurements)
        unconverged = Measurement(oracle="chgnet", property="relaxed", value=-3.4, status="unconverged", details={"steps": 2})
        store.record(candidate.id, measurements=[unconverged])
        assert store.get(candidate.id).measurements == (*old, unconverged)
    engine = create_store_engine(store_url)
    try:
        downgrade(engine, "0003")  # unconverged rows become failed, nothing else changes
        upgrade(engine)
    finally:
        engine.dispose()
    with CandidateStore(store_url) as store:
        *kept, downgraded = store.get(candidate.id).measurements
        assert tuple(kept) == old and downgraded.status == "failed" and downgraded.value is None
