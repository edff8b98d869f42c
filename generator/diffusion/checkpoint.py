"""Self-describing generator checkpoints (config, normalisation, data hash, metrics, weights).

A checkpoint is a plain dict of tensors and primitives, loadable with
``torch.load(weights_only=True)``::

    format        "crystaloop.generator/1"
    config        GeneratorConfig as JSON-able dict
    normalisation species, volume per atom, property mean/std, atom-count distribution
    weights       EMA weights (what sampling uses)
    data_hash     content hash of the training data
    metrics       training summary and any evaluation figures
    training      (resumable checkpoints only) raw weights, optimiser state, epoch, RNG state
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path
from typing import Any

import torch

from crystaloop.data.errors import CrystaloopError
from crystaloop.generator.config import GeneratorConfig
from crystaloop.generator.diffusion.model import CrystalDiffusion, Normalisation

__all__ = ["FORMAT", "save_checkpoint", "save_atomically", "load_checkpoint", "load_model", "file_hash"]

FORMAT = "crystaloop.generator/1"
logger = logging.getLogger(__name__)


def file_hash(path: Path) -> str:
    """First 16 hex digits of the file's sha256 (goes into provenance)."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]


def save_checkpoint(path: Path, model: CrystalDiffusion, ema_weights: dict[str, torch.Tensor], *, data_hash: str,
                    metrics: dict[str, Any], training: dict[str, Any] | None = None) -> None:
    """Write atomically (temp file + rename) so an interrupted save never corrupts ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "format": FORMAT,
        "config": model.config.model_dump(mode="json"),
        "normalisation": {k: v.detach().cpu() for k, v in model.normalisation.state_dict().items()},
        "weights": {k: v.detach().cpu() for k, v in ema_weights.items()},
        "data_hash": data_hash,
        "metrics": metrics,
    }
    if training is not None:
        payload["training"] = training
    save_atomically(payload, path)


def save_atomically(payload: dict[str, Any], path: Path) -> None:
    """``torch.save`` to a temp file, then rename: an interrupted save never corrupts ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(payload, tmp)
    tmp.replace(path)


def load_checkpoint(path: Path | str) -> dict[str, Any]:
    """Read and check a checkpoint file; errors name the file and what was expected."""
    path = Path(path)
    if not path.is_file():
        raise CrystaloopError(f"generator checkpoint {path} does not exist; train one with `crystaloop generator train` "
                              "or use a shipped one (`crystaloop generator list`)")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises several types for corrupt files
        raise CrystaloopError(f"{path} is not a readable generator checkpoint: {error}") from error
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        found = payload.get("format") if isinstance(payload, dict) else type(payload).__name__
        raise CrystaloopError(f"{path} has format {found!r}; expected {FORMAT!r}")
    return payload


def model_from_payload(payload: dict[str, Any], *, weights: str = "weights") -> CrystalDiffusion:
    """Rebuild the model from a loaded checkpoint dict (``weights``: which state dict to use)."""
    config = GeneratorConfig.model_validate(payload["config"])
    norm = payload["normalisation"]
    normalisation = Normalisation(norm["species"].tolist(), float(norm["volume_per_atom"]), norm["property_mean"].tolist(),
                                  norm["property_std"].tolist(), norm["atom_count_probs"].tolist())
    model = CrystalDiffusion(config, normalisation)
    state = payload["weights"] if weights == "weights" else payload["training"][weights]
    model.denoiser.load_state_dict(state)
    return model


def load_model(path: Path | str, device: str = "cpu") -> tuple[CrystalDiffusion, dict[str, Any]]:
    """Load the EMA model for sampling; returns (model in eval mode, checkpoint dict)."""
    payload = load_checkpoint(path)
    model = model_from_payload(payload).to(device).eval()
    return model, payload
