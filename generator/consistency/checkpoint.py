"""Self-describing checkpoints of distilled consistency models.

Same layout as the teacher's (:mod:`crystaloop.generator.diffusion.checkpoint`), a distinct format, and
what ties the student to its teacher::

    format        "crystaloop.generator.consistency/1"
    config        the teacher's GeneratorConfig (architecture and schedules)
    distill       DistillConfig as a JSON-able dict
    normalisation the teacher's data normalisation
    weights       EMA of the student (what sampling uses)
    teacher_hash  sha256 prefix of the teacher checkpoint file
    data_hash     the teacher's training-data hash
    midpoints     {"2": [t_mid]}: intermediate teacher steps chosen on validation data
    metrics       history, epochs, midpoint search
    training      (resumable files only) raw and target weights, optimiser, epoch, RNG state

Load with ``torch.load(weights_only=True)``; :func:`load_any_model` opens a teacher or a
student by the file's format.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from crystaloop.data.errors import CrystaloopError
from crystaloop.generator.config import GeneratorConfig
from crystaloop.generator.consistency.model import ConsistencyModel
from crystaloop.generator.diffusion.checkpoint import load_model, save_atomically
from crystaloop.generator.diffusion.model import CrystalDiffusion, Normalisation

__all__ = ["CONSISTENCY_FORMAT", "save_consistency", "load_consistency_checkpoint", "consistency_from_payload",
           "load_consistency_model", "load_any_model", "strip_consistency_for_shipping"]

CONSISTENCY_FORMAT = "crystaloop.generator.consistency/1"


def save_consistency(path: Path, student: ConsistencyModel, ema_weights: dict[str, torch.Tensor], *, distill: dict[str, Any],
                     teacher_hash: str, data_hash: str, metrics: dict[str, Any], training: dict[str, Any] | None = None) -> None:
    """Write atomically (temp file + rename); ``student.midpoints`` goes into the file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload: dict[str, Any] = {
        "format": CONSISTENCY_FORMAT,
        "config": student.config.model_dump(mode="json"),
        "distill": distill,
        "normalisation": {k: v.detach().cpu() for k, v in student.normalisation.state_dict().items()},
        "weights": {k: v.detach().cpu() for k, v in ema_weights.items()},
        "teacher_hash": teacher_hash,
        "data_hash": data_hash,
        "midpoints": {str(k): list(v) for k, v in student.midpoints.items()},
        "metrics": metrics,
    }
    if training is not None:
        payload["training"] = training
    save_atomically(payload, path)


def _read(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise CrystaloopError(f"checkpoint {path} does not exist")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises several types for corrupt files
        raise CrystaloopError(f"{path} is not a readable checkpoint: {error}") from error
    if not isinstance(payload, dict):
        raise CrystaloopError(f"{path} holds a {type(payload).__name__}, not a checkpoint dict")
    return payload


def load_consistency_checkpoint(path: Path | str) -> dict[str, Any]:
    """Read a distilled checkpoint; a wrong format raises naming what was found and expected."""
    path = Path(path)
    payload = _read(path)
    if payload.get("format") != CONSISTENCY_FORMAT:
        raise CrystaloopError(f"{path} has format {payload.get('format')!r}; expected {CONSISTENCY_FORMAT!r}")
    return payload


def consistency_from_payload(payload: dict[str, Any], *, weights: str = "weights") -> ConsistencyModel:
    """Rebuild the student (``weights``: ``weights`` = EMA, or a key of the training section)."""
    norm = payload["normalisation"]
    normalisation = Normalisation(norm["species"].tolist(), float(norm["volume_per_atom"]), norm["property_mean"].tolist(),
                                  norm["property_std"].tolist(), norm["atom_count_probs"].tolist())
    midpoints = {int(k): [int(t) for t in v] for k, v in payload.get("midpoints", {}).items()}
    settings = payload["distill"]
    model = ConsistencyModel(GeneratorConfig.model_validate(payload["config"]), normalisation, midpoints,
                             lattice_output=settings.get("lattice_output", "epsilon"), lattice_cap=settings.get("lattice_cap", 0.25))
    state = payload["weights"] if weights == "weights" else payload["training"][weights]
    model.denoiser.load_state_dict(state)
    return model


def load_consistency_model(path: Path | str, device: str = "cpu") -> tuple[ConsistencyModel, dict[str, Any]]:
    """The distilled model (EMA weights, eval mode) and its checkpoint dict."""
    payload = load_consistency_checkpoint(path)
    return consistency_from_payload(payload).to(device).eval(), payload


def load_any_model(path: Path | str, device: str = "cpu") -> CrystalDiffusion:
    """A teacher (``crystaloop.generator/1``) or a distilled student, chosen by the file's format.

    A missing file or any other format raises the teacher loader's error (names file and format).
    """
    path = Path(path)
    if path.is_file():
        payload = _read(path)
        if payload.get("format") == CONSISTENCY_FORMAT:
            return consistency_from_payload(payload).to(device).eval()
    return load_model(path, device)[0]


def strip_consistency_for_shipping(source: Path | str, target: Path | str) -> None:
    """Copy a distilled checkpoint without its ``training`` section (EMA weights only)."""
    payload = load_consistency_checkpoint(source)
    payload.pop("training", None)
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    torch.save(payload, target)
