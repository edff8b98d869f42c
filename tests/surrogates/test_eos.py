"""Bulk modulus from an EOS fit: EMT copper against EMT's known value, caching, failures."""

from __future__ import annotations

import numpy as np
import pytest
from ase.build import bulk
from ase.calculators.calculator import all_changes
from ase.calculators.emt import EMT

from crystaloop.data.crystal import Crystal
from crystaloop.surrogates.eos import bulk_modulus, eos_property_key
from crystaloop.surrogates.oracles import ASEOracle, OracleCache

EMT_CU_BULK_MODULUS_GPA = 134.0  # ASE's EMT copper (the ASE EOS tutorial's value)


class CountingEMT(EMT):
    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes) -> None:
        self.calls += 1
        super().calculate(atoms, properties, system_changes)


def test_emt_copper_bulk_modulus_matches_emt() -> None:
    oracle = ASEOracle("emt", EMT)
    measurement = bulk_modulus(Crystal.from_ase(bulk("Cu", "fcc", a=3.7)), oracle)
    assert measurement.status == "ok", measurement.reason
    assert measurement.property == "bulk_modulus" and measurement.units == "GPa"
    assert measurement.value == pytest.approx(EMT_CU_BULK_MODULUS_GPA, rel=0.1)
    vinet = bulk_modulus(Crystal.from_ase(bulk("Cu", "fcc", a=3.7)), oracle, eos="vinet")
    assert vinet.value == pytest.approx(measurement.value, rel=0.05)


def test_bulk_modulus_is_cached_per_setting() -> None:
    cache = OracleCache("sqlite://")
    oracle = ASEOracle("emt", CountingEMT, cache=cache)
    copper = Crystal.from_ase(bulk("Cu", "fcc", a=3.6))
    first = bulk_modulus(copper, oracle)
    calls = oracle.calculator.calls
    assert bulk_modulus(copper, oracle) == first and oracle.calculator.calls == calls
    wider = bulk_modulus(copper, oracle, strains=np.linspace(-0.06, 0.06, 7))
    assert oracle.calculator.calls > calls and wider.value == pytest.approx(first.value, rel=0.05)
    assert eos_property_key((0.0, 0.01), "vinet", True) != eos_property_key((0.0, 0.01), "vinet", False)


def test_fit_without_a_minimum_fails_with_a_reason() -> None:
    oracle = ASEOracle("emt", EMT)
    compressed = Crystal.from_ase(bulk("Cu", "fcc", a=3.2))  # strains around a far-from-minimum cell
    result = bulk_modulus(compressed, oracle, relax_first=False, strains=np.linspace(-0.02, 0.02, 5))
    assert result.status == "failed" and result.value is None
    assert "outside the sampled volumes" in result.reason or "EOS fit" in result.reason


def test_failed_relaxation_gives_failed_bulk_modulus() -> None:
    overlapping = Crystal.from_cartesian(np.eye(3) * 4.0, [[0.0, 0.0, 0.0], [0.1, 0.0, 0.0]], [29, 29])
    result = bulk_modulus(overlapping, ASEOracle("emt", EMT))
    assert result.status == "failed" and result.reason.startswith("relaxation failed: overlapping atoms")


def test_too_few_strains_is_a_usage_error() -> None:
    with pytest.raises(ValueError, match="at least 5 distinct"):
        bulk_modulus(Crystal.from_ase(bulk("Cu")), ASEOracle("emt", EMT), strains=(-0.01, 0.0, 0.01))
