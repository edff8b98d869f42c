"""Trained generators shipped in the repository, and how each was made.

Each checkpoint under ``generator/shipped/`` holds EMA weights only (the ``training`` section
stripped by :func:`crystaloop.generator.diffusion.training.strip_for_shipping`); the command reproduces
the full run on the shipped development splits (data/shipped/ATTRIBUTION.md). Constant learning
rate and seeded batches make a run stopped at epoch N identical to ``--epochs N``.
"""

from __future__ import annotations

from pathlib import Path

from crystaloop.data.errors import CrystaloopError, UnknownComponentError

__all__ = ["SHIPPED_GENERATORS", "shipped_generator_path", "resolve_generator_checkpoint"]

_ROOT = Path(__file__).resolve().parent / "shipped"

# name → reproduce command (then strip_for_shipping into generator/shipped/<name>.pt)
SHIPPED_GENERATORS: dict[str, str] = {
    "perov_5": "crystaloop generator train --dataset perov_5 --out runs/generator/perov_5.pt --epochs {epochs} --threads 1 --seed 0",
    "carbon_24": "crystaloop generator train --dataset carbon_24 --out runs/generator/carbon_24.pt --epochs {epochs} --threads 1 --seed 0",
    # distilled from the shipped perov_5 teacher; shipped with strip_consistency_for_shipping
    "perov_5_consistency": "crystaloop generator distill --teacher perov_5 --out runs/generator/perov_5_consistency.pt --epochs {epochs} --threads 1 --seed 0",
    "carbon_24_consistency": "crystaloop generator distill --teacher carbon_24 --out runs/generator/carbon_24_consistency.pt --epochs {epochs} --threads 1 --seed 0",
    # fine-tuned from the shipped perov_5 teacher with the multimodal latent (width 64) as its only
    # condition: one random view (structure / augmented XRD / text) per training structure
    "perov_5_multimodal": ("crystaloop multimodal embed-training --dataset perov_5 --out runs/embeddings/perov_5.npy --seed 0 && "
                           "crystaloop generator train --dataset perov_5 --init perov_5 --embeddings runs/embeddings/perov_5.npy "
                           "--properties none --out runs/generator/perov_5_multimodal.pt --epochs {epochs} --threads 1 --seed 0"),
    # the same for carbon_24, fine-tuned from the shipped carbon_24 teacher (200 epochs, 19 min on one core)
    "carbon_24_multimodal": ("crystaloop multimodal embed-training --dataset carbon_24 --out runs/embeddings/carbon_24.npy --seed 0 && "
                             "crystaloop generator train --dataset carbon_24 --init carbon_24 --embeddings runs/embeddings/carbon_24.npy "
                             "--properties none --out runs/generator/carbon_24_multimodal.pt --epochs {epochs} --threads 1 --seed 0"),
}


def shipped_generator_path(name: str) -> Path:
    """Checkpoint path of a shipped generator; raises if the name is unknown or the file missing."""
    if name not in SHIPPED_GENERATORS:
        raise UnknownComponentError("shipped generator", name, SHIPPED_GENERATORS)
    path = _ROOT / f"{name}.pt"
    if not path.exists():
        raise CrystaloopError(f"shipped generator {name!r} is missing at {path}; reproduce it with: {SHIPPED_GENERATORS[name]}")
    return path


def resolve_generator_checkpoint(spec: str | Path) -> Path:
    """A shipped name (``perov_5``) or a path to a checkpoint file."""
    if str(spec) in SHIPPED_GENERATORS:
        return shipped_generator_path(str(spec))
    path = Path(spec)
    if not path.is_file():
        names = ", ".join(SHIPPED_GENERATORS)
        raise CrystaloopError(f"generator checkpoint {spec!r} is neither a file nor a shipped name; shipped: {names}")
    return path
