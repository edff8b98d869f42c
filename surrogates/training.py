"""Training of property ensembles: one code path for every architecture.

``train_ensemble`` carves a seeded calibration split (``config.val_fraction``) out of the
training data, featurises once, trains ``ensemble_size`` independently seeded members (AdamW,
cosine learning-rate decay, gradient clipping, early stopping on the calibration-split MAE, best
weights kept), recalibrates the ensemble's std on that calibration split and returns a
:class:`PropertyEnsemble` with its metrics. A held-out ``test`` set, if given, is only evaluated
at the end: it never influences weights, early stopping or calibration, so its figures are
honest (DESIGN.md: measured on a split the model never saw). With ``checkpoint`` given, training state is written
after every epoch to ``<checkpoint>.partial``, and a re-run with the same config and data resumes
where it stopped (processes end when a session ends).
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from crystaloop.data.datasets import CrystalDataset, split_indices
from crystaloop.data.datasets.overlap import TRAIN_HASHES_KEY, structure_hashes
from crystaloop.data.errors import DatasetError
from crystaloop.data.graphs import crystals_to_data_list
from crystaloop.surrogates.calibration import fit_std_scale, regression_report
from crystaloop.surrogates.config import SurrogateConfig
from crystaloop.surrogates.ensemble import MemberOutputs, PropertyEnsemble, _concat_members, knn_distance
from crystaloop.surrogates.models import build_model

__all__ = ["train_ensemble", "target_matrix", "evaluate_ensemble", "recalibrate", "calibration_split", "TrainingResult"]

logger = logging.getLogger(__name__)

EpochCallback = Callable[[int, int, int, float], None]  # member, epoch, epochs, val_mae
_MAX_REFERENCE_EMBEDDINGS = 2000


@dataclass
class TrainingResult:
    ensemble: PropertyEnsemble
    metrics: dict[str, Any]


def target_matrix(dataset: CrystalDataset, targets: tuple[str, ...]) -> np.ndarray:
    """(n, T) float64 target values, NaN where missing; unknown columns name the available ones."""
    missing = [t for t in targets if t not in dataset.properties]
    if missing:
        raise DatasetError(f"{dataset.name} has no column(s) {missing}; numeric columns: {sorted(dataset.properties)}")
    return np.column_stack([dataset.properties[t] for t in targets]).astype(np.float64)


def _config_hash(config: SurrogateConfig, data_hash: str) -> str:
    payload = json.dumps({"config": config.model_dump(mode="json"), "data": data_hash}, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def _attach_targets(data_list: list, y: np.ndarray) -> list:
    for data, row in zip(data_list, y, strict=True):
        mask = np.isfinite(row)
        data.y = torch.from_numpy(np.where(mask, row, 0.0)).float()[None, :]
        data.y_mask = torch.from_numpy(mask)[None, :]
    return data_list


def _loss(mean: torch.Tensor, log_var: torch.Tensor, y: torch.Tensor, mask: torch.Tensor, config: SurrogateConfig) -> torch.Tensor:
    if config.loss == "mse":
        per = (mean - y) ** 2 + 0.0 * log_var
    else:
        variance = log_var.exp()
        per = 0.5 * (log_var + (mean - y) ** 2 / variance) * variance.detach() ** config.beta
    return (per * mask).sum() / mask.sum().clamp(min=1)


@torch.no_grad()
def _val_mae(model: nn.Module, loader, device: str) -> float:  # noqa: ANN001
    model.eval()
    total, count = 0.0, 0
    for batch in loader:
        batch = batch.to(device)
        mean, _, _ = model(batch)
        total += float(((mean - batch.y).abs() * batch.y_mask).sum())
        count += int(batch.y_mask.sum())
    return total / max(count, 1)


def _partial_path(checkpoint: Path) -> Path:
    return checkpoint.with_name(checkpoint.name + ".partial")


def train_ensemble(
    config: SurrogateConfig,
    train: CrystalDataset,
    test: CrystalDataset | None = None,
    *,
    checkpoint: Path | None = None,
    on_epoch: EpochCallback | None = None,
) -> TrainingResult:
    """Train, calibrate and (with ``checkpoint``) save a property ensemble.

    Args:
        config: architecture, targets and optimisation settings.
        train: training data with the target columns.
        test: held-out data evaluated after training (metrics["held_out"]); never used to fit.
        checkpoint: where to save the final ensemble; enables per-epoch resume state.
        on_epoch: called after every epoch as ``on_epoch(member, epoch, epochs, val_mae)``.
    """
    from torch_geometric.loader import DataLoader

    target_matrix(train, config.targets)  # names the available columns if a target is missing
    if test is not None:
        target_matrix(test, config.targets)  # fail before training, not after, on a missing column
    data_hash = train.content_hash
    full_train = train
    train, val = calibration_split(config, train)
    y_train, y_val = target_matrix(train, config.targets), target_matrix(val, config.targets)
    keep_train = np.isfinite(y_train).any(axis=1)
    if keep_train.sum() < 2:
        raise DatasetError(f"{train.name}: fewer than 2 structures with a value for {list(config.targets)}")
    target_mean = np.nanmean(y_train, axis=0)
    target_std = np.nanstd(y_train, axis=0)
    target_std = np.where(target_std > 0, target_std, 1.0)

    started = time.perf_counter()
    train_data = _attach_targets(crystals_to_data_list(train.crystals, config.graph), (y_train - target_mean) / target_std)
    val_data = _attach_targets(crystals_to_data_list(val.crystals, config.graph), (y_val - target_mean) / target_std)
    train_data = [d for d, k in zip(train_data, keep_train, strict=True) if k]
    logger.info("featurised %d train / %d val structures in %.1fs", len(train_data), len(val_data), time.perf_counter() - started)
    val_loader = DataLoader(val_data, batch_size=256)

    run_id = _config_hash(config, data_hash)
    state: dict[str, Any] = {"run_id": run_id, "members": []}
    partial = _partial_path(checkpoint) if checkpoint else None
    if partial and partial.exists():
        saved = torch.load(partial, weights_only=True)
        if saved.get("run_id") == run_id:
            state = saved
            logger.info("resuming training from %s (%d members done)", partial, len(state["members"]))
        else:
            logger.warning("ignoring %s: it belongs to another config or dataset", partial)

    member_states: list[dict[str, torch.Tensor]] = list(state["members"])
    for member_index in range(len(member_states), config.ensemble_size):
        best = _train_member(config, member_index, train_data, val_loader, state, partial, on_epoch)
        member_states.append(best)
        state = {"run_id": run_id, "members": member_states}
        if partial:
            torch.save(state, partial)

    members = []
    for weights in member_states:
        model = build_model(config.architecture, **config.model_kwargs())
        model.load_state_dict(weights)
        members.append(model.to(config.device))
    ensemble = PropertyEnsemble(config=config, members=members, target_mean=target_mean, target_std=target_std)

    val_outputs = recalibrate(ensemble, val)

    reference_rows = np.random.default_rng(config.seed).permutation(len(train))[:_MAX_REFERENCE_EMBEDDINGS]
    reference = ensemble.embed([train.crystals[i] for i in np.sort(reference_rows)])
    ensemble.reference_embeddings = reference
    ensemble.ood_reference_distance = float(np.median(knn_distance(reference, reference, 5, exclude_self=True))) or 1.0

    metrics: dict[str, Any] = {
        "calibration_split": evaluate_ensemble(ensemble, val, outputs=val_outputs),
        "train_seconds": time.perf_counter() - started,
        "n_train": len(train_data),
        "n_calibration": len(val),
    }
    if test is not None:
        metrics["held_out"] = evaluate_ensemble(ensemble, test)
        metrics["held_out_data"] = test.name
        metrics["n_held_out"] = len(test)
    ensemble.metadata = {
        "train_data": train.name,
        "train_data_hash": data_hash,
        TRAIN_HASHES_KEY: structure_hashes(full_train),  # what `surrogate eval` checks leakage against
        "run_id": run_id,
        "metrics": metrics,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    if checkpoint:
        ensemble.save(checkpoint)
        if partial and partial.exists():
            partial.unlink()
    return TrainingResult(ensemble, metrics)


def _train_member(
    config: SurrogateConfig,
    member_index: int,
    train_data: list,
    val_loader,  # noqa: ANN001
    state: dict[str, Any],
    partial: Path | None,
    on_epoch: EpochCallback | None,
) -> dict[str, torch.Tensor]:
    from torch_geometric.loader import DataLoader

    seed = config.seed + member_index
    torch.manual_seed(seed)
    model = build_model(config.architecture, **config.model_kwargs()).to(config.device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=config.epochs, eta_min=config.lr * 0.01)
    shuffle = torch.Generator().manual_seed(seed)
    loader = DataLoader(train_data, batch_size=config.batch_size, shuffle=True, generator=shuffle)
    start_epoch, best_mae, bad_epochs = 0, float("inf"), 0
    best_state = copy.deepcopy(model.state_dict())

    current = state.get("current")
    if current and current["member"] == member_index:
        model.load_state_dict(current["model"])
        optimizer.load_state_dict(current["optimizer"])
        scheduler.load_state_dict(current["scheduler"])
        shuffle.set_state(current["shuffle"])
        start_epoch, best_mae, bad_epochs = current["epoch"] + 1, current["best_mae"], current["bad_epochs"]
        best_state = current["best_state"]

    for epoch in range(start_epoch, config.epochs):
        model.train()
        for batch in loader:
            batch = batch.to(config.device)
            mean, log_var, _ = model(batch)
            loss = _loss(mean, log_var, batch.y, batch.y_mask, config)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), 5.0)
            optimizer.step()
        scheduler.step()
        mae = _val_mae(model, val_loader, config.device)
        if mae < best_mae:
            best_mae, bad_epochs = mae, 0
            best_state = copy.deepcopy(model.state_dict())
        else:
            bad_epochs += 1
        logger.debug("member %d epoch %d val MAE (normalised) %.4f", member_index, epoch + 1, mae)
        if partial is not None:
            state["current"] = {
                "member": member_index,
                "epoch": epoch,
                "model": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "shuffle": shuffle.get_state(),
                "best_mae": best_mae,
                "bad_epochs": bad_epochs,
                "best_state": best_state,
            }
            torch.save(state, partial)
        if on_epoch is not None:  # after the state is saved: a crash here loses nothing
            on_epoch(member_index, epoch + 1, config.epochs, mae)
        if bad_epochs >= config.patience:
            if epoch + 1 < config.epochs:
                logger.info("member %d stopped early at epoch %d", member_index, epoch + 1)
            break
    state.pop("current", None)
    return best_state


def calibration_split(config: SurrogateConfig, train: CrystalDataset) -> tuple[CrystalDataset, CrystalDataset]:
    """The (fit, calibration) parts of ``train`` that :func:`train_ensemble` uses (seeded)."""
    parts = split_indices(len(train), {"train": 1 - config.val_fraction, "val": config.val_fraction}, seed=config.seed)
    return train.subset(parts["train"]), train.subset(parts["val"])


def recalibrate(ensemble: PropertyEnsemble, calibration: CrystalDataset) -> MemberOutputs:
    """Fit the ensemble's per-target std scale on ``calibration``; returns its member outputs."""
    y = target_matrix(calibration, ensemble.config.targets)
    outputs = ensemble.member_outputs(calibration.crystals)
    raw_mean, raw_std = ensemble.combine(outputs, calibrated=False)
    ensemble.std_scale = np.array([fit_std_scale(y[:, t], raw_mean[:, t], raw_std[:, t]) for t in range(y.shape[1])])
    return outputs


def evaluate_ensemble(ensemble: PropertyEnsemble, dataset: CrystalDataset, *, outputs=None) -> dict[str, Any]:  # noqa: ANN001
    """Per-target report (MAE, RMSE, calibration) of the ensemble and of each member alone."""
    y = target_matrix(dataset, ensemble.config.targets)
    outputs = outputs if outputs is not None else ensemble.member_outputs(dataset.crystals)
    mean, std = ensemble.combine(outputs)
    report: dict[str, Any] = {}
    for t, name in enumerate(ensemble.config.targets):
        entry = regression_report(y[:, t], mean[:, t], std[:, t])
        entry["units"] = ensemble.units[t]
        entry["member_mae"] = [float(np.nanmean(np.abs(y[:, t] - outputs.means[m, :, t]))) for m in range(len(outputs.means))]
        report[name] = entry
    report["ood_score_median"] = float(np.median(ensemble.ood_score(embeddings=_concat_members(outputs.embeddings)))) if ensemble.reference_embeddings is not None else None
    return report
