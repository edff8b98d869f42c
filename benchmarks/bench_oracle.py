"""MLIP oracle benchmark: CHGNet single-point throughput and relaxation time by cell size.

* ``single_point`` — CHGNet 0.3.0 energies of shipped perov_5 val structures (5 atoms), in
  structures per second, with torch's default thread count and with one thread; SevenNet-0 on
  the same structures when ``sevenn`` is installed. The model is loaded and warmed up first.
* ``relax`` — CHGNet relaxation (FIRE, cell relaxed, fmax 0.1 eV/Å, at most 150 steps, 25 with
  ``--quick``; one torch thread) of one structure per size: a perov_5 cell (5 atoms), carbon_24
  cells of 8, 16 and 22 atoms (the largest in the shipped val split), and perov_5 supercells
  (2×2×2 = 40, 2×2×4 = 80 atoms) rattled by 0.03 Å with a fixed seed; steps taken and seconds
  per step beside the total.
* ``dask relax`` — oracle throughput through a ``distributed`` ``LocalCluster`` of 1 and of 2
  worker processes (one thread each; each worker builds its own CHGNet calculator once, as the
  flow's ``--runner dask`` does), on one batch of perov_5 val relaxations (FIRE, fmax 0.1, at most
  50 steps; 8 structures, ``--quick``: 2 structures, 2 workers only). Workers load the model before
  the clock starts; relaxations per second and the speed-up over 1 worker in the same run.

Nothing is cached (every figure is a computation). Run ``python -m benchmarks.bench_oracle``
(``--quick`` for 20 single points and 25-step relaxations of the small cells). Rows are returned
and logged; RESULTS.md is written by ``benchmarks/run_all``.
"""

from __future__ import annotations

import argparse
import logging
import time
import warnings
from collections import Counter
from importlib.util import find_spec
from typing import Any

import numpy as np

from crystaloop.data.crystal import Crystal
from crystaloop.data.datasets import load_dataset
from crystaloop.surrogates.oracles import ASEOracle, CHGNetOracle, RelaxConfig, SevenNetOracle

logger = logging.getLogger(__name__)

SEED = 20261127
CARBON_SIZES = (8, 16, 22)


def _supercell(crystal: Crystal, reps: tuple[int, int, int], rng: np.random.Generator) -> Crystal:
    atoms = crystal.to_ase().repeat(reps)
    atoms.positions += rng.normal(scale=0.03, size=atoms.positions.shape)
    return Crystal.from_ase(atoms)


def _single_points(oracle: ASEOracle, crystals: list[Crystal], label: str) -> dict[str, Any]:
    oracle.single_point(crystals[:1], use_cache=False)  # load the model, warm up
    started = time.perf_counter()
    results = oracle.single_point(crystals[1:], use_cache=False)
    seconds = time.perf_counter() - started
    n = len(results)
    failed = sum(r.status != "ok" for r in results)
    row = {
        "oracle": oracle.name,
        "task": f"single_point ({label})",
        "n_atoms": crystals[0].n_sites,
        "n_structures": n,
        "seconds": seconds,
        "structures_per_s": n / seconds,
        "failed": failed,
    }
    logger.info("%s", row)
    return row


def _relaxations(oracle: CHGNetOracle, cases: list[tuple[str, Crystal]]) -> list[dict[str, Any]]:
    oracle.single_point([cases[0][1]], use_cache=False)  # load the model before timing
    rows = []
    for label, crystal in cases:
        started = time.perf_counter()
        (result,) = oracle.relax([crystal], use_cache=False)
        seconds = time.perf_counter() - started
        row = {
            "oracle": oracle.name,
            "task": f"relax {label}",
            "n_atoms": crystal.n_sites,
            "n_structures": 1,
            "seconds": seconds,
            "per_structure_s": seconds,
            "steps": result.steps,
            "s_per_step": seconds / max(result.steps, 1),
            "status": "ok (not converged)" if result.status == "ok" and not result.converged else result.status,
        }
        logger.info("%s", row)
        rows.append(row)
    return rows


_WORKER_ORACLE: dict[str, CHGNetOracle] = {}  # one calculator per Dask worker process


