"""`ReplayOracle`: a labelled dataset as an oracle, answering with its recorded values (DFT labels)
keyed by canonical hash, behind the batch oracle port.

It makes pool-based benchmarks (the generated "pool" is a held-out split, the oracle its DFT
labels) and tests of the loop possible without an MLIP. :class:`ReplayOracleChoice` is its
campaign config (``oracle: {kind: replay, dataset: perov_5/val, measure: [heat_ref]}``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from crystaloop.data.crystal import Crystal
from crystaloop.data.datasets import PROPERTY_UNITS, CrystalDataset
from crystaloop.data.errors import CrystaloopError
from crystaloop.data.records import Measurement

__all__ = ["ReplayOracle", "ReplayOracleChoice"]


class ReplayOracleChoice(BaseModel):
    """A campaign's replay oracle: ``dataset`` (a spec such as ``perov_5/val``) and the columns to
    ``measure``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["replay"] = "replay"
    dataset: str = Field(min_length=1, description="dataset spec, e.g. perov_5/val")
    measure: tuple[str, ...] = Field(min_length=1, description="dataset columns to report")

    def build(self) -> ReplayOracle:
        from crystaloop.data.datasets import load_dataset

        return ReplayOracle(load_dataset(self.dataset), self.measure)


class ReplayOracle:
    """Answers with a dataset's recorded values; a crystal not in the dataset gets failed Measurements.

    Args:
        dataset: crystals and their property columns.
        properties: columns to report (default: all numeric columns).

    ``calls`` counts the crystals evaluated.
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

    def evaluate(self, crystals: Sequence[Crystal]) -> list[Measurement]:
        """Crystal by crystal, one Measurement per property (failed where unknown or NaN)."""
        out = []
        for crystal in crystals:
            self.calls += 1
            row = self._rows.get(crystal.canonical_hash())
            for prop in self.properties:
                value = None if row is None else float(self._values[prop][row])
                units = PROPERTY_UNITS.get(prop, "")
                if value is None or not math.isfinite(value):
                    reason = "structure not in the replay dataset" if row is None else "no recorded value"
                    out.append(Measurement(oracle=self.name, property=prop, value=None, units=units, status="failed", reason=reason))
                else:
                    out.append(Measurement(oracle=self.name, property=prop, value=value, units=units))
        return out
