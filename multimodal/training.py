"""Training and evaluation of the fusion model (``crystaloop multimodal train``).

Each step takes a batch of crystals and their three views: the crystal graph, a freshly
augmented copy of its clean XRD pattern (:func:`~.xrd.augment_patterns`, so the encoder learns
what measurements do) and one of its descriptions (the full one or a variant, at random; with
``TrainConfig.robocrys_texts`` some variants are shipped robocrys descriptions), and
minimises :func:`~.fusion.clip_loss`. AdamW with a cosine learning-rate schedule; torch and numpy
are seeded from ``TrainConfig.seed``.

Progress: a rich bar per epoch and one log line per epoch. Every ``checkpoint_every`` epochs the
whole training state (model, optimiser, epoch, random states) goes to ``<out>.resume.pt``; a
later call with the same config resumes from it. The final checkpoint (self-describing, see
:mod:`.fusion`) holds the validation metrics of :func:`evaluate`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field

from crystaloop.data.crystal import Crystal
from crystaloop.data.datasets import CrystalDataset, load_dataset
from crystaloop.data.progress import progress_bar
from crystaloop.data.seeding import restores_torch_rng, restores_torch_threads
from crystaloop.multimodal.features import DatasetViews, prepare_views
from crystaloop.multimodal.fusion import FusionConfig, FusionModel, clip_loss, save_checkpoint
from crystaloop.multimodal.prompt import admissible_targets, parse_prompt
from crystaloop.multimodal.retrieval import composition_baseline_recall, random_recall, recall_at_k
from crystaloop.multimodal.xrd import AugmentConfig, augment_patterns

__all__ = ["TrainConfig", "TrainingData", "load_training_data", "train", "evaluate"]

logger = logging.getLogger(__name__)


class TrainConfig(BaseModel):
    """Data, optimisation and checkpointing of one training run."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    model: FusionConfig = FusionConfig()
    train: tuple[str, ...] = ("perov_5/train", "carbon_24/train")
    val: tuple[str, ...] = ("perov_5/val", "carbon_24/val")
    epochs: int = Field(12, ge=1)
    batch_size: int = Field(128, ge=2)
    lr: float = Field(2e-3, gt=0.0)
    weight_decay: float = Field(1e-4, ge=0.0)
    text_variants: int = Field(1, ge=0, description="training variants per description (besides the full one)")
    robocrys_texts: bool = Field(
        False,
        description="swap shipped robocrys descriptions into the training variants (multimodal/robocrys_cache.py)",
    )
    augment: AugmentConfig = AugmentConfig()
    seed: int = 0
    threads: int = Field(1, ge=1, description="torch CPU threads")
    checkpoint_every: int = Field(1, ge=1, description="epochs between resume checkpoints")
    max_minutes: float | None = Field(20.0, gt=0.0, description="stop after the epoch that passes this wall time")
    max_train: int | None = Field(None, ge=2, description="use only the first n training crystals (tests, smoke runs)")

    def digest(self) -> str:
        """sha256 of what shapes the result (a resume must match it; threads, time budget and
        checkpoint interval may change between the interrupted run and its resumption)."""
        excluded = {"threads", "max_minutes", "checkpoint_every"}
        if not self.robocrys_texts:  # off: the digest of configs from before the option existed
            excluded.add("robocrys_texts")
        relevant = self.model_dump_json(exclude=excluded)
        return hashlib.sha256(relevant.encode()).hexdigest()[:16]


class TrainingData:
    """Crystals with their views, ready for batches: graphs per crystal, patterns, text features."""

    def __init__(self, datasets: Sequence[CrystalDataset], views: Sequence[DatasetViews], config: FusionConfig) -> None:
        from crystaloop.data.graphs import crystals_to_data_list

        self.crystals: list[Crystal] = [c for d in datasets for c in d.crystals]
        self.formulas = [c.reduced_formula for c in self.crystals]
        self.graphs = crystals_to_data_list(self.crystals, config.structure.graph(), dtype=torch.float32)
        self.patterns = np.concatenate([v.patterns for v in views]).astype(np.float32)
        self.text_features = np.concatenate([v.text_features for v in views])
        self.texts = [t for v in views for t in v.texts]
        self.data_hash = hashlib.sha256("".join(d.content_hash for d in datasets).encode()).hexdigest()[:16]

    def __len__(self) -> int:
        return len(self.crystals)

    def structure_batch(self, index: np.ndarray) -> Any:
        from torch_geometric.data import Batch

        return Batch.from_data_list([self.graphs[i] for i in index])


