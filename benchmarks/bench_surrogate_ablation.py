"""Which MPNN settings move perov_5 heat_ref accuracy: single members (seed 0) trained with one setting changed at a time, held-out MAE beside the CGCNN member trained the same way.

Every row is one ensemble member (``ensemble_size=1``, seed 0, the shipped recipe otherwise:
60 epochs, β-NLL, AdamW, cosine decay, radius 5 Å with 16 nearest neighbours) trained on
``perov_5/train`` and scored on the held-out ``perov_5/val``. Training is deterministic on
one CPU thread, so a row reproduces exactly; a single seed resolves differences of about
±0.003 eV only (the shipped ensemble's members span 0.0615–0.0666 eV). About 2–4 minutes per
row on one core; ``quick=True`` uses 200/100 structures and 3 epochs (a smoke run).
"""

from __future__ import annotations

import logging
import time

import torch

from crystaloop.data.datasets import load_dataset
from crystaloop.surrogates.config import SurrogateConfig
from crystaloop.surrogates.training import evaluate_ensemble, train_ensemble

logger = logging.getLogger(__name__)

# (row label, architecture, SurrogateConfig overrides); the first row is the reference
VARIANTS: tuple[tuple[str, str, dict], ...] = (
    ("mpnn, distances only (shipped perov_5 setting)", "mpnn", {"angular_degree": 0}),
    ("mpnn, bond angles L=3", "mpnn", {"angular_degree": 3}),
    ("hidden 128", "mpnn", {"angular_degree": 0, "hidden": 128}),
    ("hidden 32", "mpnn", {"angular_degree": 0, "hidden": 32}),
    ("4 interaction blocks", "mpnn", {"angular_degree": 0, "layers": 4}),
    ("150 epochs (patience 40)", "mpnn", {"angular_degree": 0, "epochs": 150, "patience": 40}),
    ("2 interaction blocks", "mpnn", {"angular_degree": 0, "layers": 2}),
    ("weight decay 0.05", "mpnn", {"angular_degree": 0, "weight_decay": 0.05}),
    ("weight decay 0.2", "mpnn", {"angular_degree": 0, "weight_decay": 0.2}),
    ("batch size 32", "mpnn", {"angular_degree": 0, "batch_size": 32}),
    ("learning rate 1e-3", "mpnn", {"angular_degree": 0, "lr": 1e-3}),
    ("64 distance Gaussians", "mpnn", {"angular_degree": 0, "n_gaussians": 64}),
    ("MSE loss", "mpnn", {"angular_degree": 0, "loss": "mse"}),
    ("β-NLL with β = 0 (plain NLL)", "mpnn", {"angular_degree": 0, "beta": 0.0}),
    ("multi-task heat_ref + heat_all", "mpnn", {"angular_degree": 0, "targets": ("heat_ref", "heat_all")}),
    ("cgcnn (baseline)", "cgcnn", {}),
)


def run(quick: bool = False) -> list[dict]:
    torch.set_num_threads(1)
    train = load_dataset("perov_5/train", max_rows=200 if quick else None)
    val = load_dataset("perov_5/val", max_rows=100 if quick else None)
    check_rows = list(range(0, len(train), 3))  # a third of the training set, for the train-MAE column
    rows = []
    for label, architecture, overrides in VARIANTS:
        fields = {"targets": ("heat_ref",), "ensemble_size": 1, **overrides, **({"epochs": 3} if quick else {})}
        config = SurrogateConfig(architecture=architecture, **fields)
        started = time.perf_counter()
        result = train_ensemble(config, train, val)
        rows.append(
            {
                "variant": label,
                "held_out_MAE_eV": result.metrics["held_out"]["heat_ref"]["mae"],
                "held_out_RMSE_eV": result.metrics["held_out"]["heat_ref"]["rmse"],
                "train_MAE_eV": evaluate_ensemble(result.ensemble, train.subset(check_rows))["heat_ref"]["mae"],
                "train_s": time.perf_counter() - started,
            }
        )
        logger.info("%s", rows[-1])
    return rows


if __name__ == "__main__":
    from benchmarks.run_all import run_standalone

    run_standalone(run, __doc__)
