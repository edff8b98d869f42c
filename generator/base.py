"""The generator port: what the loop and the CLI need from any crystal generator.

``Generator.sample(n, condition=None, *, seed) -> list[Candidate]`` is the one main method
(DESIGN.md, Ports). The diffusion model in :mod:`crystaloop.generator.diffusion.generator` implements it;
tests of the layers above use small fakes that satisfy the same protocol.
"""

from __future__ import annotations

from typing import Annotated, Protocol, runtime_checkable

from pydantic import AfterValidator, BaseModel, ConfigDict

from crystaloop.data.crystal import atomic_number
from crystaloop.data.records import Candidate, Condition

__all__ = ["Generator", "GeneratorSettings", "ElementSymbols"]


def _known_elements(symbols: tuple[str, ...]) -> tuple[str, ...]:
    for symbol in symbols:
        atomic_number(symbol)  # raises naming the unknown symbol
    return symbols


ElementSymbols = Annotated[tuple[str, ...], AfterValidator(_known_elements)]
"""A tuple of element symbols, each checked against the periodic table when a config is read."""


@runtime_checkable
class Generator(Protocol):
    """Samples candidate crystals, optionally for a :class:`~crystaloop.data.records.Condition`.

    Implementations must be deterministic for a given ``seed`` and must fill each candidate's
    provenance (component name, version, checkpoint hash, seed) and ``condition``.
    """

    name: str

    def sample(self, n: int, condition: Condition | None = None, *, seed: int) -> list[Candidate]:
        """Return ``n`` candidates with status ``generated``.

        Raises:
            crystaloop.data.errors.CrystaloopError: a condition the generator cannot honour
                (an element it never saw, more atoms than it supports, NaN targets), with a
                message naming the value and what is allowed.
        """
        ...


class GeneratorSettings(BaseModel):
    """Base of a campaign's generator config: each generator kind's config (its ``kind`` and its
    own fields, unknown keys refused) extends it, sits beside its generator and builds it.
    :data:`crystaloop.generator.registry.GENERATOR_CHOICES` lists them by kind."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: str

    def build(self) -> Generator:
        """The generator this config describes (weights and libraries load here)."""
        raise NotImplementedError(f"generator kind {self.kind!r} does not say how to build itself")