def load_training_data(
    specs: Sequence[str],
    config: FusionConfig,
    *,
    variants: int,
    seed: int,
    limit: int | None = None,
    progress: bool = False,
    robocrys: bool = False,
) -> TrainingData:
    """Datasets (shipped names or paths) with their cached views; ``limit`` keeps the first n of each.

    With ``robocrys``, training variants of crystals in the shipped robocrys cache become their
    robocrys description on a seeded coin flip (:func:`~.robocrys_cache.add_robocrys_variants`);
    crystals without an entry keep exactly the texts they get without it.
    """
    from crystaloop.multimodal.robocrys_cache import add_robocrys_variants, shipped_cache

    cache = shipped_cache() if robocrys else {}
    datasets, views = [], []
    for spec in specs:
        dataset = load_dataset(spec)
        if limit is not None and len(dataset) > limit:
            dataset = dataset.subset(np.arange(limit))
        datasets.append(dataset)
        view = prepare_views(dataset, grid=config.grid, variants=variants, seed=seed, progress=progress)
        views.append(add_robocrys_variants(view, dataset.crystals, cache, seed=seed) if cache else view)
    return TrainingData(datasets, views, config)


def _set_seeds(seed: int) -> np.random.Generator:
    torch.manual_seed(seed)
    return np.random.default_rng(seed)


def _step(
    model: FusionModel, data: TrainingData, index: np.ndarray, rng: np.random.Generator, config: TrainConfig
) -> torch.Tensor:
    patterns = augment_patterns(data.patterns[index], rng, config.augment, config.model.grid)
    variant = rng.integers(data.text_features.shape[1], size=len(index))
    features = torch.from_numpy(data.text_features[index, variant].astype(np.float32))
    embeddings = {
        "structure": model.encode_structures(data.structure_batch(index)),
        "xrd": model.encode_patterns(torch.from_numpy(patterns)),
        "text": model.encode_text_features(features),
    }
    return clip_loss(embeddings, model.temperature_scale())