def _worker_oracle() -> CHGNetOracle:
    if "chgnet" not in _WORKER_ORACLE:
        warnings.filterwarnings("ignore", category=UserWarning, module="chgnet")
        _WORKER_ORACLE["chgnet"] = CHGNetOracle(relax=RelaxConfig(fmax=0.1, max_steps=50, timeout_s=600.0), threads=1)
    return _WORKER_ORACLE["chgnet"]


def _warm_worker(crystal: Crystal) -> bool:
    _worker_oracle().single_point([crystal], use_cache=False)
    return True


def _relax_on_worker(crystal: Crystal) -> tuple[str, int]:
    (result,) = _worker_oracle().relax([crystal], use_cache=False)
    return result.status, result.steps


def _dask_rows(crystals: list[Crystal], workers: tuple[int, ...]) -> list[dict[str, Any]]:
    """Relaxations of ``crystals`` on a local Dask cluster of each size in ``workers``."""
    from distributed import Client, LocalCluster

    rows: list[dict[str, Any]] = []
    for n in workers:
        with LocalCluster(n_workers=n, threads_per_worker=1, processes=True, dashboard_address=None) as cluster, Client(cluster) as client:
            started = time.perf_counter()
            client.run(_warm_worker, crystals[0])  # every worker loads its own model
            warm_s = time.perf_counter() - started
            started = time.perf_counter()
            results = client.gather(client.map(_relax_on_worker, crystals, pure=False))
            seconds = time.perf_counter() - started
        row = {
            "oracle": "chgnet",
            "task": f"dask relax ({n} worker{'s' if n > 1 else ''})",
            "n_atoms": crystals[0].n_sites,
            "n_structures": len(crystals),
            "seconds": seconds,
            "structures_per_s": len(crystals) / seconds,
            "per_structure_s": seconds / len(crystals),
            "steps": sum(steps for _, steps in results),
            "dask_workers": n,
            "model_load_s": warm_s,
            "status": " ".join(f"{k}×{v}" for k, v in sorted(Counter(status for status, _ in results).items())),
        }
        if rows and rows[0]["dask_workers"] == 1:
            row["speedup_vs_1_worker"] = row["structures_per_s"] / rows[0]["structures_per_s"]
        logger.info("%s", row)
        rows.append(row)
    return rows


def run(quick: bool = False) -> list[dict]:
    """Run the benchmark; ``quick`` uses fewer structures and shorter relaxations."""
    warnings.filterwarnings("ignore", category=UserWarning, module="chgnet")
    n_single = 21 if quick else 101
    perov = load_dataset("perov_5/val", max_rows=n_single).crystals
    carbon = load_dataset("carbon_24/val").crystals
    rng = np.random.default_rng(SEED)
    rows: list[dict] = []

    rows.append(_single_points(CHGNetOracle(threads=None), perov, "perov_5 val, torch default threads"))
    rows.append(_single_points(CHGNetOracle(threads=1), perov, "perov_5 val, 1 thread"))
    if find_spec("sevenn") is not None:
        rows.append(_single_points(SevenNetOracle(threads=1), perov[: 21 if quick else 51], "perov_5 val, 1 thread"))

    cases: list[tuple[str, Crystal]] = [("perov_5 val", perov[1])]
    for size in CARBON_SIZES:
        crystal = next(c for c in carbon if c.n_sites == size)
        cases.append((f"carbon_24 val ({size} atoms)", crystal))
    if not quick:
        cases.append(("perov_5 2x2x2 supercell, rattled", _supercell(perov[1], (2, 2, 2), rng)))
        cases.append(("perov_5 2x2x4 supercell, rattled", _supercell(perov[1], (2, 2, 4), rng)))
    relax = RelaxConfig(fmax=0.1, max_steps=25 if quick else 150, timeout_s=600.0)
    rows.extend(_relaxations(CHGNetOracle(relax=relax, threads=1), cases))
    rows.extend(_dask_rows(perov[1:3] if quick else perov[1:9], (2,) if quick else (1, 2)))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes (smoke run)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    for row in run(quick=args.quick):
        logger.info(" | ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()))


if __name__ == "__main__":
    main()
