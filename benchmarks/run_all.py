"""`make bench`: run every benchmark in one process, log the figures and refresh the current tables.

Each benchmark module exposes ``run(quick: bool = False) -> list[dict]``; its rows become one
markdown table. Two files receive them:

* ``RESULTS_LOG.md``, the append-only dated log: one section per run (heading = UTC date and
  time, then the machine), one sub-section per benchmark, newest last;
* ``RESULTS.md``, the current figures: one section per benchmark whose table sits between
  ``<!-- bench:<name> size=<full|partial|quick|none> -->`` and ``<!-- /bench -->``. A run replaces
  only that block (date, machine, log pointer, table) and leaves every other byte of the file
  as it was, so the hand-written reading kept *after* a block survives. A benchmark with no block
  gets a new section at the end. A ``--quick`` run is logged but replaces only blocks of size
  ``quick`` or ``none``, so small smoke sizes never overwrite full-size figures.

    python -m benchmarks.run_all            # full sizes
    python -m benchmarks.run_all --quick    # small sizes, logged; fills only quick-size blocks
    python -m benchmarks.run_all --smoke    # `make bench-smoke`: every quick run, nothing recorded

``--smoke`` is the CI check that every benchmark still runs: each ``run(quick=True)`` in a fresh
temporary working directory (no resumed ``runs/bench`` state), one after the other; a benchmark
that raises or returns no rows is reported and the run goes on; the exit status is 1 when any
did. It prints a table of seconds per benchmark and writes neither results file.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib
import logging
import os
import platform
import re
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

logger = logging.getLogger("crystaloop.benchmarks")

BENCHMARKS = ("bench_featurize", "bench_store", "bench_oracle", "bench_surrogate", "bench_optimade", "bench_loop_pool", "bench_generator", "bench_multimodal", "bench_consistency", "bench_loop_generative", "bench_flow_overhead", "bench_posterior_toy", "bench_xrd_forward", "bench_xrd_conditioned", "bench_surrogate_ablation", "bench_surrogate_scaling", "bench_hull_references", "bench_hull_dft", "bench_serving", "bench_elements_index", "bench_discovery", "bench_discovery_prior", "bench_generators_cheap", "bench_failure_modes", "bench_xrd_inverse", "bench_xrd_checks", "bench_loop_anychem", "bench_template", "bench_prompt_constraints")
RESULTS = Path(__file__).with_name("RESULTS.md")
RESULTS_LOG = Path(__file__).with_name("RESULTS_LOG.md")

BLOCK_END = "<!-- /bench -->"
BLOCK_START = re.compile(r"^<!-- bench:(?P<name>[A-Za-z0-9_]+) size=(?P<size>full|partial|quick|none) -->$", re.MULTILINE)
QUICK_REPLACES = ("quick", "none")  # block sizes a --quick run may overwrite
RESULTS_HEADER = (
    "# Benchmark results: current figures\n\n"
    "One section per benchmark, its latest table. `make bench` replaces the block between "
    "`<!-- bench:NAME size=... -->` and `<!-- /bench -->`; the dated log of every run is `RESULTS_LOG.md`.\n"
)
LOG_HEADER = (
    "# Benchmark results: the dated log\n\n"
    "Appended by `make bench`; newest last. Every table was measured in one run, baseline beside it. "
    "`RESULTS.md` holds the current figures.\n"
)


def machine_description() -> str:
    """CPU model, core count, memory and Python/torch versions of this machine."""
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory = ""
    try:
        pages = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        memory = f", {pages / 2**30:.0f} GiB RAM"
    except (ValueError, OSError):
        pass
    return (
        f"{cpu}, {os.cpu_count()} cores{memory}, {platform.system()} {platform.release()}, "
        f"Python {platform.python_version()}, torch {torch.__version__}"
    )


def to_markdown(rows: list[dict]) -> str:
    if not rows:
        return "_no rows_\n"
    columns = list(dict.fromkeys(key for row in rows for key in row))
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        cells = []
        for column in columns:
            value = row.get(column, "")
            cells.append(f"{value:.4g}" if isinstance(value, float) else str(value))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class BenchRun:
    """One benchmark's figures from one ``make bench`` run.

    Attributes:
        name: module name under ``benchmarks/`` (``bench_store``).
        summary: first line of the module's docstring (what is measured, against which baseline).
        rows: the rows ``run`` returned (one dict per table row).
    """

    name: str
    summary: str
    rows: list[dict]


def log_heading(stamp: str, quick: bool) -> str:
    """The ``## ...`` heading text of one run's section in RESULTS_LOG.md."""
    return f"{stamp}{' (quick)' if quick else ''}"


