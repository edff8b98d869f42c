"""Dataset parse + featurise throughput: crystaloop against a plain pymatgen loop, in one run.

On the shipped ``perov_5/val`` and ``carbon_24/val`` CSVs (``shipped_path(name, "val")``):

* ``crystaloop parse+featurise (cold)``: ``load_dataset`` from the CSV with the cache disabled
  (CIF parsing and plausibility checks), then ``crystals_to_data_list`` with the default radius
  graph (5 Å), one PyG ``Data`` per crystal;
* ``crystaloop parse+featurise (warm cache)``: the same with ``load_dataset`` served from the
  on-disk cache (a temporary folder, filled first and not timed);
* ``pymatgen parse+featurise``: the baseline, per CSV row ``Structure.from_str(cif, fmt="cif")``
  then ``structure.get_neighbor_list(5.0)``;
* featurise only, on structures parsed already: ``crystaloop featurise`` (``crystals_to_data_list``,
  batched), ``crystaloop edges only`` (``radius_graph_pbc`` on the stacked batch, no ``Data``
  objects) and ``pymatgen featurise`` (``get_neighbor_list(5.0)`` per structure);
* parse only: ``crystaloop parse (cold)``, ``crystaloop parse (warm cache)``, ``pymatgen parse``.

torch runs on one thread, as pymatgen does, so each row compares one core with one core; one
extra row, ``crystaloop featurise (..., N torch threads)``, repeats the featurisation with
torch's default thread count. Fast steps are timed as the best of several repeats (wall clock),
the slow parsing loops once.
Run ``python -m benchmarks.bench_featurize`` (``--quick``: the first 100 rows, fewer repeats).
Rows are returned and logged; RESULTS.md is written by ``benchmarks/run_all``.
"""

from __future__ import annotations

import argparse
import csv
import gzip
import logging
import os
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

DATASETS = ("perov_5", "carbon_24")
SPLIT = "val"
CUTOFF = 5.0  # Å, the default GraphConfig cutoff


def run(quick: bool = False) -> list[dict]:
    """Benchmark both shipped validation splits; ``quick`` reads only their first 100 rows.

    Returns:
        rows with ``dataset``, ``method``, ``n_structures``, ``seconds`` and ``structures_per_s``.
    """
    import torch

    from crystaloop.data.datasets import shipped_path

    max_rows = 100 if quick else None
    repeats = 2 if quick else 5
    default_threads = torch.get_num_threads()
    _warm_up()
    logger.info("featurise benchmark: torch %s, cutoff %.1f Å", torch.__version__, CUTOFF)
    rows: list[dict] = []
    try:
        torch.set_num_threads(1)
        for name in DATASETS:
            rows += _bench_dataset(f"{name}/{SPLIT}", shipped_path(name, SPLIT), max_rows, repeats, default_threads)
    finally:
        torch.set_num_threads(default_threads)
    for row in rows:
        logger.info(
            "%-14s %-62s %5d structures %8.4f s %9.1f structures/s",
            row["dataset"], row["method"], row["n_structures"], row["seconds"], row["structures_per_s"],
        )  # fmt: skip
    return rows


