"""Training the latent prior (:mod:`.prior`) on a split's (structure, description / pattern) pairs.

Pairs (:func:`prior_pairs`): for every training crystal, its structure latent is the target, and
the conditions are the text latents of its descriptions (the full one and the cached training
variants of :func:`~.features.prepare_views`, the texts the fusion model learnt from) and the
XRD latents of ``xrd_augments`` measurement-like copies of its simulated pattern
(:func:`~.xrd.augment_patterns`). :func:`fit_prior` minimises the flow-matching loss with AdamW
and a cosine schedule (seeded); :func:`evaluate_prior` measures on a held-out split how well one
prior sample per query retrieves the query's own structure, beside the query latent itself (the
direct route), and how spread the samples for one query are.

Reproduce the shipped checkpoint (≈ 15 min on one loaded core, see ``multimodal/shipped/README.md``)::

    python -m crystaloop.multimodal.prior_training --out multimodal/shipped/prior.pt --seed 0
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field

from crystaloop.data.datasets import CrystalDataset, load_dataset
from crystaloop.data.errors import CrystaloopError
from crystaloop.data.seeding import restores_torch_rng, restores_torch_threads
from crystaloop.multimodal.features import prepare_views
from crystaloop.multimodal.fusion import FusionModel, load_checkpoint
from crystaloop.multimodal.prior import CONDITIONS, LatentPrior, PriorConfig, save_prior
from crystaloop.multimodal.retrieval import recall_at_k
from crystaloop.multimodal.xrd import AugmentConfig, augment_patterns

__all__ = ["PriorPairs", "PriorTrainConfig", "prior_pairs", "fit_prior", "evaluate_prior", "train_prior"]

logger = logging.getLogger(__name__)


@dataclass
class PriorPairs:
    """``targets`` (N, d) structure latents; per pair j: ``conditions[j]`` (d,) of modality token
    ``modality[j]`` (index into :data:`~.prior.CONDITIONS`) whose structure is ``targets[target_index[j]]``."""

    targets: np.ndarray
    conditions: np.ndarray
    target_index: np.ndarray
    modality: np.ndarray
    data_hash: str

    def __len__(self) -> int:
        return len(self.conditions)

    def counts(self) -> dict[str, int]:
        """Pairs per condition modality."""
        return {name: int((self.modality == i).sum()) for i, name in enumerate(CONDITIONS)}


class PriorTrainConfig(BaseModel):
    """Data and optimisation of one prior training run."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    prior: PriorConfig = PriorConfig()
    train: str = "perov_5/train"
    val: str = "perov_5/val"
    text_variants: int = Field(1, ge=0, description="cached training variants per description (besides the full one)")
    xrd_augments: int = Field(4, ge=0, description="augmented patterns per training crystal")
    augment: AugmentConfig = AugmentConfig()
    epochs: int = Field(60, ge=1)
    batch_size: int = Field(256, ge=2)
    lr: float = Field(1e-3, gt=0.0)
    weight_decay: float = Field(1e-4, ge=0.0)
    seed: int = 0
    threads: int = Field(1, ge=1)
    max_minutes: float | None = Field(15.0, gt=0.0, description="stop after the epoch that passes this wall time")