def log_section(stamp: str, machine: str, quick: bool, runs: Sequence[BenchRun]) -> str:
    """The markdown appended to RESULTS_LOG.md for one run: dated heading, machine, a table per benchmark."""
    parts = [f"\n## {log_heading(stamp, quick)}\n\nMachine: {machine}\n"]
    parts += [f"\n### {run.name}\n\n{run.summary}\n\n{to_markdown(run.rows)}" for run in runs]
    return "".join(parts)


def current_block(run: BenchRun, stamp: str, machine: str, quick: bool) -> str:
    """The marked block RESULTS.md keeps for ``run``: markers included, no trailing newline."""
    size = "quick" if quick else "full"
    return (
        f"<!-- bench:{run.name} size={size} -->\n"
        f"Measured {stamp} by `make bench`{' (quick run: small sizes, not the full benchmark)' if quick else ''}, "
        f"on: {machine}.\n"
        f"Baseline: in the table, measured in the same run ({run.summary}).\n"
        f'Log: `RESULTS_LOG.md`, "## {log_heading(stamp, quick)}" → "### {run.name}". Any reading after '
        f"this block was written by hand for the run it names; check it against this table.\n\n"
        f"{to_markdown(run.rows)}{BLOCK_END}"
    )


def find_block(text: str, name: str) -> tuple[int, int, str] | None:
    """``(start, end, size)`` of ``name``'s block in ``text`` (end just past ``<!-- /bench -->``), or ``None``.

    Raises:
        ValueError: ``name`` has two blocks, or its block has no closing marker before the next block.
    """
    starts = [m for m in BLOCK_START.finditer(text) if m.group("name") == name]
    if not starts:
        return None
    if len(starts) > 1:
        raise ValueError(f"RESULTS.md has {len(starts)} blocks for {name!r}; keep one")
    match = starts[0]
    end = text.find(BLOCK_END, match.end())
    following = BLOCK_START.search(text, match.end())
    if end < 0 or (following is not None and following.start() < end):
        raise ValueError(f"RESULTS.md: the block for {name!r} has no {BLOCK_END!r} before the next block")
    return match.start(), end + len(BLOCK_END), match.group("size")


def replace_block(text: str, run: BenchRun, stamp: str, machine: str, quick: bool) -> str:
    """``text`` with ``run``'s block replaced (or a new section appended); every other byte unchanged.

    A quick run leaves a block of size ``full`` or ``partial`` as it is.
    """
    block = current_block(run, stamp, machine, quick)
    found = find_block(text, run.name)
    if found is None:
        separator = "" if text.endswith("\n\n") or not text else ("\n" if text.endswith("\n") else "\n\n")
        return f"{text}{separator}## {run.name}: {run.summary}\n\n{block}\n"
    start, end, size = found
    if quick and size not in QUICK_REPLACES:
        logger.info("%s: quick run logged only; RESULTS.md keeps its %s-size table", run.name, size)
        return text
    return text[:start] + block + text[end:]


def record_run(runs: Sequence[BenchRun], stamp: str, machine: str, quick: bool,
               results: Path = RESULTS, log: Path = RESULTS_LOG) -> None:
    """Append one run to ``log`` and replace each benchmark's block of ``results`` (both created if missing)."""
    if not log.exists():
        log.write_text(LOG_HEADER)
    with log.open("a") as handle:
        handle.write(log_section(stamp, machine, quick, runs))
    text = results.read_text() if results.exists() else RESULTS_HEADER
    for run in runs:
        text = replace_block(text, run, stamp, machine, quick)
    results.write_text(text)


