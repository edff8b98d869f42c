"""Benchmarks smoke test: every ``benchmarks/bench_*.py`` is run by ``make bench`` and exposes its entry point.

``benchmarks.run_all`` calls ``module.run(quick=...)`` for each name in ``BENCHMARKS``; a module left out of
that tuple is never measured. The cheap quick runs (seconds each on 2 cores) are executed here too; the
others (oracles, diffusion sampling, servers, full loops) take minutes even when quick and are only imported.
"""

from __future__ import annotations

import importlib
import inspect
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[1]
BENCH_NAMES = sorted(path.stem for path in (ROOT / "benchmarks").glob("bench_*.py"))
# quick runs measured at 3-10 s each on 2 shared cores (December 2026); keep the total under a minute
QUICK_RUNS = ("bench_featurize", "bench_posterior_toy", "bench_hull_references", "bench_generators_cheap")


@pytest.fixture
def bench_import(monkeypatch: pytest.MonkeyPatch) -> Iterator[object]:
    """``import benchmarks.<name>`` with the repository root on ``sys.path`` (as ``make bench`` runs it)."""
    if str(ROOT) not in sys.path:
        monkeypatch.syspath_prepend(str(ROOT))

    def load(name: str) -> ModuleType:
        return importlib.import_module(f"benchmarks.{name}")

    yield load


def test_make_bench_runs_every_benchmark(bench_import) -> None:
    run_all = bench_import("run_all")
    assert sorted(run_all.BENCHMARKS) == BENCH_NAMES, (
        f"benchmarks/run_all.py BENCHMARKS differs from the bench_*.py files: "
        f"missing {sorted(set(BENCH_NAMES) - set(run_all.BENCHMARKS))}, unknown {sorted(set(run_all.BENCHMARKS) - set(BENCH_NAMES))}"
    )
    assert len(set(run_all.BENCHMARKS)) == len(run_all.BENCHMARKS), f"duplicate names in BENCHMARKS: {run_all.BENCHMARKS}"


@pytest.mark.slow
@pytest.mark.parametrize("name", BENCH_NAMES)
def test_benchmark_exposes_run_with_quick(bench_import, name: str) -> None:
    module = bench_import(name)
    assert callable(getattr(module, "run", None)), f"benchmarks/{name}.py has no run() for run_all"
    quick = inspect.signature(module.run).parameters.get("quick")
    assert quick is not None and quick.default is False, f"benchmarks/{name}.py run() needs quick: bool = False, got {quick}"
    assert (module.__doc__ or "").strip(), f"benchmarks/{name}.py needs a docstring: run_all prints its first line"


@pytest.mark.slow
@pytest.mark.parametrize("name", QUICK_RUNS)
def test_quick_benchmark_runs(bench_import, name: str) -> None:
    import torch

    threads = torch.get_num_threads()
    try:
        rows = bench_import(name).run(quick=True)
    finally:
        torch.set_num_threads(threads)
    assert isinstance(rows, list) and rows, f"benchmarks/{name}.py run(quick=True) returned no rows: {rows!r}"
    assert all(isinstance(row, dict) for row in rows), f"benchmarks/{name}.py rows must be dicts, got {rows[:3]!r}"
