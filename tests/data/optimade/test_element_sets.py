"""Revision 0006 (issue 22): exact counts of element-only filters from the element-set summary.

``candidate_element_sets`` holds one row per distinct element list with its number of candidates,
kept by triggers. Checked here on SQLite and PostgreSQL: the summary equals a ``GROUP BY`` of the
candidates after every write path (store add, idempotent re-add, bulk ``COPY`` load, delete,
re-import, a change of ``elements``, status changes, concurrent writers on two connections, a
store written before the revision and upgraded); and for seeded random stores and random element
filters, ``sum(n)`` over the matching summary rows equals ``count(*)`` of the matching
candidates, and the API's ``data_returned`` is that number.
"""

from __future__ import annotations

import random
import threading

import pytest
from sqlalchemy import delete, func, select, text, update

from crystaloop.data.optimade.element_sets import element_set_condition, element_set_count
from crystaloop.data.optimade.filters import FilterTranslator
from crystaloop.data.optimade.search import StructureSearch, open_readonly_engine
from crystaloop.data.store import CandidateStore
from crystaloop.data.store.engine import create_store_engine, write_transaction
from crystaloop.data.store.schema import CandidateRow, ElementSetRow
from crystaloop.data.store.testing import make_candidates

from .test_elements_index import SYMBOLS, fuzzed_filters, write_at_revision

NON_ELEMENT = ("nsites<=3", "_crystaloop_status=\"scored\"", "elements_ratios HAS > 0.5", "elements HAS > \"M\"")


def _exact(engine) -> dict[str, int]:
    """The summary as {elements: n}, after asserting it equals the GROUP BY of the candidates."""
    c = CandidateRow.__table__.c
    with engine.connect() as conn:
        truth = dict(conn.execute(select(c.elements, func.count()).group_by(c.elements)).all())
        summary = {e: (k, n) for e, k, n in conn.execute(select(ElementSetRow.elements, ElementSetRow.nelements, ElementSetRow.n))}
    assert {e: n for e, (_, n) in summary.items()} == truth
    assert all(k == len(e.split(",")) for e, (k, _) in summary.items())
    return truth


def element_filters(n: int, seed: int) -> list[str]:
    """The element-index fuzz plus ``nelements`` / ``LENGTH`` terms and non-element terms mixed in."""
    rng = random.Random(seed)
    out = []
    for flt in fuzzed_filters(n, seed):
        shape = rng.random()
        if shape < 0.15:
            flt = f"({flt}) AND nelements {rng.choice(('<', '<=', '=', '>', '!='))} {rng.randint(1, 4)}"
        elif shape < 0.25:
            flt = f"({flt}) OR LENGTH elements = {rng.randint(1, 3)}"
        elif shape < 0.3:
            flt = f"NOT ({flt}) AND {rng.choice(NON_ELEMENT)}"
        out.append(flt)
    return [*out, "nelements>=2", "LENGTH elements < 3", 'elements HAS ONLY "Na","Cl","Xe"', "3 > nelements", 'type="structures"']


def _counts_agree(engine, filters: list[str]) -> tuple[int, int]:
    """(element-only filters checked, others); asserts summary sum == count(*) for the first kind."""
    translator = FilterTranslator(engine.dialect.name)
    checked = skipped = 0
    disagreements = []
    with engine.connect() as conn:
        for flt in filters:
            translation = translator.translate(flt)
            condition = element_set_condition(translation, engine.dialect.name)
            if condition is None:
                skipped += 1
                assert any(term in flt for term in ("nsites", "_crystaloop", "ratios", "HAS >")), flt
                continue
            truth = conn.execute(select(func.count()).select_from(CandidateRow).where(translation.where)).scalar_one()
            summed = conn.execute(element_set_count(condition)).scalar_one()
            checked += 1
            if summed != truth:
                disagreements.append(f"{flt!r}: summary {summed}, count(*) {truth}")
    assert not disagreements, "\n".join(disagreements)
    return checked, skipped


@pytest.mark.parametrize("seed", [0, 1])
def test_random_stores_and_element_filters_summary_equals_count(store_url: str, seed: int) -> None:
    from crystaloop.benchmarks.optimade_rows import bulk_load

    rng = random.Random(seed)
    bulk_load(store_url, rng.randint(150, 400), seed=100 + seed)
    with CandidateStore(store_url) as store:
        store.add_many(make_candidates(rng.randint(10, 40), seed=seed), compute_spacegroup=False)
    engine = open_readonly_engine(store_url)
    try:
        truth = _exact(engine)
        checked, skipped = _counts_agree(engine, element_filters(150, seed=22 + seed))
        assert checked > 100 and skipped > 5
        search = StructureSearch(engine, count_cache_size=0)
        assert search.element_sets
        assert search.total() == sum(truth.values())
        for flt in ('elements HAS ALL "O","Sr"', 'elements HAS ANY "Cl","F" AND nelements=2', 'elements HAS "O" AND nsites<=5'):
            where = search.translator.translate(flt).where
            with engine.connect() as conn:
                expected = conn.execute(select(func.count()).select_from(CandidateRow).where(where)).scalar_one()
            assert search.search(flt, limit=3).data_returned == expected
    finally:
        engine.dispose()


def test_odd_symbols_and_case_count_like_the_candidates(store_url: str) -> None:
    with CandidateStore(store_url) as store:
        store.add_many(make_candidates(14, seed=3), compute_spacegroup=False)
    engine = open_readonly_engine(store_url)
    try:
        odd = [f'elements HAS {m} "{s}"' for m in ("", "ALL", "ANY", "ONLY") for s in SYMBOLS if s in ("o", "O,F", "", "Xe", "O")]
        odd += ['elements HAS ONLY "O,F","Mg","O"', 'elements HAS ALL "O","o"', 'species_at_sites HAS ONLY "Sr","Ti","O"']
        checked, _ = _counts_agree(engine, odd)
        assert checked == len(odd)
    finally:
        engine.dispose()


