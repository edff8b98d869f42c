"""`make bench`: run every benchmark in one process and append the figures to RESULTS.md.

Each benchmark module exposes ``run(quick: bool = False) -> list[dict]``; rows are written as one
markdown table per benchmark under a heading with the date and the machine, so every figure in
RESULTS.md says where and when it was measured, with its baseline measured in the same run.

    python -m benchmarks.run_all            # full sizes
    python -m benchmarks.run_all --quick    # small sizes, for a smoke run
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib
import logging
import os
import platform
from collections.abc import Callable
from pathlib import Path
from typing import Any

logger = logging.getLogger("crystaloop.benchmarks")

BENCHMARKS = ("bench_featurize", "bench_store", "bench_oracle", "bench_surrogate", "bench_optimade", "bench_loop_pool", "bench_generator", "bench_multimodal", "bench_consistency", "bench_loop_generative", "bench_flow_overhead", "bench_posterior_toy", "bench_xrd_forward", "bench_xrd_conditioned", "bench_surrogate_ablation", "bench_surrogate_scaling", "bench_hull_references", "bench_hull_dft", "bench_serving", "bench_discovery", "bench_generators_cheap", "bench_failure_modes", "bench_xrd_inverse")
RESULTS = Path(__file__).with_name("RESULTS.md")


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes (smoke run)")
    parser.add_argument("--only", nargs="*", default=None, help=f"subset of {', '.join(BENCHMARKS)}")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    stamp = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    sections = [f"\n## {stamp}{' (quick)' if args.quick else ''}\n\nMachine: {machine_description()}\n"]
    for name in args.only or BENCHMARKS:
        module = importlib.import_module(f"benchmarks.{name}")
        logger.info("running %s", name)
        rows = module.run(quick=args.quick)
        sections.append(f"\n### {name}\n\n{(module.__doc__ or '').strip().splitlines()[0]}\n\n{to_markdown(rows)}")
    if not RESULTS.exists():
        RESULTS.write_text("# Benchmark results\n\nAppended by `make bench`; newest last. Every table was measured in one run, baseline beside it.\n")
    with RESULTS.open("a") as handle:
        handle.write("".join(sections))
    logger.info("appended results to %s", RESULTS)


if __name__ == "__main__":
    main()
