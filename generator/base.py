"""The generator port: what the loop and the CLI need from any crystal generator.

``Generator.sample(n, condition=None, *, seed) -> list[Candidate]`` is the one main method
(DESIGN.md, Ports). The diffusion model in :mod:`crystaloop.generator.diffusion.generator` implements it;
tests of the layers above use small fakes that satisfy the same protocol.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from crystaloop.data.records import Candidate, Condition

__all__ = ["Generator"]


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
