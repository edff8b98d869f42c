"""Benchmarks smoke test: every ``benchmarks/bench_*.py`` is run by ``make bench`` and exposes its entry point.

``benchmarks.run_all`` calls ``module.run(quick=...)`` for each name in ``BENCHMARKS``; a module left out of
that tuple is never measured. The cheap quick runs (seconds each on 2 cores) are executed here too; every
quick run is executed by ``make bench-smoke`` (``run_all --smoke``), which CI runs after ``make test``.
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
# (bench_generators_cheap left in December 2026: its quick run fits two template priors and loads two
# diffusion checkpoints, ~40 s of CPU; make bench-smoke still runs it)
QUICK_RUNS = ("bench_featurize", "bench_posterior_toy", "bench_hull_references")


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


class _Bench:
    """A stand-in benchmark module for ``run_all.smoke_run``: ``run`` returns ``rows`` or raises ``error``."""

    def __init__(self, rows: object = None, error: Exception | None = None) -> None:
        self.rows, self.error, self.calls = rows, error, []

    def run(self, quick: bool = False) -> object:
        self.calls.append(quick)
        if self.error is not None:
            raise self.error
        return self.rows


def test_smoke_run_reports_failures_instead_of_raising(bench_import) -> None:
    import torch

    run_all = bench_import("run_all")
    good, empty = _Bench(rows=[{"a": 1}, {"a": 2}]), _Bench(rows=[])
    broken, wrong = _Bench(error=RuntimeError("no oracle")), _Bench(rows="not a list")
    modules = {"good": good, "empty": empty, "broken": broken, "wrong": wrong}
    threads = torch.get_num_threads()
    results = {name: run_all.smoke_run(name, load=modules.__getitem__) for name in modules}
    assert torch.get_num_threads() == threads
    assert all(module.calls == [True] for module in modules.values())  # every one ran once, quick
    assert results["good"].ok and results["good"].rows == 2 and results["good"].error is None
    assert not results["empty"].ok and results["empty"].error == "returned no rows"
    assert not results["broken"].ok and results["broken"].error == "RuntimeError: no oracle"
    assert not results["wrong"].ok and "list of dicts" in results["wrong"].error
    table = run_all.smoke_table(list(results.values()))
    assert "| good |" in table and "| broken |" in table and "RuntimeError: no oracle" in table
    assert table.strip().splitlines()[-1].startswith("| total |") and "3 failed" in table


def test_smoke_runs_each_benchmark_in_a_scratch_directory(bench_import, monkeypatch, tmp_path: Path) -> None:
    run_all = bench_import("run_all")
    seen: list[Path] = []

    def writes_files(name: str) -> object:
        seen.append(Path.cwd())
        Path("runs").mkdir()  # raises if two benchmarks shared one directory
        return run_all.SmokeResult(name, 0.0, 1)

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(run_all, "smoke_run", writes_files)
    results = run_all.smoke(["a", "b"])
    assert [result.ok for result in results] == [True, True] and Path.cwd() == tmp_path
    assert len(set(seen)) == 2 and tmp_path not in seen and not any(path.exists() for path in seen)
    assert not (tmp_path / "runs").exists()
