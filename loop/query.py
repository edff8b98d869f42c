"""Generation conditioned on a text or a powder pattern, by the direct route or through the latent prior.

Two routes from a query (a description in words, or a measured pattern) to crystals, both
decoding with a latent-conditioned generator (``perov_5_multimodal``):

* ``direct``: the fusion model's latent of the query conditions every sample;
* ``prior``: the latent prior (:mod:`crystaloop.multimodal.prior`, unCLIP-style) draws one
  structure latent per sample given the query latent, and each sample is decoded from its own
  latent (a distribution over what the query may mean, rather than one point).

:class:`QueryRoute` holds the route's resolved parts; :class:`QueryGenerator` implements the
``Generator`` port around any generator that reads per-sample latents, so the CLI
(``crystaloop generate --text/--xrd --route``) and campaigns (the ``query`` section of
:class:`QueryConfig`) share one definition. A text query's explicit constraints
(:mod:`crystaloop.multimodal.prompt`) are enforced on both routes unless switched off.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from crystaloop.data.errors import CrystaloopError
from crystaloop.data.records import Candidate, Condition

__all__ = ["ROUTES", "QueryConfig", "QueryRoute", "QueryGenerator", "resolve_query", "query_generator"]

logger = logging.getLogger(__name__)

ROUTES = ("prior", "direct")


class QueryConfig(BaseModel):
    """A campaign's text or XRD query (``query: {text: "cubic SrTiO3", route: prior}``).

    Attributes:
        text / xrd: a description, or a two-column pattern file (2θ in degrees, intensity); exactly one.
        route: ``prior`` (sample structure latents from the latent prior) or ``direct`` (the query latent).
        fusion, prior: checkpoints (default: the shipped ``multimodal/shipped/fusion.pt`` / ``prior.pt``).
        prior_steps, prior_guidance: the prior's integration steps and classifier-free guidance scale.
        prompt_constraints: enforce what a text query names explicitly (elements, formula, symmetry).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    text: str | None = Field(None, min_length=1)
    xrd: str | None = Field(None, min_length=1, description="path of a two-column .xy/.csv pattern")
    wavelength: float | None = Field(None, gt=0.0, description="radiation of the xrd pattern, Å (default Cu Kα)")
    route: Literal["prior", "direct"] = "direct"
    fusion: str | None = None
    prior: str | None = None
    prior_steps: int = Field(32, ge=1)
    prior_guidance: float = Field(1.0, ge=0.0)
    prompt_constraints: bool = True

    @model_validator(mode="after")
    def _one_query(self) -> QueryConfig:
        if (self.text is None) == (self.xrd is None):
            raise ValueError("query needs exactly one of text and xrd")
        if self.wavelength is not None and self.xrd is None:
            raise ValueError("query.wavelength describes the radiation of an xrd pattern; give xrd too")
        if self.route == "direct" and (self.prior is not None or self.prior_guidance != 1.0 or self.prior_steps != 32):
            raise ValueError("query.prior, prior_steps and prior_guidance apply to route 'prior' only; route is 'direct'")
        return self


@dataclass
class QueryRoute:
    """A resolved query: its ``latent`` (d,), ``modality`` (text or xrd), the route and, for ``prior``, the prior."""

    latent: np.ndarray
    modality: str
    route: str
    prior: Any = None  # crystaloop.multimodal.prior.LatentPrior for route "prior"
    prior_steps: int = 32
    prior_guidance: float = 1.0
    constraints: Any = None  # crystaloop.multimodal.prompt.PromptConstraints, or None

    def latents(self, n: int, seed: int) -> np.ndarray | None:
        """(n, d) per-sample latents of the prior route, ``None`` on the direct route."""
        if self.route == "direct":
            return None
        return self.prior.sample(self.latent, self.modality, n, seed=seed, steps=self.prior_steps, guidance=self.prior_guidance)


