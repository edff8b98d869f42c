"""The fusion checkpoint shipped with the package (``multimodal/shipped/``) and how it was made.

``fusion.pt`` was trained on perov_5/train + carbon_24/train by the command in
``shipped/README.md``; its validation metrics are inside it (``metadata["metrics"]``) and in
benchmarks/RESULTS.md. ``prior.pt`` is the latent prior over its structure latents
(``shipped_checkpoint("prior")``; see :mod:`.prior` and the same README).
"""

from __future__ import annotations

from pathlib import Path

from crystaloop.data.errors import CrystaloopError

__all__ = ["SHIPPED_DIR", "shipped_checkpoint"]

SHIPPED_DIR = Path(__file__).resolve().parent / "shipped"


def shipped_checkpoint(name: str = "fusion") -> Path:
    """Path of a shipped checkpoint (``fusion``, ``prior``); raises naming the ones present if it is missing."""
    path = SHIPPED_DIR / f"{name}.pt"
    if not path.is_file():
        present = sorted(p.stem for p in SHIPPED_DIR.glob("*.pt")) or ["none"]
        raise CrystaloopError(
            f"no shipped multimodal checkpoint {name!r} in {SHIPPED_DIR}; shipped: {', '.join(present)}"
        )
    return path