def _bench_dataset(dataset: str, path: Path, max_rows: int | None, repeats: int, threads: int) -> list[dict]:
    """The rows of one dataset; torch on one thread except for the row run with ``threads``."""
    import torch

    from crystaloop.data.datasets import load_dataset
    from crystaloop.data.graphs import crystals_to_data_list, radius_graph_pbc, stack_crystals

    cifs = _read_cifs(path, max_rows)
    structures, parse_s, neighbours_s = _pymatgen_loop(cifs)
    with _temporary_cache():
        cold_s, dataset_cold = _timed(lambda: load_dataset(path, max_rows=max_rows, use_cache=False))
        load_dataset(path, max_rows=max_rows)  # fills the cache (not timed)
        warm_s, dataset_warm = _best_of(repeats, lambda: load_dataset(path, max_rows=max_rows))
    crystals = dataset_cold.crystals
    if len(dataset_warm) != len(crystals) or len(crystals) != len(structures):
        logger.warning(
            "%s: %d rows, %d parsed cold, %d from cache", dataset, len(cifs), len(crystals), len(dataset_warm)
        )
    featurise_s, data_list = _best_of(repeats, lambda: crystals_to_data_list(crystals))
    torch.set_num_threads(threads)
    threaded_s, _ = _best_of(repeats, lambda: crystals_to_data_list(crystals))
    torch.set_num_threads(1)
    tensors = stack_crystals(crystals)
    edges_s, (edge_index, _, _) = _best_of(
        repeats, lambda: radius_graph_pbc(tensors["lattice"], tensors["frac_coords"], tensors["num_atoms"], CUTOFF)
    )
    baseline_s, neighbour_lists = _best_of(repeats, lambda: [s.get_neighbor_list(CUTOFF) for s in structures])
    n_edges = sum(int(d.edge_index.shape[1]) for d in data_list)
    n_baseline = sum(len(nl[0]) for nl in neighbour_lists)
    if not n_edges == int(edge_index.shape[1]) == n_baseline:
        logger.warning("%s: edge counts differ: ours %d, pymatgen %d", dataset, n_edges, n_baseline)
    logger.info("%s: %d structures, %d edges within %.1f Å", dataset, len(crystals), n_edges, CUTOFF)

    def row(method: str, n: int, seconds: float) -> dict:
        return {
            "dataset": dataset,
            "method": method,
            "n_structures": n,
            "seconds": round(seconds, 4),
            "structures_per_s": round(n / seconds, 1) if seconds > 0 else float("inf"),
        }

    n, n_pmg = len(crystals), len(structures)
    return [
        row("crystaloop parse+featurise (cold)", n, cold_s + featurise_s),
        row("crystaloop parse+featurise (warm cache)", n, warm_s + featurise_s),
        row("pymatgen parse+featurise", n_pmg, parse_s + neighbours_s),
        row("crystaloop featurise (crystals_to_data_list)", n, featurise_s),
        row(f"crystaloop featurise (crystals_to_data_list, {threads} torch threads)", n, threaded_s),
        row("crystaloop edges only (radius_graph_pbc)", n, edges_s),
        row("pymatgen featurise (get_neighbor_list)", n_pmg, baseline_s),
        row("crystaloop parse (cold)", n, cold_s),
        row("crystaloop parse (warm cache)", n, warm_s),
        row("pymatgen parse (Structure.from_str)", n_pmg, parse_s),
    ]


def _read_cifs(path: Path, max_rows: int | None) -> list[str]:
    """The ``cif`` column of a CDVAE CSV (``.csv.gz``), first ``max_rows`` rows."""
    with gzip.open(path, "rt", encoding="utf-8", newline="") as handle:
        cifs = [row["cif"] for row in csv.DictReader(handle)]
    return cifs[:max_rows] if max_rows is not None else cifs


def _pymatgen_loop(cifs: list[str]) -> tuple[list[Any], float, float]:
    """The baseline: parse each CIF, then its neighbour list; (structures, parse s, neighbour s)."""
    import warnings

    from pymatgen.core import Structure

    structures, parse_s, neighbours_s = [], 0.0, 0.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pymatgen warns about rounded CIF occupancies
        for cif in cifs:
            start = time.perf_counter()
            structure = Structure.from_str(cif, fmt="cif")
            middle = time.perf_counter()
            structure.get_neighbor_list(CUTOFF)
            end = time.perf_counter()
            parse_s += middle - start
            neighbours_s += end - middle
            structures.append(structure)
    return structures, parse_s, neighbours_s


def _warm_up() -> None:
    """Import and run every code path once so that import time is not measured."""
    from crystaloop.data.datasets import load_dataset, shipped_path
    from crystaloop.data.graphs import crystals_to_data_list

    crystals = load_dataset(shipped_path(DATASETS[0], SPLIT), max_rows=3, use_cache=False).crystals
    crystals_to_data_list(crystals)
    _pymatgen_loop(_read_cifs(shipped_path(DATASETS[0], SPLIT), 3))


@contextmanager
def _temporary_cache() -> Iterator[None]:
    """``$CRYSTALOOP_CACHE_DIR`` pointed at a fresh temporary folder, restored afterwards."""
    previous = os.environ.get("CRYSTALOOP_CACHE_DIR")
    with tempfile.TemporaryDirectory(prefix="crystaloop-bench-cache-") as folder:
        os.environ["CRYSTALOOP_CACHE_DIR"] = folder
        try:
            yield
        finally:
            if previous is None:
                os.environ.pop("CRYSTALOOP_CACHE_DIR", None)
            else:
                os.environ["CRYSTALOOP_CACHE_DIR"] = previous


def _timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def _best_of(repeats: int, fn: Callable[[], Any]) -> tuple[float, Any]:
    """Shortest wall time of ``repeats`` calls (the least disturbed by other processes)."""
    best, result = float("inf"), None
    for _ in range(repeats):
        seconds, result = _timed(fn)
        best = min(best, seconds)
    return best, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="first 100 rows of each split, fewer repeats")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    run(quick=args.quick)


if __name__ == "__main__":
    main()
