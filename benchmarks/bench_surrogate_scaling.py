"""How the MPNN-to-CGCNN ratio on perov_5 heat_ref moves with ensemble size and training-set size: six seeded members per model, every k-member ensemble scored, and two-member runs on 25 % and 50 % of the training data.

Ensemble size: ``train_ensemble`` trains 6 members (seeds 0–5, one calibration split, the
shipped recipe otherwise) of the distance-only MPNN, the bond-angle MPNN (L = 3) and CGCNN on
``perov_5/train``; every k-subset of members (k = 1, 3, 5, 6) is combined as the product
combines them (mean of member means) and scored on the held-out ``perov_5/val``; rows give the
mean, min and max over subsets, so the luck of one seed triple is visible. Mixed rows pair
distance-only and angular members of the same seeds. Training size: seeded subsets (25 %, 50 %)
of the training data, members 0 and 1 of each model, mean member MAE. Training is deterministic
on one thread, so rows reproduce exactly; the full run trains 30 members (about 75 minutes on
one core). Writes ``benchmarks/figures/surrogate_scaling_perov5.png``. ``quick=True`` is a smoke
run (200/100 structures, 2 epochs, 3 members).
"""

from __future__ import annotations

import itertools
import logging
from pathlib import Path

import numpy as np
import torch

from crystaloop.data.datasets import load_dataset
from crystaloop.surrogates.config import SurrogateConfig
from crystaloop.surrogates.training import train_ensemble

logger = logging.getLogger(__name__)

DISTANCE, ANGULAR, BASELINE = "mpnn, distances only", "mpnn, bond angles L=3", "cgcnn"
MODELS = {DISTANCE: ("mpnn", {"angular_degree": 0}), ANGULAR: ("mpnn", {"angular_degree": 3}), BASELINE: ("cgcnn", {})}
FRACTIONS = (0.25, 0.5)
FIGURE = Path(__file__).parent / "figures" / "surrogate_scaling_perov5.png"


def _member_means(label: str, train, val, members: int, quick: bool) -> np.ndarray:  # noqa: ANN001
    """(members, n_val) held-out predictions (eV) of each member."""
    architecture, overrides = MODELS[label]
    extra = {"epochs": 2, "hidden": 16} if quick else {}
    config = SurrogateConfig(architecture=architecture, targets=("heat_ref",), ensemble_size=members, **overrides, **extra)
    ensemble = train_ensemble(config, train).ensemble  # val is predicted once, below
    return ensemble.member_outputs(val.crystals).means[:, :, 0]


def _subset_maes(means: np.ndarray, y: np.ndarray, k: int) -> np.ndarray:
    return np.array([np.mean(np.abs(means[list(c)].mean(axis=0) - y)) for c in itertools.combinations(range(len(means)), k)])


def run(quick: bool = False) -> list[dict]:
    torch.set_num_threads(1)
    train = load_dataset("perov_5/train", max_rows=200 if quick else None)
    val = load_dataset("perov_5/val", max_rows=100 if quick else None)
    y = val.properties["heat_ref"]
    members = 3 if quick else 6
    means = {label: _member_means(label, train, val, members, quick) for label in MODELS}
    subsets = {}
    order = np.random.default_rng(7).permutation(len(train))
    for fraction in FRACTIONS:
        subset = train.subset(np.sort(order[: int(round(fraction * len(train)))]))
        subsets[len(subset)] = {label: _member_means(label, subset, val, 2, quick) for label in (DISTANCE, BASELINE)}
    rows = scaling_rows(means, subsets, y, len(train), (1, 2, 3) if quick else (1, 3, 5, 6))
    if not quick:
        scaling_plot(rows, FIGURE)
    return rows


def scaling_rows(means: dict[str, np.ndarray], subsets: dict[int, dict[str, np.ndarray]], y: np.ndarray, n_train: int, sizes: tuple[int, ...]) -> list[dict]:
    """Rows from member predictions: ``means[model]`` (members, n_val) on the full training set,
    ``subsets[n][model]`` (2, n_val) trained on n structures, ``y`` (n_val,) the truth (eV)."""
    rows: list[dict] = []
    for k in sizes:
        baseline = _subset_maes(means[BASELINE], y, k).mean()
        for label in MODELS:
            maes = _subset_maes(means[label], y, k)
            rows.append({"study": "ensemble size", "model": label, "members": k, "n_train": n_train, "MAE_mean": maes.mean(), "MAE_min": maes.min(), "MAE_max": maes.max(), "subsets": len(maes), "vs_cgcnn": maes.mean() / baseline})
    members = len(means[BASELINE])
    mixed = np.concatenate([means[DISTANCE], means[ANGULAR]])
    for k in range(1, members // 2 + 1):
        chosen = list(range(k)) + list(range(members, members + k))
        mae = float(np.mean(np.abs(mixed[chosen].mean(axis=0) - y)))
        baseline = float(np.mean(np.abs(means[BASELINE][: 2 * k].mean(axis=0) - y)))
        rows.append({"study": "ensemble size", "model": "mixed distances + angles (seeds 0..k-1 of each)", "members": 2 * k, "n_train": n_train, "MAE_mean": mae, "subsets": 1, "vs_cgcnn": mae / baseline})
    learning = {n: {label: m[:2] for label, m in models.items()} for n, models in subsets.items()}
    learning[n_train] = {label: means[label][:2] for label in (DISTANCE, BASELINE)}
    for n in sorted(learning):
        single = {label: float(np.mean([np.mean(np.abs(m - y)) for m in member_means])) for label, member_means in learning[n].items()}
        rows.append({"study": "training size", "model": "mpnn, distances only (mean of members 0, 1)", "members": 1, "n_train": n, "MAE_mean": single[DISTANCE], "vs_cgcnn": single[DISTANCE] / single[BASELINE]})
        rows.append({"study": "training size", "model": "cgcnn (mean of members 0, 1)", "members": 1, "n_train": n, "MAE_mean": single[BASELINE], "vs_cgcnn": 1.0})
    return rows


def scaling_plot(rows: list[dict], out: Path) -> Path:
    """Two panels: held-out MAE vs ensemble size (mean over subsets) and vs training-set size."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (size_axis, data_axis) = plt.subplots(1, 2, figsize=(10, 4.2))
    for label in MODELS:
        points = sorted((r["members"], r["MAE_mean"]) for r in rows if r["study"] == "ensemble size" and r["model"] == label)
        size_axis.plot(*zip(*points, strict=True), "o-", label=label)
    size_axis.set_xlabel("ensemble members")
    size_axis.set_ylabel("held-out heat_ref MAE (eV), mean over member subsets")
    size_axis.legend()
    for prefix in (DISTANCE, BASELINE):
        points = sorted((r["n_train"], r["MAE_mean"]) for r in rows if r["study"] == "training size" and r["model"].startswith(prefix))
        data_axis.plot(*zip(*points, strict=True), "o-", label=prefix)
    data_axis.set_xscale("log")
    data_axis.set_yscale("log")
    data_axis.set_xlabel("training structures (before the 10 % calibration split)")
    data_axis.set_ylabel("held-out heat_ref MAE (eV), single members")
    data_axis.legend()
    fig.suptitle("perov_5 heat_ref: MPNN vs CGCNN by ensemble size and training size")
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out


if __name__ == "__main__":
    from benchmarks.run_all import run_standalone

    run_standalone(run, __doc__)
