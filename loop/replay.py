"""Replay components built from a labelled dataset: a generator that hands out its crystals and an
oracle that answers with its recorded values (DFT labels), keyed by canonical hash.

They make pool-based benchmarks (the generated "pool" is a held-out split, the oracle its DFT
labels) and tests of the loop possible without a trained generator or an MLIP.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence

import numpy as np

from crystaloop import __version__
from crystaloop.data.crystal import Crystal
from crystaloop.data.datasets import PROPERTY_UNITS, CrystalDataset
from crystaloop.data.errors import CrystaloopError
from crystaloop.data.records import Candidate, Condition, Measurement, Provenance

__all__ = ["DatasetReplayGenerator", "ReplayOracle"]

logger = logging.getLogger(__name__)


class DatasetReplayGenerator:
    """Samples crystals of a dataset that fit the condition, optionally perturbed.

    Args:
        crystals: the crystals to hand out.
        perturb: std of the fractional displacement added to every site (0 → the crystals as they
            are, which a :class:`ReplayOracle` over the same data can then answer).
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


class ReplayOracle:
    """Answers with a dataset's recorded values; a crystal not in the dataset gets failed Measurements.

    Args:
        dataset: crystals and their property columns.
        properties: columns to report (default: all numeric columns).
    """

    def __init__(self, dataset: CrystalDataset, properties: Sequence[str] | None = None) -> None:
        self.name = f"replay:{dataset.name}"
        self.properties = tuple(properties) if properties is not None else tuple(dataset.properties)
        missing = [p for p in self.properties if p not in dataset.properties]
        if missing:
            raise CrystaloopError(f"dataset {dataset.name} has no column(s) {missing}; columns: {sorted(dataset.properties)}")
        self._rows = {c.canonical_hash(): i for i, c in enumerate(dataset.crystals)}
        self._values = {p: dataset.properties[p] for p in self.properties}
        self.calls = 0

    def measure(self, crystal: Crystal) -> list[Measurement]:
        """One Measurement per property for ``crystal`` (failed where unknown or NaN)."""
        self.calls += 1
        row = self._rows.get(crystal.canonical_hash())
        out = []
        for prop in self.properties:
            value = None if row is None else float(self._values[prop][row])
            units = PROPERTY_UNITS.get(prop, "")
            if value is None or not math.isfinite(value):
                reason = "structure not in the replay dataset" if row is None else "no recorded value"
                out.append(Measurement(oracle=self.name, property=prop, value=None, units=units, status="failed", reason=reason))
            else:
                out.append(Measurement(oracle=self.name, property=prop, value=value, units=units))
        return out

    def evaluate(self, crystals: Sequence[Crystal]) -> list[Measurement]:
        """The oracle port: the first property's Measurement per crystal."""
        return [self.measure(c)[0] for c in crystals]
