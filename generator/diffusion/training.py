"""Training loop: EMA weights, gradient clipping, periodic resumable checkpoints, progress.

``train_generator(config, crystals, properties, out)`` trains from scratch or resumes from
``out`` when it holds a resumable checkpoint of the same config and data (``resume=True``).
``init_from=TEACHER.pt`` starts a fresh run from a trained generator instead of random weights
(:mod:`crystaloop.generator.diffusion.warm_start`); a resumed run ignores it (its weights are in ``out``).
A resumable checkpoint is written every ``checkpoint_every`` epochs and at the end; the final
file keeps the ``training`` section so training can be extended, and
:func:`strip_for_shipping` drops it to produce the small file that ships.
"""

from __future__ import annotations

import copy
import hashlib
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from crystaloop.data.crystal import Crystal
from crystaloop.data.errors import CrystaloopError
from crystaloop.data.seeding import restores_torch_rng, restores_torch_threads
from crystaloop.generator.config import GeneratorConfig
from crystaloop.generator.diffusion.checkpoint import load_checkpoint, model_from_payload, save_checkpoint
from crystaloop.generator.diffusion.denoiser import NoisyBatch
from crystaloop.generator.diffusion.model import CrystalDiffusion, Normalisation
from crystaloop.generator.diffusion.warm_start import teacher_provenance, warm_start_model

__all__ = ["EncodedData", "train_generator", "data_hash", "strip_for_shipping"]

logger = logging.getLogger(__name__)


def data_hash(crystals: Sequence[Crystal]) -> str:
    """Order-independent content hash of a training set (16 hex digits)."""
    digest = hashlib.sha256()
    for h in sorted(c.canonical_hash() for c in crystals):
        digest.update(h.encode())
    return digest.hexdigest()[:16]


class EncodedData:
    """A dataset encoded once (canonical lattices, tokens, normalised conditions) for fast batching."""

    def __init__(self, model: CrystalDiffusion, crystals: Sequence[Crystal], properties: np.ndarray | None,
                 embeddings: np.ndarray | None = None) -> None:
        self.full = model.clean_batch(crystals, properties, embeddings)
        self.offsets = torch.cumsum(self.full.num_atoms, 0) - self.full.num_atoms
        self.size = len(crystals)

    def batch(self, indices: torch.Tensor) -> NoisyBatch:
        f = self.full
        counts = f.num_atoms[indices]
        starts = self.offsets[indices]
        site = torch.repeat_interleave(starts, counts) + (
            torch.arange(int(counts.sum())) - torch.repeat_interleave(torch.cumsum(counts, 0) - counts, counts)
        )
        return NoisyBatch(
            lattice=f.lattice[indices], frac=f.frac[site], tokens=f.tokens[site],
            batch=torch.repeat_interleave(torch.arange(len(indices)), counts), num_atoms=counts, t=f.t[indices],
            properties=f.properties[indices], property_present=f.property_present[indices],
            embedding=f.embedding[indices], embedding_present=f.embedding_present[indices],
        )


def _resumable_fields(config: dict[str, Any]) -> dict[str, Any]:
    """Config fields that must match to resume (the epoch count may grow; device/threads may change)."""
    train = {k: v for k, v in config["train"].items() if k not in ("epochs", "device", "threads")}
    return {**config, "train": train}


def _resumable_payload(out: Path, config: GeneratorConfig, hash_of_data: str) -> dict[str, Any] | None:
    """The resumable checkpoint at ``out`` for this config and data, ``None`` when there is none to resume."""
    if not out.is_file():
        return None
    payload = load_checkpoint(out)
    if payload.get("training") is None:
        return None
    if _resumable_fields(payload["config"]) != _resumable_fields(config.model_dump(mode="json")) or payload["data_hash"] != hash_of_data:
        raise CrystaloopError(f"{out} holds training for another config or dataset (only epochs, device and threads may change "
                              "on resume); pass a new --out or --no-resume")
    return payload


def _to(batch: NoisyBatch, device: torch.device) -> NoisyBatch:
    return NoisyBatch(**{k: getattr(batch, k).to(device) for k in batch.__dataclass_fields__})


