"""Parallel callers of one oracle: a calculator per thread, results identical to serial runs.

Prefect runs oracle tasks in threads; a shared ASE calculator let one relaxation read another
thread's atoms (``cannot reshape array of size 15 into shape (24,)``, ``forces not present``).
Also: a fresh oracle cache opened by several threads at once (``table oracle_results already
exists``), and unconverged results through the cache.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence

import numpy as np
import pytest
from ase.build import bulk

from crystaloop.data.crystal import Crystal
from crystaloop.surrogates.oracles import OracleCache, RelaxConfig
from crystaloop.surrogates.oracles.base import ASEOracle, Relaxation
from crystaloop.surrogates.oracles.registry import emt_oracle


def _cells() -> list[Crystal]:
    """Four Cu/Al cells of 1, 4, 8 and 12 atoms, each a little off its minimum."""
    cells = [
        bulk("Cu", "fcc", a=3.75),
        bulk("Al", "fcc", a=4.2, cubic=True),
        bulk("Cu", "fcc", a=3.5, cubic=True) * (2, 1, 1),
        bulk("Al", "fcc", a=3.95, cubic=True) * (1, 1, 3),
    ]
    for i, atoms in enumerate(cells):
        if len(atoms) > 1:
            atoms.positions[1] += (0.05 * (i + 1), -0.03, 0.02)
    return [Crystal.from_ase(a) for a in cells]


def _in_threads(work: Callable[[int], object], n: int) -> list[object]:
    """``work(i)`` for i < n, each in its own thread, started together; exceptions are returned."""
    barrier = threading.Barrier(n)
    out: list[object] = [None] * n

    def run(i: int) -> None:
        barrier.wait()
        try:
            out[i] = work(i)
        except Exception as exc:  # reported by the assertions of the test
            out[i] = exc

    threads = [threading.Thread(target=run, args=(i,), name=f"oracle-{i}") for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=600)
    return out


def _same(a: Relaxation, b: Relaxation) -> None:
    assert (a.status, a.steps, a.reason) == (b.status, b.steps, b.reason)
    assert a.energy_per_atom == b.energy_per_atom
    np.testing.assert_array_equal(a.final.lattice, b.final.lattice)
    np.testing.assert_array_equal(a.final.frac_coords, b.final.frac_coords)


def _check_parallel_equals_serial(oracle: ASEOracle, cells: Sequence[Crystal], rounds: int) -> None:
    serial = [oracle.relax([c], use_cache=False)[0] for c in cells]
    for _ in range(rounds):
        parallel = _in_threads(lambda i: oracle.relax([cells[i]], use_cache=False)[0], len(cells))
        for got, want in zip(parallel, serial, strict=True):
            assert isinstance(got, Relaxation), got
            _same(got, want)


def test_threads_relaxing_different_cells_match_serial_runs() -> None:
    oracle = emt_oracle(relax=RelaxConfig(fmax=0.05, max_steps=300))
    cells = _cells()
    _check_parallel_equals_serial(oracle, cells, rounds=2)
    assert {len(c.numbers) for c in cells} == {1, 4, 8, 12}
    assert oracle.calculators_made == 1 + 2 * len(cells)  # the main thread's, then one per (new) worker thread


def test_each_thread_gets_its_own_calculator_once() -> None:
    oracle = emt_oracle()
    calculators = _in_threads(lambda i: (oracle.calculator, oracle.calculator), 4)
    assert all(a is b for a, b in calculators)  # reused within a thread
    assert len({id(a) for a, _ in calculators}) == 4  # never shared between threads
    assert oracle.calculators_made == 4


def test_fresh_cache_opened_by_many_threads_at_once(tmp_path) -> None:
    url = f"sqlite:///{tmp_path / 'fresh' / 'oracle.db'}"
    counts = _in_threads(lambda i: OracleCache(url).count(), 8)
    assert counts == [0] * 8
    shared = OracleCache(f"sqlite:///{tmp_path / 'shared.db'}")  # one object, many first users
    assert _in_threads(lambda i: shared.count(), 8) == [0] * 8


def test_parallel_writers_through_one_cached_oracle(tmp_path) -> None:
    cache = OracleCache(f"sqlite:///{tmp_path / 'oracle.db'}")
    oracle = emt_oracle(relax=RelaxConfig(fmax=0.02, max_steps=300), cache=cache)
    cells = _cells()
    first = _in_threads(lambda i: oracle.relax([cells[i]])[0], len(cells))
    assert all(isinstance(r, Relaxation) and r.status == "ok" and not r.cached for r in first)
    again = oracle.relax(cells)
    assert all(r.cached for r in again) and cache.count() == len(cells)
    for got, want in zip(again, first, strict=True):
        assert got.energy_per_atom == want.energy_per_atom


def test_unconverged_results_round_trip_through_the_cache(tmp_path) -> None:
    cache = OracleCache(f"sqlite:///{tmp_path / 'oracle.db'}")
    oracle = emt_oracle(relax=RelaxConfig(fmax=1e-4, max_steps=2), cache=cache)
    (computed,) = oracle.relax([_cells()[2]])
    (cached,) = oracle.relax([_cells()[2]])
    assert computed.status == cached.status == "unconverged" and cached.cached  # not retried: it is no failure
    assert cached.energy_per_atom == computed.energy_per_atom and cached.reason == computed.reason
    assert cached.to_measurement("emt").status == "unconverged"
    assert cache.entries_within(oracle.cache_key(), ["Cu"]) == []  # never a hull entry
    assert cache.all_results(oracle.cache_key()) == []


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:Converting a tensor with requires_grad:UserWarning")
def test_chgnet_two_threads_share_the_model_and_match_serial_runs() -> None:
    pytest.importorskip("chgnet")
    from crystaloop.surrogates.oracles import CHGNetOracle

    oracle = CHGNetOracle(relax=RelaxConfig(fmax=0.1, max_steps=15), threads=1)
    be = Crystal.from_ase(bulk("Be"))  # 2 atoms: 15 generalised forces with the cell filter
    perovskite = Crystal.from_ase(bulk("Si", "diamond", a=5.6, cubic=True))  # 8 atoms: 33
    _check_parallel_equals_serial(oracle, [be, perovskite], rounds=2)
    assert oracle.shared_model.loaded and oracle.calculators_made >= 2
    models = {id(oracle.shared_model.get())} | {id(c.model) for c in _in_threads(lambda i: oracle.calculator, 2)}
    assert len(models) == 1  # one CHGNet model behind every thread's calculator


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:Converting a tensor with requires_grad:UserWarning")
def test_chgnet_be_reference_relaxes_to_a_finite_energy_also_beside_other_work() -> None:
    pytest.importorskip("chgnet")
    from crystaloop.surrogates.hull import EnergyAboveHull
    from crystaloop.surrogates.oracles import CHGNetOracle

    oracle = CHGNetOracle(relax=RelaxConfig(fmax=0.05, max_steps=100), threads=1)
    other = Crystal.from_ase(bulk("Si", "diamond", a=5.6, cubic=True))
    be, si = _in_threads(
        lambda i: EnergyAboveHull(oracle).reference("Be") if i == 0 else oracle.relax([other], use_cache=False)[0], 2
    )
    assert isinstance(be, Relaxation) and be.status == "ok", be
    assert np.isfinite(be.energy_per_atom) and -4.5 < be.energy_per_atom < -3.0  # CHGNet hcp Be ≈ -3.73 eV/atom
    assert isinstance(si, Relaxation) and si.status in ("ok", "unconverged")
