"""Surrogate quality and speed: crystaloop's MPNN ensembles (with and without bond-angle features) vs the CGCNN baseline, trained in the same run with the same settings, on the held-out perov_5 and carbon_24 development splits; inference throughput beside CHGNet single points on the same structures.

Full run (``quick=False``): the shipped training settings (3 members, 60 epochs) for every
model, about 25 minutes per dataset on one CPU core. ``quick=True`` trains tiny models for a
few epochs (a smoke run, not a result). ``python -m benchmarks.bench_surrogate --datasets
carbon_24`` runs one dataset's comparison (each dataset's rows are one run on their own).
"""

from __future__ import annotations

import logging
import time

import torch

from crystaloop.data.datasets import load_dataset
from crystaloop.surrogates.config import SurrogateConfig
from crystaloop.surrogates.training import train_ensemble

logger = logging.getLogger(__name__)

TARGETS = {"perov_5": "heat_ref", "carbon_24": "energy_per_atom"}
# (row label, architecture, config overrides): the baseline last
MODELS: tuple[tuple[str, str, dict], ...] = (
    ("mpnn, bond angles (L=3)", "mpnn", {"angular_degree": 3}),
    ("mpnn, distances only", "mpnn", {"angular_degree": 0}),
    ("cgcnn (baseline)", "cgcnn", {}),
)


def _quality_rows(dataset_name: str, quick: bool) -> tuple[list[dict], dict]:
    target = TARGETS[dataset_name]
    train = load_dataset(f"{dataset_name}/train", max_rows=200 if quick else None)
    val = load_dataset(f"{dataset_name}/val", max_rows=100 if quick else None)
    quick_overrides = {"epochs": 3, "ensemble_size": 2, "hidden": 16} if quick else {}
    rows, ensembles = [], {}
    for label, architecture, overrides in MODELS:
        config = SurrogateConfig(architecture=architecture, targets=(target,), **overrides, **quick_overrides)
        started = time.perf_counter()
        result = train_ensemble(config, train, val)
        seconds = time.perf_counter() - started
        report = result.metrics["held_out"][target]
        rows.append(
            {
                "dataset": f"{dataset_name} (train {len(train)}, held-out val {len(val)})",
                "target": target,
                "model": f"{label} ×{config.ensemble_size}",
                "parameters": sum(p.numel() for p in result.ensemble.members[0].parameters()),
                "val_MAE": report["mae"],
                "val_RMSE": report["rmse"],
                "member_MAEs": ", ".join(f"{m:.4f}" for m in report["member_mae"]),
                "miscal_area": report["miscalibration_area"],
                "spearman_err_std": report["spearman_abs_error_std"],
                "units": report["units"],
                "train_s": seconds,
            }
        )
        logger.info("%s", rows[-1])
        ensembles[label] = result.ensemble
    baseline = rows[-1]["val_MAE"]
    for row in rows:
        row["MAE_vs_cgcnn"] = row["val_MAE"] / baseline
    return rows, ensembles


def _throughput_rows(dataset_name: str, ensembles: dict, quick: bool) -> list[dict]:
    from crystaloop.surrogates.oracles import make_oracle

    crystals = load_dataset(f"{dataset_name}/val", max_rows=30 if quick else 200).crystals
    rows = []
    for label, ensemble in ensembles.items():
        ensemble.predict(crystals[:8])  # warm-up
        started = time.perf_counter()
        ensemble.predict(crystals)
        seconds = time.perf_counter() - started
        rows.append({"task": f"inference, {dataset_name} val", "model": f"{label} ×{len(ensemble.members)}", "n_structures": len(crystals), "seconds": seconds, "structures_per_s": len(crystals) / seconds})
    oracle = make_oracle("chgnet")
    oracle.single_point(crystals[:2], use_cache=False)  # warm-up (loads the model)
    started = time.perf_counter()
    oracle.single_point(crystals, use_cache=False)
    chgnet_s = time.perf_counter() - started
    rows.append({"task": f"inference, {dataset_name} val", "model": "CHGNet 0.3.0 single point", "n_structures": len(crystals), "seconds": chgnet_s, "structures_per_s": len(crystals) / chgnet_s})
    return rows


def run(quick: bool = False, datasets: tuple[str, ...] = tuple(TARGETS)) -> list[dict]:
    torch.set_num_threads(1)
    rows: list[dict] = []
    for dataset_name in datasets:
        quality, ensembles = _quality_rows(dataset_name, quick)
        rows += quality + _throughput_rows(dataset_name, ensembles, quick)
    return rows


if __name__ == "__main__":
    from benchmarks.run_all import run_standalone

    datasets = {"nargs": "*", "default": list(TARGETS), "choices": list(TARGETS), "type": str}
    run_standalone(lambda quick, datasets: run(quick=quick, datasets=tuple(datasets)), __doc__, {"--datasets": datasets})
