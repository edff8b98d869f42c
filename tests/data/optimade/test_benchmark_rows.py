"""The bulk loader writes valid, searchable candidates with consistent derived columns."""

from __future__ import annotations

import datetime as dt

import pytest
from optimade.models import StructureResource
from sqlalchemy import select

from crystaloop.benchmarks.optimade_rows import STATUS_MIX, bulk_load, synthetic_id
from crystaloop.data.errors import StoreError
from crystaloop.data.optimade.search import StructureSearch, open_readonly_engine
from crystaloop.data.store import CandidateStore
from crystaloop.data.store.rows import candidate_row
from crystaloop.data.store.schema import CandidateElementRow, CandidateRow

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:optimade.*")


def test_bulk_load_writes_valid_searchable_candidates(store_url: str) -> None:
    seen = []
    report = bulk_load(store_url, 300, seed=3, batch_size=128, progress=lambda done, total: seen.append((done, total)))
    assert report.candidates == 300 and report.rows["candidates"] == 300 and seen[-1] == (300, 300)
    assert report.rows["status_history"] == 300 and report.rows["candidate_elements"] >= 300
    derived = ("reduced_formula", "chemical_formula_anonymous", "chemical_formula_reduced", "chemical_formula_descriptive",
               "elements", "nelements", "nsites", "status", "campaign_id", "iteration")
    with CandidateStore(store_url) as store:
        assert store.count() == 300
        summary = store.summary()
        assert set(summary["by_status"]) <= {s for s, _ in STATUS_MIX} and len(summary["by_status"]) >= 4
        with store._engine.connect() as conn:
            for index in (0, 7, 299):
                cid = synthetic_id(3, index)
                candidate = store.get(cid)  # a valid Crystal; provenance and records parse
                assert candidate.crystal.min_pair_distance() > 0.5
                stored = conn.execute(select(CandidateRow).where(CandidateRow.id == cid)).one()._mapping
                expected = candidate_row(candidate, cid, dt.datetime.now(dt.UTC), compute_spacegroup=False)
                assert {k: stored[k] for k in derived} == {k: expected[k] for k in derived}
                assert stored["volume"] == pytest.approx(expected["volume"]) and stored["density"] == pytest.approx(expected["density"])
                ratios = conn.execute(select(CandidateElementRow.ratio).where(CandidateElementRow.candidate_id == cid)).scalars().all()
                assert sum(ratios) == pytest.approx(1.0)
    engine = open_readonly_engine(store_url)
    try:
        search = StructureSearch(engine)
        page = search.search('_crystaloop_status="evaluated" AND _crystaloop_e_above_hull IS KNOWN', limit=5)
        assert page.data_returned > 0 and all(d["attributes"]["_crystaloop_e_above_hull"] >= 0 for d in page.documents)
        for document in search.search("nsites>=2", limit=20).documents:
            StructureResource(**document)  # the optimade package's own model accepts every document
        assert search.search('_crystaloop_campaign="bulk-3-0"', limit=0).data_returned > 0
    finally:
        engine.dispose()
    with pytest.raises(StoreError, match="already holds the synthetic candidates of seed 3"):
        bulk_load(store_url, 10, seed=3)


def test_materialised_page_plan_returns_the_same_pages(store_url: str) -> None:
    """Rare matches take the materialised-CTE page plan; it must page exactly like the plain one."""
    from crystaloop.data.optimade.filters import FilterTranslator
    from crystaloop.data.optimade.search import _page, parse_sort

    bulk_load(store_url, 200, seed=4, batch_size=64)
    engine = open_readonly_engine(store_url)
    try:
        translator = FilterTranslator(engine.dialect.name)
        search = StructureSearch(engine)
        cases = [
            ('_crystaloop_campaign="bulk-4-1"', "-nsites"),
            ('_crystaloop_status="evaluated" OR _crystaloop_status="failed"', "_crystaloop_e_above_hull"),
            ('elements HAS "O"', None),
        ]
        with engine.connect() as conn:
            for text, sort in cases:
                where = [translator.translate(text).where]
                order = parse_sort(sort)
                for offset in (0, 3):
                    plain = conn.execute(_page(where, order, 4, offset, materialize=False)).scalars().all()
                    cte = conn.execute(_page(where, order, 4, offset, materialize=True)).scalars().all()
                    assert plain == cte and plain, (text, sort, offset)
        page = search.search('_crystaloop_campaign="bulk-4-1" AND _crystaloop_iteration=1', limit=3, sort="-nsites")
        assert 2 <= page.data_returned and 16 * page.data_returned**2 <= 3 * page.data_available  # materialised on PostgreSQL
        assert [d["attributes"]["nsites"] for d in page.documents] == sorted((d["attributes"]["nsites"] for d in page.documents), reverse=True)
    finally:
        engine.dispose()