def run_standalone(run: Callable[..., list[dict]], doc: str | None, options: dict[str, dict[str, Any]] | None = None) -> None:
    """``python -m benchmarks.<name> [--quick] [options]``: run one benchmark and print its rows as a table.

    ``options`` maps extra flags to ``argparse.add_argument`` keywords; each parsed value is
    passed to ``run`` under the flag's destination name (``--datasets`` → ``datasets=``).
    """
    parser = argparse.ArgumentParser(description=(doc or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes (smoke run)")
    for flag, keywords in (options or {}).items():
        parser.add_argument(flag, **keywords)
    args = vars(parser.parse_args())
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    rows = run(**args)
    logger.info("machine: %s\n\n%s", machine_description(), to_markdown(rows))


@dataclass(frozen=True)
class SmokeResult:
    """One benchmark's quick run in ``--smoke`` mode: its name, wall seconds, rows returned and error."""

    name: str
    seconds: float
    rows: int
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None and self.rows > 0


def load_benchmark(name: str) -> Any:
    """The module ``benchmarks.<name>`` (imported as ``make bench`` runs it, from the repository root)."""
    return importlib.import_module(f"benchmarks.{name}")


def smoke_run(name: str, load: Callable[[str], Any] = load_benchmark) -> SmokeResult:
    """Run benchmark ``name``'s ``run(quick=True)`` once; never raises (the error is in the result).

    The torch thread count is restored afterwards, so one benchmark's setting does not leak into the next.
    """
    import torch

    threads = torch.get_num_threads()
    start = time.perf_counter()
    try:
        rows = load(name).run(quick=True)
        if not isinstance(rows, list) or not all(isinstance(row, dict) for row in rows):
            raise TypeError(f"run(quick=True) must return a list of dicts, got {type(rows).__name__}")
        return SmokeResult(name, time.perf_counter() - start, len(rows), None if rows else "returned no rows")
    except Exception as error:  # noqa: BLE001 - a smoke run reports every failure and goes on
        logger.error("%s failed:\n%s", name, traceback.format_exc())
        return SmokeResult(name, time.perf_counter() - start, 0, f"{type(error).__name__}: {error}")
    finally:
        torch.set_num_threads(threads)


def smoke(names: Sequence[str]) -> list[SmokeResult]:
    """Every benchmark's quick run, each in a fresh temporary working directory; nothing is recorded."""
    results = []
    home = Path.cwd()
    for index, name in enumerate(names, start=1):
        logger.info("[%d/%d] %s (quick)", index, len(names), name)
        with tempfile.TemporaryDirectory(prefix=f"smoke-{name}-") as scratch:
            os.chdir(scratch)
            try:
                results.append(smoke_run(name))
            finally:
                os.chdir(home)
        last = results[-1]
        logger.info("[%d/%d] %s: %s in %.1f s", index, len(names), name, "ok" if last.ok else f"FAILED ({last.error})", last.seconds)
    return results


def smoke_table(results: Sequence[SmokeResult]) -> str:
    """Markdown table of a smoke run: benchmark, seconds, rows, status; total seconds last."""
    rows: list[dict] = [{"benchmark": r.name, "seconds": round(r.seconds, 1), "rows": r.rows, "status": "ok" if r.ok else r.error}
                        for r in results]
    rows.append({"benchmark": "total", "seconds": round(sum(r.seconds for r in results), 1), "rows": sum(r.rows for r in results),
                 "status": f"{sum(not r.ok for r in results)} failed"})
    return to_markdown(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes (smoke run)")
    parser.add_argument("--smoke", action="store_true", help="every quick run in a scratch directory, nothing recorded; exit 1 on any failure")
    parser.add_argument("--only", nargs="*", default=None, help=f"subset of {', '.join(BENCHMARKS)}")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    unknown = sorted(set(args.only or ()) - set(BENCHMARKS))
    if unknown:
        parser.error(f"unknown benchmark(s) {', '.join(unknown)}; allowed: {', '.join(BENCHMARKS)}")
    names = args.only or BENCHMARKS
    if args.smoke:
        results = smoke(names)
        logger.info("smoke run on %s\n\n%s", machine_description(), smoke_table(results))
        sys.exit(0 if all(result.ok for result in results) else 1)
    stamp = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    runs = []
    for name in names:
        module = load_benchmark(name)
        logger.info("running %s", name)
        rows = module.run(quick=args.quick)
        runs.append(BenchRun(name, (module.__doc__ or "").strip().splitlines()[0], rows))
    record_run(runs, stamp, machine_description(), args.quick)
    logger.info("appended the run to %s and refreshed %s", RESULTS_LOG, RESULTS)


if __name__ == "__main__":
    main()