def prior_pairs(fusion: FusionModel, dataset: CrystalDataset, *, text_variants: int = 1, xrd_augments: int = 4,
                augment: AugmentConfig | None = None, seed: int = 0) -> PriorPairs:
    """The (structure latent, text / XRD latent) pairs of ``dataset`` under ``fusion`` (see the module docstring).

    The views are :func:`~.features.prepare_views` of ``(text_variants, seed)`` (cached on disk;
    MiniLM is the slow part on a first run); the augmentation is seeded by ``seed``.
    """
    if text_variants == 0 and xrd_augments == 0:
        raise CrystaloopError("a prior needs conditions: give text_variants ≥ 0 with texts, or xrd_augments ≥ 1")
    views = prepare_views(dataset, grid=fusion.config.grid, variants=text_variants, seed=seed)
    targets = fusion.embed("structure", dataset.crystals)
    n = len(dataset)
    conditions, index, modality = [], [], []
    with torch.no_grad():
        for v in range(views.text_features.shape[1]):
            features = torch.from_numpy(views.text_features[:, v].astype(np.float32))
            conditions.append(fusion.encode_text_features(features).numpy())
            index.append(np.arange(n))
            modality.append(np.full(n, CONDITIONS.index("text")))
    rng = np.random.default_rng(seed)
    for _ in range(xrd_augments):
        noisy = augment_patterns(views.patterns, rng, augment, fusion.config.grid)
        conditions.append(fusion.embed("xrd", list(noisy)))
        index.append(np.arange(n))
        modality.append(np.full(n, CONDITIONS.index("xrd")))
    digest = hashlib.sha256(f"{dataset.content_hash}|{text_variants}|{xrd_augments}|{seed}".encode()).hexdigest()[:16]
    return PriorPairs(targets.astype(np.float32), np.concatenate(conditions).astype(np.float32),
                      np.concatenate(index), np.concatenate(modality), digest)


@restores_torch_rng
def fit_prior(prior: LatentPrior, pairs: PriorPairs, *, epochs: int, batch_size: int = 256, lr: float = 1e-3,
              weight_decay: float = 1e-4, seed: int = 0, max_minutes: float | None = None) -> list[float]:
    """Train ``prior`` in place on ``pairs``; returns the mean loss per epoch run (seeded, stops early past ``max_minutes``)."""
    torch.manual_seed(seed)
    noise = torch.Generator().manual_seed(seed)
    order_rng = np.random.default_rng(seed)
    targets = torch.from_numpy(pairs.targets)
    conditions = torch.from_numpy(pairs.conditions)
    index = torch.from_numpy(pairs.target_index.astype(np.int64))
    modality = torch.from_numpy(pairs.modality.astype(np.int64))
    steps_per_epoch = max(len(pairs) // batch_size, 1)
    optimiser = torch.optim.AdamW(prior.parameters(), lr=lr, weight_decay=weight_decay)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimiser, max_lr=lr, total_steps=epochs * steps_per_epoch, pct_start=0.05)
    history: list[float] = []
    started = time.monotonic()
    prior.train()
    for epoch in range(epochs):
        order = torch.from_numpy(order_rng.permutation(len(pairs)))
        losses = []
        for step in range(steps_per_epoch):
            rows = order[step * batch_size : (step + 1) * batch_size]
            loss = prior.loss(targets[index[rows]], conditions[rows], modality[rows], noise)
            optimiser.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(prior.parameters(), 1.0)
            optimiser.step()
            schedule.step()
            losses.append(loss.item())
        history.append(float(np.mean(losses)))
        minutes = (time.monotonic() - started) / 60
        if epoch % 10 == 0 or epoch + 1 == epochs:
            logger.info("prior epoch %d/%d: loss %.4f (%.1f min)", epoch + 1, epochs, history[-1], minutes)
        if max_minutes is not None and minutes > max_minutes and epoch + 1 < epochs:
            logger.warning("stopping the prior after epoch %d: %.1f min passed max_minutes=%g", epoch + 1, minutes, max_minutes)
            break
    prior.eval()
    return history


def evaluate_prior(prior: LatentPrior, fusion: FusionModel, dataset: CrystalDataset, *, seed: int = 1,
                   augment: AugmentConfig | None = None, spread_queries: int = 64) -> dict[str, Any]:
    """Held-out retrieval among all structures of ``dataset``: the query latent itself (direct) vs
    one prior sample per query (prior), for full descriptions and augmented patterns; and the
    spread of 8 prior samples of one query (mean pairwise cosine, over the first ``spread_queries``)."""
    views = prepare_views(dataset, grid=fusion.config.grid, variants=0)
    structures = fusion.embed("structure", dataset.crystals)
    with torch.no_grad():
        text = fusion.encode_text_features(torch.from_numpy(views.text_features[:, 0].astype(np.float32))).numpy()
    xrd = fusion.embed("xrd", list(augment_patterns(views.patterns, np.random.default_rng(seed), augment, fusion.config.grid)))
    out: dict[str, Any] = {"n": len(dataset)}
    for name, queries in (("text", text), ("xrd", xrd)):
        drawn = prior.sample_each(queries, name, seed=seed)
        spreads = []
        for i in range(min(spread_queries, len(queries))):
            eight = prior.sample(queries[i], name, 8, seed=seed + 1 + i)
            gram = eight @ eight.T
            spreads.append(float(gram[np.triu_indices(8, 1)].mean()))
        out[name] = {
            "direct": recall_at_k(queries, structures),
            "prior": recall_at_k(drawn, structures),
            "direct_cosine_to_own_structure": float(np.mean(np.sum(queries * structures, axis=1))),
            "prior_cosine_to_own_structure": float(np.mean(np.sum(drawn * structures, axis=1))),
            "prior_mean_pairwise_cosine_of_8": float(np.mean(spreads)),
        }
    return out


