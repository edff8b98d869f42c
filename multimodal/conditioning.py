"""Generation conditions from any modality: the multimodal side of embedding-conditioned generation.

The generator never imports this package (DESIGN.md layering); it receives the latent inside a
:class:`~crystaloop.data.records.Condition` (``embedding``, a tuple of d floats). The edge (CLI,
loop) builds that condition here from a text, a powder pattern or a crystal, optionally with the
composition for structure prediction. A generator trained with *structure* embeddings of its
training crystals can be sampled with XRD or text embeddings, because all three share one
normalised latent.
"""

from __future__ import annotations

import numpy as np

from crystaloop.data.crystal import Crystal
from crystaloop.data.errors import CrystaloopError
from crystaloop.data.records import Condition
from crystaloop.multimodal.fusion import FusionModel

__all__ = ["embedding_condition", "structure_conditions"]


def embedding_condition(
    model: FusionModel,
    *,
    text: str | None = None,
    pattern: np.ndarray | None = None,
    crystal: Crystal | None = None,
    composition: dict[str, int] | None = None,
    guidance_scale: float = 1.0,
) -> Condition:
    """A :class:`Condition` whose ``embedding`` is the latent of exactly one of text, (P,) pattern or crystal.

    Raises:
        CrystaloopError: none or several of ``text``, ``pattern``, ``crystal`` given, or an input
            the model refuses (empty text, pattern off the grid).
    """
    given = {
        name: value for name, value in (("text", text), ("pattern", pattern), ("crystal", crystal)) if value is not None
    }
    if len(given) != 1:
        raise CrystaloopError(f"condition on exactly one of text, pattern, crystal; got {sorted(given) or 'none'}")
    if text is not None:
        vector = model.embed("text", [text])[0]
    elif pattern is not None:
        vector = model.embed("xrd", np.asarray(pattern)[None] if np.ndim(pattern) == 1 else pattern)[0]
    else:
        vector = model.embed("structure", [crystal])[0]
    return Condition(composition=composition, embedding=tuple(float(v) for v in vector), guidance_scale=guidance_scale)


def structure_conditions(model: FusionModel, crystals: list[Crystal], *, batch_size: int = 256) -> list[Condition]:
    """One condition per training crystal (its structure embedding and composition), for training a generator."""
    vectors = model.embed("structure", crystals, batch_size=batch_size)
    return [
        Condition(composition=c.composition, embedding=tuple(float(v) for v in row))
        for c, row in zip(crystals, vectors, strict=True)
    ]
