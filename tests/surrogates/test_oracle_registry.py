"""The oracle registry and config: names, errors that list the choices, nothing loaded eagerly."""

from __future__ import annotations

import pytest
from ase.build import bulk
from pydantic import ValidationError

from crystaloop.data.crystal import Crystal
from crystaloop.data.errors import UnknownComponentError
from crystaloop.surrogates.oracles import (
    ORACLES,
    CHGNetOracle,
    OracleConfig,
    RelaxConfig,
    SevenNetOracle,
    make_oracle,
    oracle_from_config,
)


def test_unknown_oracle_lists_valid_names() -> None:
    with pytest.raises(UnknownComponentError) as error:
        make_oracle("vasp")
    message = str(error.value)
    assert "unknown oracle 'vasp'" in message
    for name in ("chgnet", "sevennet", "emt"):
        assert name in message


def test_registry_builds_without_loading_models() -> None:
    assert {"chgnet", "sevennet"} <= set(ORACLES)
    chgnet = make_oracle("chgnet", model="0.2.0", relax=RelaxConfig(fmax=0.05))
    assert isinstance(chgnet, CHGNetOracle) and chgnet.name == "chgnet-0.2.0" and chgnet.calculators_made == 0
    assert chgnet.cache_key() != make_oracle("chgnet").cache_key()
    assert isinstance(make_oracle("sevennet"), SevenNetOracle)
    with pytest.raises(UnknownComponentError, match="0.3.0"):
        CHGNetOracle(model="9.9.9")


def test_oracle_from_config_runs_emt() -> None:
    config = OracleConfig(kind="emt", relax=RelaxConfig(max_steps=5), use_cache=False)
    oracle = oracle_from_config(config)
    assert oracle.cache is None and oracle.relax_config.max_steps == 5
    (measurement,) = oracle.evaluate([Crystal.from_ase(bulk("Cu", "fcc", a=3.6))])
    assert measurement.status == "ok" and measurement.oracle == "emt"
    with pytest.raises(ValidationError):
        OracleConfig(kind="vasp")
    with pytest.raises(ValidationError):
        OracleConfig(kind="emt", fmax=0.1)
