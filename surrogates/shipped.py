"""Trained surrogates shipped in the repository, and how each was made.

Each entry names a checkpoint under ``surrogates/shipped/`` and the exact command that
reproduces it (the data are the shipped development splits; see data/shipped/ATTRIBUTION.md).
"""

from __future__ import annotations

from pathlib import Path

from crystaloop.data.errors import CrystaloopError, UnknownComponentError

__all__ = ["SHIPPED_SURROGATES", "shipped_surrogate_path", "default_surrogate_for"]

_ROOT = Path(__file__).resolve().parent / "shipped"

# name → (dataset, target, reproduce command)
SHIPPED_SURROGATES: dict[str, tuple[str, str, str]] = {
    "perov_5-heat_ref": (
        "perov_5",
        "heat_ref",
        "crystaloop surrogate train --data perov_5/train --test perov_5/val --target heat_ref --angular-degree 0 --out surrogates/shipped/perov_5-heat_ref.pt",
    ),
    "perov_5-dir_gap": (
        "perov_5",
        "dir_gap",
        "crystaloop surrogate train --data perov_5/train --test perov_5/val --target dir_gap --angular-degree 0 --out surrogates/shipped/perov_5-dir_gap.pt",
    ),
    "carbon_24-energy_per_atom": (
        "carbon_24",
        "energy_per_atom",
        "crystaloop surrogate train --data carbon_24/train --test carbon_24/val --target energy_per_atom --out surrogates/shipped/carbon_24-energy_per_atom.pt",
    ),
}


def shipped_surrogate_path(name: str) -> Path:
    """Checkpoint path of a shipped surrogate; raises if the name is unknown or the file missing."""
    if name not in SHIPPED_SURROGATES:
        raise UnknownComponentError("shipped surrogate", name, SHIPPED_SURROGATES)
    path = _ROOT / f"{name}.pt"
    if not path.exists():
        raise CrystaloopError(f"shipped surrogate {name!r} is missing at {path}; reproduce it with: {SHIPPED_SURROGATES[name][2]}")
    return path


def default_surrogate_for(target: str) -> str:
    """The shipped surrogate predicting ``target`` (the first one if several do)."""
    for name, (_, shipped_target, _) in SHIPPED_SURROGATES.items():
        if shipped_target == target:
            return name
    targets = sorted({t for _, t, _ in SHIPPED_SURROGATES.values()})
    raise UnknownComponentError("shipped surrogate target", target, targets)
