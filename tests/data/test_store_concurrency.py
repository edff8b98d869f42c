"""Two OS processes adding overlapping candidates to one fresh store at the same time."""

from __future__ import annotations

import multiprocessing as mp
import queue

import pytest
from sqlalchemy import func, select

from crystaloop.data.store import CandidateStore
from crystaloop.data.store.schema import StatusHistoryRow
from crystaloop.data.store.testing import concurrent_add_worker, make_candidates

N_PER_PROCESS = 200
OVERLAP = 100


@pytest.mark.slow
def test_two_processes_add_overlapping_candidates(store_url: str) -> None:
    candidates = make_candidates(2 * N_PER_PROCESS - OVERLAP, seed=31)  # ids hashed here, pickled with them
    union = {c.id for c in candidates}
    assert len(union) == 2 * N_PER_PROCESS - OVERLAP
    shares = {
        "first": candidates[:N_PER_PROCESS],
        "second": candidates[N_PER_PROCESS - OVERLAP :][::-1],  # overlap reached from opposite ends
    }
    ctx = mp.get_context("spawn")
    barrier = ctx.Barrier(len(shares))
    results = ctx.Queue()
    # The store does not exist yet: both processes also race to create its schema.
    processes = [
        ctx.Process(target=concurrent_add_worker, args=(store_url, share, 7, barrier, results, name))
        for name, share in shares.items()
    ]
    for p in processes:
        p.start()
    reports = {}
    try:
        for _ in processes:
            name, added, existing, error = results.get(timeout=120)
            reports[name] = (added, existing, error)
    except queue.Empty:
        pytest.fail(f"a writer process did not report within 120 s; got {reports}")
    finally:
        for p in processes:
            p.join(timeout=30)
            if p.is_alive():
                p.kill()
    errors = {name: r[2] for name, r in reports.items() if r[2]}
    assert not errors, errors
    assert all(p.exitcode == 0 for p in processes)
    assert sum(r[0] for r in reports.values()) == len(union)
    assert all(r[0] + r[1] == N_PER_PROCESS for r in reports.values())

    with CandidateStore(store_url) as store:
        assert store.count() == len(union)
        with store._engine.connect() as conn:
            rows = conn.execute(
                select(StatusHistoryRow.candidate_id, func.count(), func.count(StatusHistoryRow.from_status)).group_by(
                    StatusHistoryRow.candidate_id
                )
            ).all()
        assert {r[0] for r in rows} == union
        assert all(n == 1 and n_from == 0 for _, n, n_from in rows)  # one initial row, from_status NULL
