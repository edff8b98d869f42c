"""OracleCache: reuse without recomputation, keys that follow the settings, failures cached."""

from __future__ import annotations

import numpy as np
import pytest
from ase.build import bulk
from ase.calculators.calculator import all_changes
from ase.calculators.emt import EMT

from crystaloop.data.crystal import Crystal
from crystaloop.data.errors import OracleError
from crystaloop.surrogates.oracles import ASEOracle, CachedResult, OracleCache, RelaxConfig, default_cache_url


class CountingEMT(EMT):
    """EMT that counts its calculations (each call is one energy/forces evaluation)."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes) -> None:
        self.calls += 1
        super().calculate(atoms, properties, system_changes)


def _oracle(cache: OracleCache, relax: RelaxConfig | None = None, settings: dict | None = None) -> ASEOracle:
    return ASEOracle("emt", CountingEMT, relax=relax, cache=cache, settings=settings)


def _cu(a: float = 3.7) -> Crystal:
    return Crystal.from_ase(bulk("Cu", "fcc", a=a))


def _overlapping() -> Crystal:
    return Crystal.from_cartesian(np.eye(3) * 4.0, [[0.0, 0.0, 0.0], [0.1, 0.0, 0.0]], [29, 29])


@pytest.fixture
def cache(tmp_path) -> OracleCache:
    return OracleCache(f"sqlite:///{tmp_path / 'oracle.db'}")


def test_second_evaluate_reads_the_cache(cache: OracleCache) -> None:
    oracle = _oracle(cache)
    first = oracle.evaluate([_cu(), _cu(3.5)])
    calls = oracle.calculator.calls
    assert calls > 0
    again = _oracle(cache)  # a new oracle (new calculator) with the same settings
    second = again.evaluate([_cu(3.5), _cu()])
    assert again.calculators_made == 0  # never even created
    assert [m.value for m in second] == [first[1].value, first[0].value]
    (cached,) = again.relax([_cu()])
    assert cached.cached and cached.final is not None and cached.steps > 0


def test_changed_settings_do_not_reuse_results(cache: OracleCache) -> None:
    loose = _oracle(cache, RelaxConfig(fmax=0.1))
    tight = _oracle(cache, RelaxConfig(fmax=0.01))
    other_model = _oracle(cache, RelaxConfig(fmax=0.1), settings={"model": "v2"})
    keys = {loose.cache_key(), tight.cache_key(), other_model.cache_key()}
    assert len(keys) == 3 and all(k.startswith("emt:") for k in keys)
    assert loose.cache_key() == _oracle(cache, RelaxConfig(fmax=0.1)).cache_key()
    loose.evaluate([_cu()])
    tight.evaluate([_cu()])
    assert tight.calculator.calls > 0
    assert cache.count(loose.cache_key()) == cache.count(tight.cache_key()) == 1


def test_failed_results_are_cached_with_their_reason_and_retried_by_default(cache: OracleCache) -> None:
    (failed,) = _oracle(cache).evaluate([_overlapping()])
    assert failed.status == "failed"
    key, structure = _oracle(cache).cache_key(), _overlapping().canonical_hash()
    serving = OracleCache(cache.url, serve_failed=True)
    stored = serving.get(key, structure, "relaxation")
    assert stored is not None and stored.status == "failed" and stored.reason == failed.reason
    assert cache.get(key, structure, "relaxation") is None  # invisible to a default look-up

    calls = []
    retried = ASEOracle("emt", lambda: calls.append(1) or EMT(), cache=cache)
    (again,) = retried.evaluate([_overlapping()])
    assert calls == [1] and again.status == "failed"  # computed again (the overlap check fails it before any energy)

    served = ASEOracle("emt", lambda: calls.append(2) or EMT(), cache=serving)
    (kept,) = served.evaluate([_overlapping()])
    assert calls == [1] and kept.status == "failed" and kept.reason == failed.reason


def test_a_transient_failure_is_not_served_from_the_cache(cache: OracleCache) -> None:
    """A calculator fault (the issue-22 race) cached as a failure must not stick: the next run
    computes the structure again and caches the good result over it."""

    class Flaky(EMT):
        def calculate(self, *args, **kwargs):  # noqa: ANN002, ANN003
            raise RuntimeError("energy not present in this calculation")

    (broken,) = ASEOracle("emt", Flaky, cache=cache).evaluate([_cu()])
    assert broken.status == "failed" and "energy not present" in broken.reason
    (fixed,) = ASEOracle("emt", EMT, cache=cache).evaluate([_cu()])
    assert fixed.status == "ok" and fixed.value is not None
    (served,) = ASEOracle("emt", Flaky, cache=cache).evaluate([_cu()])
    assert served.status == "ok" and served.value == fixed.value


def test_single_points_and_relaxations_are_separate(cache: OracleCache) -> None:
    oracle = _oracle(cache)
    (point,) = oracle.single_point([_cu(3.8)])
    (relaxed,) = oracle.evaluate([_cu(3.8)])
    assert point.value > relaxed.value
    assert cache.count(oracle.cache_key()) == 2
    assert len(cache.all_results(oracle.cache_key())) == 1  # relaxations only


def test_all_results_and_entries_within(cache: OracleCache) -> None:
    oracle = _oracle(cache)
    al = Crystal.from_ase(bulk("Al", "fcc", a=4.05))
    cual = Crystal.from_ase(bulk("CuAl", "cesiumchloride", a=3.0))
    oracle.evaluate([_cu(), al, cual, _overlapping()])
    results = cache.all_results(oracle.cache_key())
    assert sorted(c.reduced_formula for c, _ in results) == ["Al", "AlCu", "Cu"]
    assert all(np.isfinite(e) for _, e in results)
    within_cu = cache.entries_within(oracle.cache_key(), ["Cu"])
    assert [composition for _, composition, _ in within_cu] == [{"Cu": 1}]
    assert len(cache.entries_within(oracle.cache_key(), ["Cu", "Al", "Ni"])) == 3


def test_writes_are_idempotent_and_persist(cache: OracleCache) -> None:
    result = CachedResult("ok", "", -1.5, "eV/atom", {"Cu": 1}, _cu(), {"steps": 3})
    cache.put("k:1", "h1", "relaxation", result)
    cache.put("k:1", "h1", "relaxation", result)
    cache.put_many("k:1", "relaxation", [("h1", result), ("h2", result)])
    assert cache.count("k:1") == 2
    reopened = OracleCache(cache.url)
    stored = reopened.get("k:1", "h1", "relaxation")
    assert stored is not None and stored.value == -1.5 and stored.chemsys == "Cu" and stored.details["steps"] == 3
    assert stored.crystal == _cu()
    replaced = CachedResult("failed", "boom", None, "eV/atom", {"Cu": 1})
    reopened.put("k:1", "h1", "relaxation", replaced)
    assert cache.get("k:1", "h1", "relaxation") is None  # a failure is not served by default
    assert OracleCache(cache.url, serve_failed=True).get("k:1", "h1", "relaxation").reason == "boom"
    assert cache.clear("k:1") == 2 and cache.count() == 0


def test_default_url_and_bad_urls(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("CRYSTALOOP_CACHE_DIR", str(tmp_path))
    assert default_cache_url() == f"sqlite:///{tmp_path / 'oracle.db'}"
    default = OracleCache()
    assert default.count() == 0 and (tmp_path / "oracle.db").exists()
    with pytest.raises(OracleError, match="not usable"):
        OracleCache("nosuchdb://x").count()
    memory = OracleCache("sqlite://")
    memory.put("k", "h", "p", CachedResult("ok", "", 1.0, "GPa", {"Si": 2}))
    assert memory.count() == 1