@restores_torch_rng
@restores_torch_threads
def train(
    config: TrainConfig,
    out: str | Path,
    *,
    data: TrainingData | None = None,
    progress: bool = True,
    resume: bool = True,
) -> tuple[FusionModel, dict[str, Any]]:
    """Train a fusion model, write the checkpoint to ``out`` and return it with its metrics.

    Returns:
        (model, report) with per-epoch mean losses, wall time and validation metrics.
    """
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(config.threads)
    rng = _set_seeds(config.seed)
    if data is None:
        data = load_training_data(
            config.train,
            config.model,
            variants=config.text_variants,
            seed=config.seed,
            limit=config.max_train,
            progress=progress,
            robocrys=config.robocrys_texts,
        )
    model = FusionModel(config.model)
    optimiser = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    steps_per_epoch = max(len(data) // config.batch_size, 1)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, T_max=config.epochs * steps_per_epoch)
    history: list[float] = []
    start_epoch = 0
    resume_path = out.with_name(out.name + ".resume.pt")
    if resume and resume_path.is_file():
        state = torch.load(resume_path, map_location="cpu", weights_only=True)
        if state.get("config_digest") == config.digest():
            model.load_state_dict(state["model"])
            optimiser.load_state_dict(state["optimiser"])
            schedule.load_state_dict(state["schedule"])
            torch.set_rng_state(state["torch_rng"])
            rng.bit_generator.state = json.loads(state["numpy_rng"])
            history, start_epoch = list(state["history"]), int(state["epoch"])
            logger.info("resuming from %s at epoch %d", resume_path, start_epoch)
        else:
            logger.warning("ignoring %s: it was written for another config", resume_path)
    started = time.monotonic()
    for epoch in range(start_epoch, config.epochs):
        model.train()
        order = rng.permutation(len(data))
        losses = []
        with progress_bar(progress) as bar:
            task = bar.add_task(f"epoch {epoch + 1}/{config.epochs}", total=steps_per_epoch)
            for step in range(steps_per_epoch):
                loss = _step(model, data, order[step * config.batch_size : (step + 1) * config.batch_size], rng, config)
                optimiser.zero_grad()
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
                optimiser.step()
                schedule.step()
                losses.append(loss.item())
                bar.update(task, advance=1, description=f"epoch {epoch + 1}/{config.epochs} loss {np.mean(losses):.3f}")
        history.append(float(np.mean(losses)))
        elapsed = (time.monotonic() - started) / 60
        logger.info("epoch %d/%d: loss %.4f (%.1f min)", epoch + 1, config.epochs, history[-1], elapsed)
        if (epoch + 1) % config.checkpoint_every == 0 or epoch + 1 == config.epochs:
            _save_resume(resume_path, model, optimiser, schedule, rng, history, epoch + 1, config)
        if config.max_minutes is not None and elapsed > config.max_minutes and epoch + 1 < config.epochs:
            logger.warning(
                "stopping after epoch %d: %.1f min passed max_minutes=%g", epoch + 1, elapsed, config.max_minutes
            )
            break
    model.eval()
    metrics = {split: evaluate(model, split, config) for split in config.val}
    report = {
        "losses": history,
        "epochs_run": len(history),
        "minutes": (time.monotonic() - started) / 60,
        "val": metrics,
    }
    model.metadata = {"train_config": config.model_dump(mode="json"), "data_hash": data.data_hash, "metrics": report}
    save_checkpoint(model, out)
    if len(history) == config.epochs:
        resume_path.unlink(missing_ok=True)  # finished; a run stopped by max_minutes keeps it to resume
    return model, report


def _save_resume(path: Path, model, optimiser, schedule, rng, history, epoch: int, config: TrainConfig) -> None:  # noqa: ANN001
    state = {
        "config_digest": config.digest(),
        "model": model.state_dict(),
        "optimiser": optimiser.state_dict(),
        "schedule": schedule.state_dict(),
        "torch_rng": torch.get_rng_state(),
        "numpy_rng": json.dumps(rng.bit_generator.state),
        "history": history,
        "epoch": epoch,
    }
    partial = path.with_name(path.name + ".partial")
    torch.save(state, partial)
    partial.replace(path)


@torch.no_grad()
def evaluate(
    model: FusionModel, spec: str | CrystalDataset, config: TrainConfig | None = None, *, seed: int = 1
) -> dict[str, Any]:
    """Retrieval among all structures of a split: text→structure and XRD→structure (clean and augmented).

    Returns recall@1/5/10 and mean rank of each, the random-ranking expectation and the
    composition-only baseline, all over the same n structures. ``text_to_structure_constrained``
    ranks first the structures that satisfy what each description states outright (its parsed
    prompt constraints: elements, formula, symmetry words), by similarity, then the rest. ``config`` supplies the
    augmentation of the augmented-XRD queries (default ``AugmentConfig()``).
    """
    augment = (config or TrainConfig()).augment
    dataset = spec if isinstance(spec, CrystalDataset) else load_dataset(spec)
    views = prepare_views(dataset, grid=model.config.grid, variants=0)  # the full descriptions only
    model.eval()
    structures = model.embed("structure", dataset.crystals)
    xrd = model.embed("xrd", views.patterns)
    noisy = model.embed(
        "xrd", augment_patterns(views.patterns, np.random.default_rng(seed), augment, model.config.grid)
    )
    text = model.encode_text_features(torch.from_numpy(views.text_features[:, 0].astype(np.float32))).numpy()
    formulas = [c.reduced_formula for c in dataset.crystals]
    stated = admissible_targets([parse_prompt(texts[0]) for texts in views.texts], dataset.crystals)
    return {
        "n": len(dataset),
        "text_to_structure": recall_at_k(text, structures),
        "text_to_structure_constrained": recall_at_k(text, structures, admissible=stated),
        "xrd_to_structure": recall_at_k(xrd, structures),
        "augmented_xrd_to_structure": recall_at_k(noisy, structures),
        "random": random_recall(len(dataset)),
        "composition_only": composition_baseline_recall(formulas),
    }