def _property_matrix(config: GeneratorConfig, properties: Mapping[str, np.ndarray], n: int) -> np.ndarray | None:
    names = config.network.properties
    if not names:
        return None
    missing = [name for name in names if name not in properties]
    if missing:
        raise CrystaloopError(f"conditioning properties {missing} are not in the dataset; available: {sorted(properties)}")
    return np.stack([np.asarray(properties[name], dtype=np.float64) for name in names], axis=1).reshape(n, len(names))


@restores_torch_rng
@restores_torch_threads
def train_generator(
    config: GeneratorConfig,
    crystals: Sequence[Crystal],
    properties: Mapping[str, np.ndarray],
    out: Path,
    *,
    validation: Sequence[Crystal] | None = None,
    validation_properties: Mapping[str, np.ndarray] | None = None,
    embeddings: np.ndarray | None = None,
    init_from: Path | None = None,
    resume: bool = True,
    on_epoch: Callable[[int, dict[str, float]], None] | None = None,
) -> dict[str, Any]:
    """Train (or resume) a generator; returns the metrics stored in the checkpoint.

    Args:
        config: the full generator config (network, diffusion, train).
        crystals: training structures; ``properties``: name → (n,) values (NaN = unknown).
        out: checkpoint path, rewritten every ``checkpoint_every`` epochs.
        validation: optional structures for a held-out loss each checkpoint.
        embeddings: (n, embedding_dim) conditioning vectors aligned with ``crystals`` (e.g. from
            :mod:`crystaloop.multimodal`), NaN rows = no embedding; needs ``network.embedding_dim``.
        init_from: teacher checkpoint to warm-start a fresh run from (its normalisation is kept;
            the model starts at the teacher's outputs); ignored when resuming.
        resume: continue from ``out`` when it exists with the same config hash and data hash.
        on_epoch: callback(epoch, losses) after each epoch (progress bars, logging).
    """
    too_big = [c.n_sites for c in crystals if c.n_sites > config.max_atoms]
    if too_big:
        raise CrystaloopError(f"{len(too_big)} training crystals exceed max_atoms={config.max_atoms} (largest {max(too_big)} sites)")
    torch.set_num_threads(config.train.threads)
    device = torch.device(config.train.device)
    hash_of_data = data_hash(crystals)
    prop_matrix = _property_matrix(config, properties, len(crystals))
    out = Path(out)
    payload = _resumable_payload(out, config, hash_of_data) if resume else None
    torch.manual_seed(config.train.seed)
    generator = torch.Generator().manual_seed(config.train.seed)
    if payload is None:  # a fresh run: random weights, or the teacher's (warm start)
        model = (warm_start_model(config, Path(init_from), crystals) if init_from is not None else
                 CrystalDiffusion(config, Normalisation.from_data(crystals, properties, config.network.properties, config.max_atoms)))
        optimizer = torch.optim.AdamW(model.denoiser.parameters(), lr=config.train.learning_rate, weight_decay=config.train.weight_decay)
        ema = copy.deepcopy(model.denoiser.state_dict())
        start_epoch, history = 0, []
        teacher = teacher_provenance(Path(init_from)) if init_from is not None else None
    else:
        saved = payload["training"]
        model = model_from_payload(payload, weights="raw")
        optimizer = torch.optim.AdamW(model.denoiser.parameters(), lr=config.train.learning_rate, weight_decay=config.train.weight_decay)
        optimizer.load_state_dict(saved["optimizer"])
        ema = payload["weights"]
        start_epoch, history = int(saved["epoch"]), list(payload["metrics"].get("history", []))
        teacher = payload["metrics"].get("init_from")
        generator.set_state(saved["rng"])
        logger.info("resuming %s at epoch %d%s", out, start_epoch, " (--init applies to fresh runs only)" if init_from else "")
    model.to(device)
    ema = {k: v.to(device) for k, v in ema.items()}
    dim = config.network.embedding_dim
    if embeddings is not None and np.shape(embeddings) != (len(crystals), dim):
        raise CrystaloopError(f"embeddings have shape {np.shape(embeddings)}; expected ({len(crystals)}, {dim}) "
                              "(one row per training crystal, network.embedding_dim columns)")
    data = EncodedData(model, crystals, prop_matrix, embeddings)
    held_out = None
    if validation:
        vocabulary = set(model.normalisation.species.tolist())
        keep = [i for i, c in enumerate(validation) if set(c.numbers.tolist()) <= vocabulary]
        if len(keep) < len(validation):
            logger.warning("validation loss skips %d of %d structures with elements the training data lack",
                           len(validation) - len(keep), len(validation))
        props = _property_matrix(config, validation_properties or {}, len(validation))
        if keep:
            held_out = EncodedData(model, [validation[i] for i in keep], None if props is None else props[keep])
    decay, bs = config.train.ema_decay, config.train.batch_size
    started = time.perf_counter()
    for epoch in range(start_epoch, config.train.epochs):
        model.train()
        order = torch.randperm(data.size, generator=generator)
        sums: dict[str, float] = {}
        steps = 0
        for first in range(0, data.size, bs):
            batch = _to(data.batch(order[first:first + bs]), device)
            losses = model.loss(batch, generator)
            optimizer.zero_grad(set_to_none=True)
            losses["loss"].backward()
            torch.nn.utils.clip_grad_norm_(model.denoiser.parameters(), config.train.grad_clip)
            optimizer.step()
            with torch.no_grad():
                for name, value in model.denoiser.state_dict().items():
                    ema[name].mul_(decay).add_(value.detach(), alpha=1 - decay)
            for name, value in losses.items():
                sums[name] = sums.get(name, 0.0) + float(value.detach())
            steps += 1
        epoch_losses = {name: value / steps for name, value in sums.items()}
        epoch_losses["epoch"] = epoch + 1
        if on_epoch is not None:
            on_epoch(epoch + 1, epoch_losses)
        last = epoch + 1 == config.train.epochs
        if (epoch + 1) % config.train.checkpoint_every == 0 or last:
            if held_out is not None:
                epoch_losses["val_loss"] = _validation_loss(model, ema, held_out, device, config.train.seed)
            history.append(epoch_losses)
            metrics = {"history": history, "epochs": epoch + 1, "train_seconds_this_run": time.perf_counter() - started,
                       "train_size": data.size, **({"init_from": teacher} if teacher else {})}
            training = {"raw": {k: v.detach().cpu() for k, v in model.denoiser.state_dict().items()},
                        "optimizer": optimizer.state_dict(), "epoch": epoch + 1, "rng": generator.get_state()}
            save_checkpoint(out, model, ema, data_hash=hash_of_data, metrics=metrics, training=training)
            logger.info("epoch %d: %s (checkpoint %s)", epoch + 1, epoch_losses, out)
    return load_checkpoint(out)["metrics"]


@torch.no_grad()
def _validation_loss(model: CrystalDiffusion, ema: dict[str, torch.Tensor], data: EncodedData, device: torch.device, seed: int) -> float:
    """Mean loss of the EMA weights on held-out data with a fixed noise seed (comparable across epochs)."""
    raw = copy.deepcopy(model.denoiser.state_dict())
    model.denoiser.load_state_dict(ema)
    model.eval()
    generator = torch.Generator().manual_seed(seed + 1)
    total, count = 0.0, 0
    for first in range(0, data.size, 512):
        indices = torch.arange(first, min(first + 512, data.size))
        total += float(model.loss(_to(data.batch(indices), device), generator)["loss"]) * len(indices)
        count += len(indices)
    model.denoiser.load_state_dict(raw)
    return total / count


def strip_for_shipping(source: Path, target: Path) -> None:
    """Copy a checkpoint without its ``training`` section (EMA weights only, ~3× smaller)."""
    payload = load_checkpoint(source)
    payload.pop("training", None)
    # constant learning rate and seeded batches: weights at epoch N are those of `--epochs N`
    payload["config"]["train"]["epochs"] = int(payload["metrics"].get("epochs", payload["config"]["train"]["epochs"]))
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    torch.save(payload, target)