def resolve_query(*, text: str | None = None, xrd: str | Path | None = None, wavelength: float | None = None,
                  route: str = "direct", fusion: str | Path | None = None, prior: str | Path | None = None,
                  prior_steps: int = 32, prior_guidance: float = 1.0, width: int | None = None) -> QueryRoute:
    """Embed the query with the fusion model and load the prior for the ``prior`` route.

    Raises:
        CrystaloopError: an unknown route; a latent whose width is not ``width`` (the generator's
            embedding_dim); a prior trained on another fusion checkpoint's latents; an unreadable pattern.
    """
    from crystaloop.multimodal.conditioning import embedding_condition
    from crystaloop.multimodal.fusion import load_checkpoint
    from crystaloop.multimodal.pretrained import shipped_checkpoint
    from crystaloop.multimodal.xrd_io import read_pattern

    if route not in ROUTES:
        raise CrystaloopError(f"route {route!r} is not known; allowed: {', '.join(ROUTES)}")
    if (text is None) == (xrd is None):
        raise CrystaloopError("a query needs exactly one of text and xrd")
    encoder, fusion_info = load_checkpoint(fusion or shipped_checkpoint())
    if width is not None and encoder.latent_dim != width:
        raise CrystaloopError(f"the fusion model's latent has width {encoder.latent_dim}, but the generator reads "
                              f"embeddings of width {width}; pass the fusion checkpoint the generator was trained with")
    model = None
    if route == "prior":  # checked before the (slower) embedding
        from crystaloop.multimodal.prior import load_prior

        model, _ = load_prior(prior or shipped_checkpoint("prior"))
        trained_on = model.metadata.get("fusion_checkpoint_sha256")
        if trained_on != fusion_info["checkpoint_hash"]:
            raise CrystaloopError(f"the latent prior {prior or 'prior.pt'} was trained on the latents of fusion checkpoint "
                                  f"{str(trained_on)[:12]}…, not of {fusion or 'the shipped fusion.pt'} "
                                  f"({fusion_info['checkpoint_hash'][:12]}…); pass the matching --fusion or use route direct")
    pattern = read_pattern(xrd, encoder.config.grid, wavelength=wavelength) if xrd is not None else None
    latent = np.asarray(embedding_condition(encoder, text=text, pattern=pattern).embedding, dtype=np.float32)
    return QueryRoute(latent, "text" if text is not None else "xrd", route, prior=model, prior_steps=prior_steps,
                      prior_guidance=prior_guidance)


class QueryGenerator:
    """The ``Generator`` port around ``base`` conditioned on a :class:`QueryRoute`.

    ``base`` must read per-sample latents (``sample(..., embeddings=(n, d))`` and a positive
    ``embedding_dim``, as :class:`~crystaloop.generator.diffusion.generator.DiffusionGenerator`).
    With ``query.constraints`` every call returns only samples that satisfy them
    (:func:`~crystaloop.multimodal.prompt.sample_satisfying`: more drawn while too few do; possibly
    fewer than ``n``).
    """

    def __init__(self, base: Any, query: QueryRoute, *, max_rounds: int = 6) -> None:
        if int(getattr(base, "embedding_dim", 0) or 0) <= 0:
            raise CrystaloopError(f"generator {getattr(base, 'name', type(base).__name__)!r} reads no latent, so it cannot "
                                  "be conditioned on a text or pattern; use the diffusion checkpoint perov_5_multimodal "
                                  "or one trained with --embeddings")
        if int(base.embedding_dim) != len(query.latent):
            raise CrystaloopError(f"the query latent has width {len(query.latent)}, the generator reads {base.embedding_dim}")
        self.base, self.query, self.max_rounds = base, query, max_rounds
        self.name = base.name
        self.last_drawn = 0

    def __getattr__(self, attribute: str) -> Any:  # properties, species, model, training_dataset … of the base
        if attribute == "base":
            raise AttributeError(attribute)
        return getattr(self.base, attribute)

    def _draw(self, n: int, condition: Condition, seed: int, **kwargs: Any) -> list[Candidate]:
        condition = condition.model_copy(update={"embedding": tuple(float(v) for v in self.query.latent)})
        latents = self.query.latents(n, seed)
        drawn = self.base.sample(n, condition, seed=seed, **kwargs, **({} if latents is None else {"embeddings": latents}))
        self.last_drawn += len(drawn)
        return list(drawn)

    def sample(self, n: int, condition: Condition | None = None, *, seed: int, **kwargs: Any) -> list[Candidate]:
        """``n`` candidates by the query's route (fewer when the prompt's constraints are not met in time)."""
        condition = condition or Condition()
        self.last_drawn = 0
        if self.query.constraints is None:
            return self._draw(n, condition, seed, **kwargs)
        from crystaloop.multimodal.prompt import sample_satisfying

        self.query.constraints.check_system(condition.chemical_system, condition.composition)
        kept, reasons = sample_satisfying(lambda count, s: self._draw(count, condition, s, **kwargs), n,
                                          self.query.constraints, seed=seed, max_rounds=self.max_rounds)
        self.last_reasons = reasons
        if len(kept) < n:
            logger.warning("prompt constraints: %d of %d samples satisfied %s", len(kept), n, self.query.constraints.describe())
        return kept


def query_generator(base: Any, config: QueryConfig) -> QueryGenerator:
    """A campaign's generator conditioned on ``config`` (see :class:`QueryConfig`)."""
    from crystaloop.multimodal.prompt import parse_prompt

    route = resolve_query(text=config.text, xrd=config.xrd, wavelength=config.wavelength, route=config.route,
                          fusion=config.fusion, prior=config.prior, prior_steps=config.prior_steps,
                          prior_guidance=config.prior_guidance, width=int(getattr(base, "embedding_dim", 0) or 0) or None)
    if config.text is not None and config.prompt_constraints:
        constraints = parse_prompt(config.text)
        route.constraints = None if constraints.empty else constraints
    return QueryGenerator(base, route)
