"""Consistency sampling: quality and speed vs steps (1, 2, 4 consistency steps; teacher at 1000 and 100 steps), one run.

For each dataset with a teacher and a distilled checkpoint, on its held-out development split
(default ``perov_5/val``, ``carbon_24/val``), in one process and with torch on one thread:

* CSP (DESIGN.md protocol): one sample per test composition, match rate (%) and normalised
  RMSE with pymatgen StructureMatcher(stol=0.5, angle_tol=10, ltol=0.3), and the strict fit rate;
* de novo: as many samples as CSP items, atom counts from the training distribution;
  structural validity (pair distances > 0.5 Å, volume > 0.1 Å³) and compositional validity
  (SMACT charge neutrality + electronegativity) in %;
* speed: structures/s of the reverse process alone (CSP and de novo), batches of 512;
* against the teacher's 1000-step pc row: match rate ratio (goal ≥ 95 % at 2 steps) and
  speed-up (goal ≥ 200× at 2 steps).

Rows: consistency 1, 2, 4 steps (midpoints as validated in the checkpoint), teacher pc 1000,
pc 100 and ddim 100.

    python -m benchmarks.bench_consistency --teacher runs/generator/perov_5.pt \\
        --student runs/generator/perov_5_consistency.pt --data perov_5/val --limit 50

``run(quick)`` (``make bench``) uses the shipped teachers and ``generator/shipped/<name>_consistency.pt``;
a dataset whose distilled checkpoint is missing gives one row saying so.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)

_SHIPPED = Path(__file__).resolve().parent.parent / "generator" / "shipped"
DEFAULTS: dict[str, tuple[str, Path, str]] = {
    "perov_5": ("perov_5", _SHIPPED / "perov_5_consistency.pt", "perov_5/val"),
    "carbon_24": ("carbon_24", _SHIPPED / "carbon_24_consistency.pt", "carbon_24/val"),
}
CONSISTENCY_STEPS = (1, 2, 4)
TEACHER_SAMPLERS = (("pc", 1000), ("pc", 100), ("ddim", 100))


def _evaluate(generator: Any, references: list, seed: int) -> dict[str, Any]:
    """CSP and de novo figures of one generator on ``references`` (same seed for every row)."""
    import torch

    from crystaloop.data.validity import compositional_validity, structural_validity
    from crystaloop.generator.diffusion.generator import crystal_from_sample
    from crystaloop.generator.diffusion.sampling import SampleRequest
    from crystaloop.generator.evaluation import csp_metrics

    norm = generator.model.normalisation
    tokens = torch.cat([norm.tokens(c.numbers, where=f"test item {i}") for i, c in enumerate(references)])
    request = SampleRequest(num_atoms=torch.tensor([c.n_sites for c in references]), tokens=tokens)
    raw = generator.sample_raw(request, seed=seed)
    csp = csp_metrics(references, [crystal_from_sample(*parts) for parts in raw.split()])
    denovo = generator.sample_raw(generator.request(len(references), None, np.random.default_rng(seed)), seed=seed + 1)
    samples = [crystal_from_sample(*parts) for parts in denovo.split()]
    structural = [c is not None and structural_validity(c) for c in samples]
    compositional = [c is not None and compositional_validity(c) for c in samples]
    n = len(references)
    return {
        "match_rate": csp["match_rate"], "rmse": csp["rmse"] if csp["rmse"] is not None else float("nan"),
        "fit_rate": csp["fit_rate"], "csp_structures_per_s": n / raw.seconds,
        "dng_struct_valid": 100.0 * float(np.mean(structural)), "dng_comp_valid": 100.0 * float(np.mean(compositional)),
        "dng_structures_per_s": n / denovo.seconds,
    }


def compare(teacher: str | Path, student: str | Path, data: str, *, limit: int | None = None, seed: int = 0) -> list[dict]:
    """Rows for one teacher / distilled pair on ``data`` (first ``limit`` items)."""
    from crystaloop.data.datasets import load_dataset
    from crystaloop.generator.config import SamplerConfig
    from crystaloop.generator.diffusion.generator import DiffusionGenerator
    from crystaloop.generator.shipped import resolve_generator_checkpoint

    references = load_dataset(data, max_rows=limit).crystals
    teacher_path = resolve_generator_checkpoint(teacher)
    runs: list[tuple[str, Any]] = []
    for steps in CONSISTENCY_STEPS:
        runs.append((f"consistency {steps} step{'s' if steps > 1 else ''}",
                     DiffusionGenerator.from_checkpoint(student, SamplerConfig(method="consistency", steps=steps))))
    for method, steps in TEACHER_SAMPLERS:
        runs.append((f"teacher {method} {steps}", DiffusionGenerator.from_checkpoint(teacher_path, SamplerConfig(method=method, steps=steps))))
    rows = []
    for label, generator in runs:
        logger.info("%s: %s on %d items", data, label, len(references))
        midpoints = getattr(generator.model, "midpoints", {}).get(2)
        rows.append({"dataset": data, "sampler": label, "n": len(references), **_evaluate(generator, references, seed),
                     **({"midpoint_2": midpoints[0]} if midpoints and label.startswith("consistency") else {})})
    reference = next(r for r in rows if r["sampler"] == "teacher pc 1000")
    for row in rows:
        row["match_vs_teacher_1000_pct"] = 100.0 * row["match_rate"] / reference["match_rate"] if reference["match_rate"] else float("nan")
        row["speedup_vs_teacher_1000"] = row["csp_structures_per_s"] / reference["csp_structures_per_s"]
    return rows


def run(quick: bool = False, limit: int | None = None) -> list[dict]:
    """All datasets of :data:`DEFAULTS` whose distilled checkpoint exists (``quick``: 20 items)."""
    import torch

    torch.set_num_threads(1)
    limit = limit or (20 if quick else None)
    rows: list[dict] = []
    for name, (teacher, student, data) in DEFAULTS.items():
        if not Path(student).is_file():
            logger.warning("no distilled checkpoint for %s at %s; skipped", name, student)
            rows.append({"dataset": data, "sampler": f"skipped: no distilled checkpoint at {student}"})
            continue
        rows.extend(compare(teacher, student, data, limit=limit))
    return rows


def main() -> None:
    from benchmarks.run_all import machine_description, to_markdown

    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--teacher", help="teacher checkpoint or shipped name (with --student; default: every shipped pair)")
    parser.add_argument("--student", help="distilled checkpoint")
    parser.add_argument("--data", help="test data (default: the teacher dataset's val split)")
    parser.add_argument("--limit", type=int, default=None, help="first N test items (quick runs)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    import torch

    torch.set_num_threads(args.threads)
    if args.student:
        if not args.teacher:
            parser.error("--student needs --teacher")
        data = args.data or f"{Path(str(args.teacher)).stem.split('_consistency')[0]}/val"
        rows = compare(args.teacher, args.student, data, limit=args.limit, seed=args.seed)
    else:
        rows = run(limit=args.limit)
    logger.info("machine: %s\n\n%s", machine_description(), to_markdown(rows))


if __name__ == "__main__":
    main()
