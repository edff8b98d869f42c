"""Revision 0002 adds the OPTIMADE columns and backfills them for candidates stored before it."""

from __future__ import annotations

from sqlalchemy import select

from crystaloop.data.store import CandidateStore, downgrade, upgrade
from crystaloop.data.store.engine import create_store_engine
from crystaloop.data.store.schema import CandidateElementRow, CandidateRow
from crystaloop.data.store.testing import make_candidates


def _snapshot(engine) -> tuple[dict, dict]:
    with engine.connect() as conn:
        formulas = {
            r.id: (r.chemical_formula_reduced, r.chemical_formula_descriptive)
            for r in conn.execute(select(CandidateRow.id, CandidateRow.chemical_formula_reduced, CandidateRow.chemical_formula_descriptive))
        }
        counts = {
            (r.candidate_id, r.element): (r.count, r.ratio)
            for r in conn.execute(select(CandidateElementRow.candidate_id, CandidateElementRow.element, CandidateElementRow.count, CandidateElementRow.ratio))
        }
    return formulas, counts


def test_upgrade_from_0001_backfills(store_url: str) -> None:
    candidates = make_candidates(14, seed=31)
    with CandidateStore(store_url) as store:
        store.add_many(candidates, compute_spacegroup=False)
    engine = create_store_engine(store_url)
    try:
        written = _snapshot(engine)
        assert written[0][candidates[2].id] == ("O3SrTi", "SrTiO3")  # the 3rd of the cycle is SrTiO3
        assert all(v[0] is not None for v in written[1].values())
        downgrade(engine, "0001")  # drops the columns with their values
        upgrade(engine)  # adds them back and recomputes them from the stored atomic numbers
        assert _snapshot(engine) == written
    finally:
        engine.dispose()
    with CandidateStore(store_url, migrate=False) as store:
        assert store.count() == 14
