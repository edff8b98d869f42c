"""Generator registry: the one list of campaign generator kinds and the config union that picks one.

:data:`GENERATOR_CHOICES` maps each kind to its config class, which sits beside its generator
and builds it (``choice.build()``): ``diffusion`` (the trained model,
:class:`~crystaloop.generator.config.DiffusionChoice`), ``dataset-replay`` (a dataset's crystals,
optionally perturbed; for tests and pool benchmarks), ``substitution`` (ion exchange and partial
substitution into a library and the prototypes), ``random_search`` (random symmetric crystals),
``composite`` (several of those as arms, each making a share of every batch) and ``template``
(space-group + Wyckoff templates from a prior learned on a training split,
:mod:`crystaloop.generator.symmetry`).
:data:`GeneratorChoice` is their discriminated union: an unknown kind, or a field of another
kind, fails when the campaign file is read. A new generator kind is its module with its config
and one line here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, TypeAlias

from crystaloop.data.errors import UnknownComponentError
from crystaloop.data.kinds import kind_union
from crystaloop.generator.base import Generator, GeneratorSettings
from crystaloop.generator.composite import CompositeChoice
from crystaloop.generator.config import DiffusionChoice
from crystaloop.generator.random_search import RandomSearchChoice
from crystaloop.generator.replay import DatasetReplayChoice
from crystaloop.generator.substitution import SubstitutionChoice
from crystaloop.generator.symmetry.generator import TemplateChoice

__all__ = ["GENERATOR_CHOICES", "GeneratorChoice", "make_generator"]

GENERATOR_CHOICES: dict[str, type[GeneratorSettings]] = {
    "diffusion": DiffusionChoice,
    "dataset-replay": DatasetReplayChoice,
    "substitution": SubstitutionChoice,
    "random_search": RandomSearchChoice,
    "composite": CompositeChoice,
    "template": TemplateChoice,
}
"""Campaign generator kind → its config class (``choice.build()`` makes the generator)."""

if TYPE_CHECKING:  # what the type checker sees of the union built below
    GeneratorChoice: TypeAlias = (DiffusionChoice | DatasetReplayChoice | SubstitutionChoice | RandomSearchChoice
                                  | CompositeChoice | TemplateChoice)
else:
    GeneratorChoice = kind_union(GENERATOR_CHOICES, default="diffusion")
"""A campaign's generator config: the class :data:`GENERATOR_CHOICES` names for its ``kind``."""


def make_generator(choice: GeneratorSettings) -> Generator:
    """The generator ``choice`` describes.

    Raises:
        UnknownComponentError: ``choice.kind`` is not in :data:`GENERATOR_CHOICES`.
    """
    if choice.kind not in GENERATOR_CHOICES:
        raise UnknownComponentError("generator", choice.kind, GENERATOR_CHOICES)
    return choice.build()
