"""What a campaign runs on, built by name from plain registries.

* the generator — built from the campaign's choice
  (:data:`~crystaloop.generator.registry.GENERATOR_CHOICES`: ``diffusion``, the trained model,
  imported lazily; ``dataset-replay``; ``substitution`` and ``random_search``, which need no training).
* surrogates — shipped ensembles by name or checkpoints by path, combined by
  :class:`~crystaloop.surrogates.base.SurrogateSet` (the Surrogate port).
* the oracle — built from the campaign's choice (:data:`~crystaloop.surrogates.oracles.registry.ORACLE_CHOICES`:
  the MLIPs as :class:`~crystaloop.surrogates.oracles.mlip.MLIPOracle`, ``replay`` as
  :class:`~crystaloop.surrogates.oracles.replay.ReplayOracle`), behind the batch oracle port
  :class:`~crystaloop.surrogates.oracles.base.Oracle`.

An unknown name raises :class:`~crystaloop.data.errors.UnknownComponentError` listing the valid ones.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from crystaloop.data.errors import CrystaloopError
from crystaloop.generator.base import Generator
from crystaloop.generator.registry import GENERATOR_CHOICES, make_generator
from crystaloop.loop.config import CampaignConfig, check_objectives_provided
from crystaloop.loop.guards import Guard, StructureIndex, build_guards
from crystaloop.loop.strategies import Strategy, make_strategy
from crystaloop.surrogates.base import EmbeddingSurrogate, SurrogateSet
from crystaloop.surrogates.oracles.base import Oracle

__all__ = [
    "Components",
    "GENERATOR_CHOICES",
    "make_generator",
    "training_split",
    "reference_structures",
    "build_components",
    "check_objectives",
]

logger = logging.getLogger(__name__)


def load_surrogates(config: CampaignConfig) -> SurrogateSet | None:
    """The configured surrogates, or ``None`` when there are none."""
    if not config.surrogates:
        return None
    from crystaloop.surrogates.ensemble import PropertyEnsemble
    from crystaloop.surrogates.shipped import shipped_surrogate_path

    members: list[EmbeddingSurrogate] = []
    for choice in config.surrogates:
        path = shipped_surrogate_path(choice.name) if choice.kind == "shipped" else choice.path
        members.append(PropertyEnsemble.load(path))
    return SurrogateSet(members)


def training_split(generator: Generator) -> str | None:
    """The dataset spec a generator was trained on (``perov_5/train``), where it records one:
    a ``training_dataset`` attribute, else the diffusion checkpoint's ``config.dataset``."""
    spec = getattr(generator, "training_dataset", None)
    if spec is None:
        spec = getattr(getattr(getattr(generator, "model", None), "config", None), "dataset", None)
    return spec if isinstance(spec, str) and spec else None


def reference_structures(config: CampaignConfig, generator: Generator) -> StructureIndex | None:
    """The structures a candidate must not copy to count as novel: ``guards.diversity.reference``,
    or (``None`` there) the generator's training split; ``None`` when there are none or the
    diversity guard is off."""
    diversity = config.guards.diversity
    if not diversity.enabled:
        return None
    specs = diversity.reference
    if specs is None:
        split = training_split(generator)
        specs = (split,) if split is not None else ()
        if split is None:
            logger.info("generator %s records no training split; novelty is checked against the campaign only", getattr(generator, "name", "?"))
    return StructureIndex.from_datasets(specs) if specs else None


@dataclass
class Components:
    """Everything :func:`crystaloop.loop.campaign.run_iteration` calls.

    Attributes:
        known_ids: extra canonical hashes the diversity guard treats as duplicates.
        reference: known structures outside the campaign (the generator's training split);
            a candidate matching one is "not novel" (:func:`reference_structures`).
        cache: per-process memo of derived objects (the online surrogate of an iteration),
            keyed by everything they depend on.
    """

    generator: Generator
    oracle: Oracle
    strategy: Strategy
    guards: list[Guard]
    surrogate: SurrogateSet | None = None
    known_ids: set[str] = field(default_factory=set)
    reference: StructureIndex | None = None
    cache: dict = field(default_factory=dict, repr=False)


def check_objectives(config: CampaignConfig, oracle: Oracle, surrogate: SurrogateSet | None) -> None:
    """Raise :class:`CrystaloopError` if an objective is neither measured by ``oracle`` nor
    predicted by ``surrogate`` (the loaded components, checkpoints included), naming the allowed ones."""
    predicted = surrogate.properties if surrogate is not None else ()
    try:
        check_objectives_provided(config.objectives, measured=oracle.properties, predicted=predicted)
    except ValueError as exc:
        raise CrystaloopError(f"campaign {config.name}: {exc}") from None


def build_components(config: CampaignConfig) -> Components:
    """Resolve every component the config names (weights and reference structures load here);
    the objectives are checked against what the oracle and surrogates provide before anything
    else loads."""
    oracle = config.oracle.build()  # weights load on the first calculation
    surrogate = load_surrogates(config)
    check_objectives(config, oracle, surrogate)
    generator = make_generator(config.generator)
    if config.query is not None:
        from crystaloop.loop.query import query_generator

        generator = query_generator(generator, config.query)
    return Components(
        generator=generator,
        oracle=oracle,
        strategy=make_strategy(config),
        guards=build_guards(config.guards),
        surrogate=surrogate,
        reference=reference_structures(config, generator),
    )
