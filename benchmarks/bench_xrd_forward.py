"""XRD forward model (issue #10): torch powder patterns against pymatgen on every perov_5 / carbon_24 val structure, and time per structure, in one run.

Rows:

* ``agreement``: for every structure of each shipped validation split, the cosine similarity of
  :func:`crystaloop.data.xrd_forward.powder_pattern` (float64, and float32 for the minimum)
  with :func:`crystaloop.multimodal.xrd.simulate_pattern` (pymatgen ``XRDCalculator`` with the
  same pseudo-Voigt broadening), both on the default 1701-point Cu Kα grid: min, 1st and 5th
  percentile, median and mean, written as ``1 − cos`` (so the figures survive rounding), and
  the largest pointwise difference (patterns scaled to max 1);
* ``time``: milliseconds per structure on one CPU thread, best of 3 over the same structures
  (the first 256 of the split): the torch model in batches of 64 (forward in float32 and
  float64, forward + backward of an Rwp misfit in float32) beside pymatgen one structure at a
  time (the simulator the model replaces).

``quick=True`` uses the first 64 structures of each split (a smoke run, not a result).
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable

import numpy as np
import torch

logger = logging.getLogger(__name__)

SPLITS = ("perov_5/val", "carbon_24/val")
BATCH = 64
TIMED = 256


def _best_seconds(fn: Callable[[], object], repeats: int = 3) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def _batches(crystals: list, dtype: torch.dtype) -> list[tuple[torch.Tensor, ...]]:
    from crystaloop.data.graphs import stack_crystals

    out = []
    for start in range(0, len(crystals), BATCH):
        stacked = stack_crystals(crystals[start : start + BATCH], dtype=dtype)
        out.append((stacked["lattice"], stacked["frac_coords"], stacked["atomic_numbers"], stacked["num_atoms"]))
    return out


def _patterns(batches: list[tuple[torch.Tensor, ...]]) -> np.ndarray:
    from crystaloop.data.xrd_forward import powder_pattern

    with torch.no_grad():
        return torch.cat([powder_pattern(*batch) for batch in batches]).double().numpy()


def _forward_backward(batches: list[tuple[torch.Tensor, ...]], targets: list[torch.Tensor]) -> None:
    from crystaloop.data.xrd_forward import pattern_misfit, powder_pattern

    for (lattice, frac, numbers, num_atoms), target in zip(batches, targets, strict=True):
        lattice, frac = lattice.clone().requires_grad_(), frac.clone().requires_grad_()
        pattern_misfit(powder_pattern(lattice, frac, numbers, num_atoms), target).sum().backward()


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def _agreement_row(split: str, crystals: list, reference: np.ndarray) -> dict:
    mine = _patterns(_batches(crystals, torch.float64))
    mine32 = _patterns(_batches(crystals, torch.float32))
    gap = 1.0 - _cosines(mine, reference)  # 1 − cos: the table's floats keep 4 significant digits
    return {
        "row": "agreement",
        "dataset": split,
        "n": len(crystals),
        "1-cos max (= 1 - min cos)": float(gap.max()),
        "1-cos p99 (= 1 - p1 cos)": float(np.percentile(gap, 99)),
        "1-cos p95 (= 1 - p5 cos)": float(np.percentile(gap, 95)),
        "1-cos median": float(np.median(gap)),
        "1-cos mean (= 1 - mean cos)": float(gap.mean()),
        "1-cos max, float32": float((1.0 - _cosines(mine32, reference)).max()),
        "max abs diff": float(np.abs(mine - reference).max()),
    }


def _time_rows(split: str, crystals: list) -> list[dict]:
    from pymatgen.analysis.diffraction.xrd import XRDCalculator

    from crystaloop.data.xrd_grid import DEFAULT_GRID
    from crystaloop.multimodal.xrd import simulate_pattern

    calculator = XRDCalculator(wavelength=DEFAULT_GRID.wavelength)
    b32, b64 = _batches(crystals, torch.float32), _batches(crystals, torch.float64)
    targets = [torch.from_numpy(p).float() for p in np.split(_patterns(b64), range(BATCH, len(crystals), BATCH))]
    n = len(crystals)
    timings = {
        "torch forward, float32, batch 64": _best_seconds(lambda: _patterns(b32)),
        "torch forward, float64, batch 64": _best_seconds(lambda: _patterns(b64)),
        "torch forward + backward (Rwp), float32, batch 64": _best_seconds(lambda: _forward_backward(b32, targets)),
        "pymatgen XRDCalculator + broadening, one at a time": _best_seconds(
            lambda: [simulate_pattern(c, calculator=calculator) for c in crystals]
        ),
    }
    return [
        {"row": "time", "dataset": f"{split} (first {n})", "method": method, "ms_per_structure": 1000 * seconds / n}
        for method, seconds in timings.items()
    ]


def run(quick: bool = False) -> list[dict]:
    """Agreement and timing rows for both shipped validation splits (one CPU thread)."""
    from crystaloop.data.datasets import load_dataset
    from crystaloop.multimodal.xrd import simulate_patterns

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    rows: list[dict] = []
    try:
        for split in SPLITS:
            crystals = load_dataset(split, max_rows=BATCH if quick else None).crystals
            reference = simulate_patterns(crystals).astype(np.float64)
            rows.append(_agreement_row(split, crystals, reference))
            logger.info("%s agreement: %s", split, rows[-1])
            rows += _time_rows(split, crystals[: BATCH if quick else TIMED])
            for row in rows[-4:]:
                logger.info("%s %s: %.3f ms/structure", row["dataset"], row["method"], row["ms_per_structure"])
    finally:
        torch.set_num_threads(threads)
    return rows


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    run(quick="--quick" in sys.argv[1:])
