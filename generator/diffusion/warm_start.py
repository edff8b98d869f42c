"""Warm start: begin training a generator from a trained one (the teacher), with new inputs.

A fine-tune that adds a conditioning input (an embedding from :mod:`crystaloop.multimodal`)
should begin where the teacher stands, not from noise. :func:`warm_start_model` builds the new
model so that, before any training step, its outputs equal the teacher's exactly:

* every teacher parameter whose name and shape match is copied; the property layers keep the
  teacher's columns of the properties the new model still conditions on (a subset of the
  teacher's, in any order);
* the teacher's :class:`~crystaloop.generator.diffusion.model.Normalisation` is kept (species vocabulary,
  volume per atom, atom-count distribution, the statistics of the kept properties), so inputs are
  scaled as the teacher learned them; a dataset with another species vocabulary is refused;
* a new (or resized) embedding MLP's last layer starts at zero (weights and bias), so the embedding adds
  nothing until training moves it; its gradient is non-zero from the first step because the
  first layer's activations are not zero (the "zero module" initialisation of ControlNet, Zhang
  et al. 2023).

Network sizes (hidden, layers, Fourier frequencies, time features), the diffusion schedule and
``max_atoms`` must equal the teacher's, otherwise the copied weights would not mean what they
meant; a mismatch raises naming the fields.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from crystaloop.data.crystal import Crystal, element_symbol
from crystaloop.data.errors import CrystaloopError
from crystaloop.generator.config import GeneratorConfig
from crystaloop.generator.diffusion.checkpoint import file_hash, load_checkpoint
from crystaloop.generator.diffusion.model import CrystalDiffusion, Normalisation

__all__ = ["warm_start_model", "teacher_provenance"]

logger = logging.getLogger(__name__)

_SHARED_NETWORK = ("hidden", "layers", "fourier_frequencies", "time_features")
_PROPERTY_WEIGHTS = ("property_value.weight", "property_flag.weight")


def _check_compatible(config: GeneratorConfig, teacher: GeneratorConfig, source: Path) -> None:
    mismatched = [f"network.{name}" for name in _SHARED_NETWORK
                  if getattr(config.network, name) != getattr(teacher.network, name)]
    for name in ("timesteps", "lattice_schedule", "sigma_min", "sigma_max"):
        if getattr(config.diffusion, name) != getattr(teacher.diffusion, name):
            mismatched.append(f"diffusion.{name}")
    if config.max_atoms != teacher.max_atoms:
        mismatched.append("max_atoms")
    if mismatched:
        values = ", ".join(f"{m} (teacher {_field(teacher, m)!r}, here {_field(config, m)!r})" for m in mismatched)
        raise CrystaloopError(f"cannot warm-start from {source}: {values}; a warm start keeps the teacher's network sizes, "
                              "schedule and max_atoms")
    unknown = [name for name in config.network.properties if name not in teacher.network.properties]
    if unknown:
        raise CrystaloopError(f"cannot warm-start from {source}: properties {unknown} are new; the teacher conditions on "
                              f"{teacher.network.properties or 'none'} (keep a subset of them)")


def _field(config: GeneratorConfig, dotted: str) -> Any:
    value: Any = config
    for part in dotted.split("."):
        value = getattr(value, part)
    return value


def _teacher_normalisation(payload: dict[str, Any], keep: Sequence[int], crystals: Sequence[Crystal],
                           source: Path) -> Normalisation:
    norm = payload["normalisation"]
    species = [int(z) for z in norm["species"].tolist()]
    found = sorted({int(z) for c in crystals for z in c.numbers})
    if found != species:
        extra = [element_symbol(z) for z in found if z not in species]
        absent = [element_symbol(z) for z in species if z not in found]
        raise CrystaloopError(
            f"cannot warm-start from {source}: the training data's species vocabulary differs from the teacher's "
            f"({len(found)} vs {len(species)} elements; only in the data: {extra or 'none'}; only in the teacher: "
            f"{absent or 'none'}); fine-tune on data with the teacher's elements")
    mean, std = norm["property_mean"].tolist(), norm["property_std"].tolist()
    return Normalisation(species, float(norm["volume_per_atom"]), [mean[i] for i in keep], [std[i] for i in keep],
                         norm["atom_count_probs"].tolist())


def warm_start_model(config: GeneratorConfig, source: Path, crystals: Sequence[Crystal]) -> CrystalDiffusion:
    """A new model for ``config`` that starts at the outputs of the teacher checkpoint ``source``.

    Args:
        config: the new model's config (may add ``network.embedding_dim`` and drop properties).
        source: teacher checkpoint (format ``crystaloop.generator/1``; its EMA weights are used).
        crystals: the fine-tuning data (checked against the teacher's species vocabulary).

    Raises:
        CrystaloopError: unreadable checkpoint, different network sizes / schedule / max_atoms,
            properties the teacher lacks, or another species vocabulary.
    """
    source = Path(source)
    payload = load_checkpoint(source)
    teacher = GeneratorConfig.model_validate(payload["config"])
    _check_compatible(config, teacher, source)
    keep = [teacher.network.properties.index(name) for name in config.network.properties]
    model = CrystalDiffusion(config, _teacher_normalisation(payload, keep, crystals, source))
    state = model.denoiser.state_dict()
    weights: dict[str, torch.Tensor] = payload["weights"]
    copied, fresh = {}, []
    for name, value in state.items():
        if name in _PROPERTY_WEIGHTS:
            columns = weights[name][:, keep] if keep else torch.zeros_like(value)
            copied[name] = columns.to(value.dtype)
        elif name in weights and weights[name].shape == value.shape:
            copied[name] = weights[name].to(value.dtype)
        else:
            fresh.append(name)
    state.update(copied)
    model.denoiser.load_state_dict(state)
    mlp = model.denoiser.embedding_mlp
    if mlp is not None and any(name.startswith("embedding_mlp.") for name in fresh):
        with torch.no_grad():  # a new (or resized) embedding input starts by adding nothing
            mlp[-1].weight.zero_()
            mlp[-1].bias.zero_()
    logger.info("warm start from %s: %d tensors copied, new: %s", source, len(copied), fresh or "none")
    return model


def teacher_provenance(source: Path) -> dict[str, str]:
    """What goes into the fine-tuned checkpoint's metrics: the teacher file and its hash."""
    return {"path": str(source), "sha256_16": file_hash(source)}