@restores_torch_threads
def train_prior(config: PriorTrainConfig, out: str | Path, *, fusion_path: str | Path | None = None) -> tuple[LatentPrior, dict[str, Any]]:
    """Build the pairs, fit, evaluate on ``config.val`` and write the checkpoint to ``out``."""
    from crystaloop.multimodal.pretrained import shipped_checkpoint

    torch.set_num_threads(config.threads)
    fusion_file = Path(fusion_path) if fusion_path is not None else shipped_checkpoint()
    fusion, fusion_info = load_checkpoint(fusion_file)
    if fusion.latent_dim != config.prior.latent_dim:
        raise CrystaloopError(f"the prior's latent_dim {config.prior.latent_dim} differs from the fusion model's {fusion.latent_dim}")
    started = time.monotonic()
    pairs = prior_pairs(fusion, load_dataset(config.train), text_variants=config.text_variants,
                        xrd_augments=config.xrd_augments, augment=config.augment, seed=config.seed)
    pair_minutes = (time.monotonic() - started) / 60
    logger.info("prior pairs: %s over %d structures (%.1f min)", pairs.counts(), len(pairs.targets), pair_minutes)
    torch.manual_seed(config.seed)
    prior = LatentPrior(config.prior)
    fit_started = time.monotonic()
    history = fit_prior(prior, pairs, epochs=config.epochs, batch_size=config.batch_size, lr=config.lr,
                        weight_decay=config.weight_decay, seed=config.seed, max_minutes=config.max_minutes)
    fit_minutes = (time.monotonic() - fit_started) / 60
    metrics = evaluate_prior(prior, fusion, load_dataset(config.val), augment=config.augment)
    prior.metadata = {
        "train_config": config.model_dump(mode="json"),
        "fusion_checkpoint_sha256": fusion_info["checkpoint_hash"],
        "data_hash": pairs.data_hash,
        "pairs": pairs.counts(),
        "losses": history,
        "epochs_run": len(history),
        "minutes": {"pairs": pair_minutes, "fit": fit_minutes},
        "parameters": sum(p.numel() for p in prior.parameters()),
        "val": {config.val: metrics},
    }
    save_prior(prior, out)
    return prior, prior.metadata


def main(argv: list[str] | None = None) -> None:
    """``python -m crystaloop.multimodal.prior_training --out FILE [--seed N] [--epochs N] [--fusion FILE]``."""
    parser = argparse.ArgumentParser(description="Train the latent prior of text / XRD latents over structure latents.")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epochs", type=int, default=PriorTrainConfig().epochs)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--fusion", type=Path, default=None, help="fusion checkpoint (default: the shipped one)")
    parser.add_argument("--max-minutes", type=float, default=PriorTrainConfig().max_minutes,
                        help="stop after the epoch that passes this wall time (0: no limit)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    config = PriorTrainConfig(seed=args.seed, epochs=args.epochs, threads=args.threads,
                              max_minutes=args.max_minutes or None)
    _, report = train_prior(config, args.out, fusion_path=args.fusion)
    logger.info("wrote %s: %s", args.out, {k: report[k] for k in ("epochs_run", "minutes", "parameters", "val")})


if __name__ == "__main__":
    main()