def test_every_write_path_keeps_the_summary_exact(store_url: str) -> None:
    candidates = make_candidates(40, seed=11)
    with CandidateStore(store_url) as store:
        store.add_many(candidates[:30], chunk_size=7)
        engine = store._engine
        first = _exact(engine)
        assert sum(first.values()) == 30
        assert store.add_many(candidates[:30]).added == 0  # idempotent re-add counts nothing
        assert _exact(engine) == first
        for c in candidates[:10]:  # status changes do not touch the summary
            store.update_status(c.id, "scored")
        assert _exact(engine) == first
        gone = [c.id for c in candidates[:12]]
        with write_transaction(engine) as conn:
            conn.execute(delete(CandidateRow).where(CandidateRow.id.in_(gone)))
        assert sum(_exact(engine).values()) == 18
        store.add_many(candidates)  # re-import: the deleted ones come back, the rest are new
        assert sum(_exact(engine).values()) == 40
        with write_transaction(engine) as conn:  # the element list changed by hand (no code path does it)
            conn.execute(update(CandidateRow).where(CandidateRow.id == candidates[0].id).values(elements="Xe", nelements=1))
            conn.execute(update(CandidateRow).where(CandidateRow.id == candidates[1].id).values(status="rejected"))
        assert _exact(engine)["Xe"] == 1
        with write_transaction(engine) as conn:  # every candidate gone: no summary row left
            conn.execute(delete(CandidateRow))
        assert _exact(engine) == {}
        with engine.connect() as conn:
            assert conn.execute(select(func.count()).select_from(ElementSetRow)).scalar_one() == 0


def test_two_connections_adding_at_once_keep_it_exact(store_url: str) -> None:
    candidates = make_candidates(160, seed=12)
    shares = [candidates[:100], candidates[60:][::-1]]  # 40 in both, reached from opposite ends
    CandidateStore(store_url).close()
    barrier = threading.Barrier(len(shares))
    errors: list[BaseException] = []

    def add(share) -> None:
        try:
            with CandidateStore(store_url) as store:
                barrier.wait(timeout=30)
                store.add_many(share, chunk_size=5, compute_spacegroup=False)
        except BaseException as exc:  # noqa: BLE001 - reported by the test below
            errors.append(exc)

    threads = [threading.Thread(target=add, args=(share,)) for share in shares]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors, errors
    engine = create_store_engine(store_url)
    try:
        assert sum(_exact(engine).values()) == 160
    finally:
        engine.dispose()


def test_store_written_at_0005_gets_the_summary_on_upgrade(store_url: str) -> None:
    candidates = make_candidates(21, seed=41)
    engine = create_store_engine(store_url)
    try:
        tables = write_at_revision(engine, "0005", candidates)
        assert "candidate_element_sets" not in tables.tables
    finally:
        engine.dispose()
    with CandidateStore(store_url) as store:  # opening migrates and fills the summary
        assert store.count() == 21
        assert [store.get(c.id) for c in candidates] == candidates
        assert sum(_exact(store._engine).values()) == 21
        store.add_many(make_candidates(5, seed=42))  # and the triggers keep it from then on
        assert sum(_exact(store._engine).values()) == 26


@pytest.mark.postgres
def test_bulk_copy_load_with_replica_role_keeps_it_exact(postgres_url: str) -> None:
    from crystaloop.benchmarks.optimade_rows import bulk_load

    bulk_load(postgres_url, 900, seed=8, batch_size=250)  # COPY under session_replication_role = replica
    engine = create_store_engine(postgres_url)
    try:
        with engine.connect() as conn:
            assert conn.execute(text("SHOW is_superuser")).scalar_one() == "on"  # so the replica role was used
        assert sum(_exact(engine).values()) == 900
    finally:
        engine.dispose()


def test_pages_of_element_filters_are_the_matches_in_id_order(store_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from crystaloop.benchmarks.optimade_rows import bulk_load
    from crystaloop.data.optimade import search as search_module

    bulk_load(store_url, 700, seed=9)
    calls: list[int] = []

    def spy(lists, limit, offset):
        calls.append(len(lists))
        return element_sets_module.first_ids_page(lists, limit, offset)

    from crystaloop.data.optimade import element_sets as element_sets_module

    monkeypatch.setattr(search_module, "first_ids_page", spy)
    engine = open_readonly_engine(store_url)
    try:
        search = StructureSearch(engine, count_cache_size=0)
        filters = [f for f in element_filters(60, seed=5) if element_set_condition(search.translator.translate(f), engine.dialect.name) is not None]
        filters += ['elements HAS ALL "Ba","Ti","O"', 'elements HAS ONLY "Ga","As"', 'elements HAS ANY "Ga","Zn" AND nelements=2']
        with engine.connect() as conn:
            for flt in filters:
                where = search.translator.translate(flt).where
                expected = list(conn.execute(select(CandidateRow.id).where(where).order_by(CandidateRow.id)).scalars())
                for offset, limit in ((0, 20), (7, 5), (len(expected) - 2, 20)):
                    if offset < 0:
                        continue
                    page = search.search(flt, limit=limit, offset=offset, fields=("id",))
                    assert [d["id"] for d in page.documents] == expected[offset : offset + limit], (flt, offset)
                    assert page.data_returned == len(expected)
    finally:
        engine.dispose()
    assert bool(calls) == store_url.startswith("postgresql")  # the list-by-list page runs on PostgreSQL only
