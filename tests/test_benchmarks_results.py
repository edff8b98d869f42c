"""`make bench`'s bookkeeping: each run is appended to the dated log and replaces only its own block of
the current-figures file (``benchmarks/run_all.record_run``), on temporary files only."""

from __future__ import annotations

from pathlib import Path

import pytest

from crystaloop.benchmarks import run_all
from crystaloop.benchmarks.run_all import BenchRun, find_block, record_run, replace_block

STAMP, MACHINE = "2026-12-03 11:40 UTC", "Test CPU, 2 cores"

CURRENT = """# Benchmark results: current figures

Intro kept as written.

## bench_a: first

<!-- bench:bench_a size=full -->
Measured 2026-11-27 by hand.

| x | y |
|---|---|
| 1 | 2 |
<!-- /bench -->

Reading of bench_a, written by hand.

## bench_b: second

<!-- bench:bench_b size=partial -->
old b table
<!-- /bench -->

Reading of bench_b.
"""


def _run(name: str, value: float = 0.123456) -> BenchRun:
    return BenchRun(name, f"{name} against its baseline", [{"quantity": "rate", "value": value}])


def _files(tmp_path: Path) -> tuple[Path, Path]:
    results, log = tmp_path / "RESULTS.md", tmp_path / "RESULTS_LOG.md"
    results.write_text(CURRENT)
    log.write_text("# log\n\n## 2026-11-27\n\nold entry\n")
    return results, log


def test_tests_never_point_at_the_real_files(tmp_path: Path) -> None:
    results, log = _files(tmp_path)
    assert results != run_all.RESULTS and log != run_all.RESULTS_LOG


def test_a_run_replaces_only_its_own_block(tmp_path: Path) -> None:
    results, log = _files(tmp_path)
    record_run([_run("bench_a")], STAMP, MACHINE, quick=False, results=results, log=log)
    text = results.read_text()
    start, end, size = find_block(text, "bench_a")
    block = text[start:end]
    assert size == "full" and STAMP in block and MACHINE in block and "| rate | 0.1235 |" in block
    assert '"## 2026-12-03 11:40 UTC" → "### bench_a"' in block
    assert "| 1 | 2 |" not in text  # the old table is gone
    old_start = CURRENT.index("<!-- bench:bench_a")
    old_end = CURRENT.index("<!-- /bench -->", old_start) + len("<!-- /bench -->")
    assert text[:start] == CURRENT[:old_start]  # everything before the block, byte for byte
    assert text[end:] == CURRENT[old_end:]  # the hand-written reading and bench_b, byte for byte


def test_a_missing_benchmark_gets_a_section_at_the_end(tmp_path: Path) -> None:
    results, log = _files(tmp_path)
    record_run([_run("bench_c")], STAMP, MACHINE, quick=False, results=results, log=log)
    text = results.read_text()
    assert text.startswith(CURRENT)
    added = text[len(CURRENT):]
    assert added.startswith("\n## bench_c: bench_c against its baseline\n\n<!-- bench:bench_c size=full -->")
    assert added.endswith("<!-- /bench -->\n") and find_block(text, "bench_c") is not None


def test_the_log_is_appended_to_never_rewritten(tmp_path: Path) -> None:
    results, log = _files(tmp_path)
    before = log.read_text()
    record_run([_run("bench_a"), _run("bench_c")], STAMP, MACHINE, quick=False, results=results, log=log)
    after = log.read_text()
    assert after.startswith(before)
    entry = after[len(before):]
    assert entry.startswith(f"\n## {STAMP}\n\nMachine: {MACHINE}\n")
    assert entry.index("### bench_a") < entry.index("### bench_c") and entry.count("| rate | 0.1235 |") == 2


def test_missing_files_are_created(tmp_path: Path) -> None:
    results, log = tmp_path / "RESULTS.md", tmp_path / "RESULTS_LOG.md"
    record_run([_run("bench_a")], STAMP, MACHINE, quick=False, results=results, log=log)
    assert results.read_text().startswith(run_all.RESULTS_HEADER) and find_block(results.read_text(), "bench_a")
    assert log.read_text().startswith(run_all.LOG_HEADER) and f"## {STAMP}" in log.read_text()


def test_a_quick_run_is_logged_but_keeps_full_size_tables(tmp_path: Path) -> None:
    results, log = _files(tmp_path)
    record_run([_run("bench_a"), _run("bench_b")], STAMP, MACHINE, quick=True, results=results, log=log)
    assert results.read_text() == CURRENT
    assert f"## {STAMP} (quick)" in log.read_text()


def test_a_quick_run_fills_a_block_of_size_none(tmp_path: Path) -> None:
    text = CURRENT + "\n## bench_d\n\n<!-- bench:bench_d size=none -->\nNo run recorded yet.\n<!-- /bench -->\n\nAfter d.\n"
    new = replace_block(text, _run("bench_d"), STAMP, MACHINE, quick=True)
    start, end, size = find_block(new, "bench_d")
    assert size == "quick" and "quick run" in new[start:end] and new.endswith("<!-- /bench -->\n\nAfter d.\n")
    assert new[:start] == text[:text.index("<!-- bench:bench_d")]


def test_a_block_without_its_end_marker_is_refused(tmp_path: Path) -> None:
    broken = CURRENT.replace("old b table\n<!-- /bench -->", "old b table")
    broken = broken.replace("Reading of bench_a", "<!-- bench:bench_x size=full -->\n<!-- /bench -->\nReading of bench_a")
    with pytest.raises(ValueError, match="bench_b"):
        replace_block(broken, _run("bench_b"), STAMP, MACHINE, quick=False)
    with pytest.raises(ValueError, match="2 blocks"):
        replace_block(CURRENT + CURRENT, _run("bench_a"), STAMP, MACHINE, quick=False)


def test_the_shipped_results_file_has_one_well_formed_block_per_benchmark() -> None:
    text = run_all.RESULTS.read_text()
    for name in run_all.BENCHMARKS:
        assert find_block(text, name) is not None, f"benchmarks/RESULTS.md has no block for {name}"
