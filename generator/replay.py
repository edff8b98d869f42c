"""`DatasetReplayGenerator`: a generator that hands out a dataset's crystals (optionally perturbed).

With :class:`~crystaloop.surrogates.oracles.replay.ReplayOracle` over the same data it makes
pool-based benchmarks (the generated "pool" is a held-out split, the oracle its DFT labels) and
tests of the loop possible without a trained generator or an MLIP.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import numpy as np
from pydantic import Field

from crystaloop import __version__
from crystaloop.data.crystal import Crystal
from crystaloop.data.datasets import CrystalDataset
from crystaloop.data.errors import CrystaloopError
from crystaloop.data.records import Candidate, Condition, Provenance
from crystaloop.generator.base import GeneratorSettings

__all__ = ["DatasetReplayGenerator", "DatasetReplayChoice"]


class DatasetReplayGenerator:
    """Samples crystals of a dataset that fit the condition, optionally perturbed.

    Args:
        crystals: the crystals to hand out.
        perturb: std of the fractional displacement added to every site (0 → the crystals as they
            are, which a :class:`~crystaloop.surrogates.oracles.replay.ReplayOracle` over the same data can then answer).
        name: component name written into provenance.

    ``sample(n, condition, seed=s)`` draws ``n`` of the crystals whose elements lie inside
    ``condition.chemical_system`` (and match ``condition.composition`` up to scale when given),
    without replacement while there are enough, deterministically for ``s``.
    """

    def __init__(self, crystals: Sequence[Crystal], *, perturb: float = 0.0, name: str = "dataset-replay") -> None:
        if not crystals:
            raise CrystaloopError("a dataset-replay generator needs at least one crystal")
        self.crystals = list(crystals)
        self.perturb = float(perturb)
        self.name = name

    @classmethod
    def from_dataset(cls, dataset: CrystalDataset, *, perturb: float = 0.0) -> DatasetReplayGenerator:
        return cls(dataset.crystals, perturb=perturb, name=f"dataset-replay:{dataset.name}")

    def _eligible(self, condition: Condition | None) -> list[int]:
        if condition is None:
            return list(range(len(self.crystals)))
        out = []
        for i, crystal in enumerate(self.crystals):
            if condition.chemical_system is not None and not set(crystal.elements) <= set(condition.chemical_system):
                continue
            if condition.composition is not None and _reduced(crystal.composition) != _reduced(condition.composition):
                continue
            if condition.num_atoms is not None and crystal.n_sites != condition.num_atoms:
                continue
            out.append(i)
        return out

    def sample(self, n: int, condition: Condition | None = None, *, seed: int) -> list[Candidate]:
        eligible = self._eligible(condition)
        if not eligible:
            raise CrystaloopError(f"no crystal of {self.name} fits the condition {condition}; {len(self.crystals)} crystals in all")
        rng = np.random.default_rng(seed)
        picks = rng.choice(eligible, size=n, replace=n > len(eligible))
        crystals = [self.crystals[i] for i in picks]
        if self.perturb > 0:
            crystals = [
                Crystal(c.lattice, c.frac_coords + rng.normal(0.0, self.perturb, size=c.frac_coords.shape), c.numbers)
                for c in crystals
            ]
        provenance = Provenance(component=self.name, version=__version__, seed=seed)
        return Candidate.from_crystals(crystals, provenance, condition)


def _reduced(composition: dict[str, int]) -> dict[str, float]:
    g = math.gcd(*composition.values())
    return {k: v / g for k, v in composition.items()}


class DatasetReplayChoice(GeneratorSettings):
    """A campaign's ``dataset-replay`` generator (``generator: {kind: dataset-replay, dataset: perov_5/val}``).

    Attributes:
        dataset: dataset spec (``perov_5/val``, a CSV or CIF folder path) whose crystals are handed out.
        perturb: std of the fractional displacement added to every site (0: the crystals as they are).
    """

    kind: Literal["dataset-replay"] = "dataset-replay"
    dataset: str | None = None
    perturb: float = Field(0.0, ge=0)

    def build(self) -> DatasetReplayGenerator:
        from crystaloop.data.datasets import load_dataset

        if not self.dataset:
            raise CrystaloopError("generator kind 'dataset-replay' needs dataset: <spec such as perov_5/val>")
        return DatasetReplayGenerator.from_dataset(load_dataset(self.dataset), perturb=self.perturb)
