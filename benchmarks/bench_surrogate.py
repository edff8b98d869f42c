"""Surrogate quality and speed: crystaloop's MPNN ensemble vs the CGCNN baseline, trained in the same run with the same settings, on the held-out perov_5 (and carbon_24) development splits; inference throughput beside CHGNet single points on the same structures.

Full run (``quick=False``): the shipped training settings (3 members, 60 epochs), about an hour on
2 CPU cores. ``quick=True`` trains tiny models for a few epochs (a smoke run, not a result).
"""

from __future__ import annotations

import logging
import time

import torch

from crystaloop.data.datasets import load_dataset
from crystaloop.surrogates.config import SurrogateConfig
from crystaloop.surrogates.training import train_ensemble

logger = logging.getLogger(__name__)


def _quality_rows(dataset_name: str, target: str, architectures: tuple[str, ...], quick: bool) -> list[dict]:
    train = load_dataset(f"{dataset_name}/train", max_rows=200 if quick else None)
    val = load_dataset(f"{dataset_name}/val", max_rows=100 if quick else None)
    overrides = {"epochs": 3, "ensemble_size": 2, "hidden": 16} if quick else {}
    rows = []
    for architecture in architectures:
        config = SurrogateConfig(architecture=architecture, targets=(target,), **overrides)
        started = time.perf_counter()
        result = train_ensemble(config, train, val)
        seconds = time.perf_counter() - started
        report = result.metrics["held_out"][target]
        rows.append(
            {
                "dataset": f"{dataset_name} (train {len(train)}, held-out val {len(val)})",
                "target": target,
                "model": f"{architecture} ×{config.ensemble_size}",
                "val_MAE": report["mae"],
                "val_RMSE": report["rmse"],
                "member_MAE_mean": sum(report["member_mae"]) / len(report["member_mae"]),
                "miscal_area": report["miscalibration_area"],
                "spearman_err_std": report["spearman_abs_error_std"],
                "units": report["units"],
                "train_s": seconds,
            }
        )
        logger.info("%s", rows[-1])
        if architecture == "mpnn":
            rows[-1]["_ensemble"] = result.ensemble
    return rows


def _throughput_rows(ensemble, quick: bool) -> list[dict]:  # noqa: ANN001
    from crystaloop.surrogates.oracles import make_oracle

    crystals = load_dataset("perov_5/val", max_rows=30 if quick else 200).crystals
    ensemble.predict(crystals[:8])  # warm-up
    started = time.perf_counter()
    ensemble.predict(crystals)
    surrogate_s = time.perf_counter() - started
    oracle = make_oracle("chgnet")
    oracle.single_point(crystals[:2], use_cache=False)  # warm-up (loads the model)
    started = time.perf_counter()
    oracle.single_point(crystals, use_cache=False)
    chgnet_s = time.perf_counter() - started
    return [
        {"task": "inference, perov_5 val", "model": ensemble.name + f" ×{len(ensemble.members)}", "n_structures": len(crystals), "seconds": surrogate_s, "structures_per_s": len(crystals) / surrogate_s},
        {"task": "inference, perov_5 val", "model": "CHGNet 0.3.0 single point", "n_structures": len(crystals), "seconds": chgnet_s, "structures_per_s": len(crystals) / chgnet_s},
    ]


def run(quick: bool = False) -> list[dict]:
    torch.set_num_threads(1)
    rows = _quality_rows("perov_5", "heat_ref", ("mpnn", "cgcnn"), quick)
    rows += _quality_rows("carbon_24", "energy_per_atom", ("mpnn",), quick)
    ensemble = next(r["_ensemble"] for r in rows if "_ensemble" in r)
    for row in rows:
        row.pop("_ensemble", None)
    return rows + _throughput_rows(ensemble, quick)


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    for row in run():
        print(row)  # noqa: T201 - command-line report
