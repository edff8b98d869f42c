"""MLIP and DFT oracles: relax crystals and measure energies, with a persistent result cache.

* :class:`Oracle` — the port, ``evaluate(crystals) -> list[Measurement]``;
* :class:`ASEOracle` — any ASE calculator as an oracle (plug DFT in here);
* :class:`CHGNetOracle`, :class:`SevenNetOracle` — universal potentials, weights from their wheels;
* :class:`MLIPOracle` — an ASE oracle measuring energy, hull distance and bulk modulus for a
  campaign; :class:`ReplayOracle` — a dataset's recorded labels;
* :data:`OracleChoice` — a campaign's oracle config, a union over :data:`ORACLE_CHOICES` by kind;
* :class:`OracleCache` — results keyed by (structure hash, oracle settings hash, property);
* :func:`make_oracle` / :data:`ORACLES` / :class:`OracleConfig` — pick one by name.

Importing this package loads no model: weights load on the first calculation.
"""

from crystaloop.surrogates.oracles.base import ASEOracle, Oracle, Relaxation, RelaxConfig
from crystaloop.surrogates.oracles.cache import CachedResult, OracleCache, default_cache_url
from crystaloop.surrogates.oracles.chgnet import CHGNetOracle
from crystaloop.surrogates.oracles.mlip import MLIP_PROPERTIES, MLIPOracle, MLIPOracleChoice
from crystaloop.surrogates.oracles.registry import (
    MLIP_KINDS,
    ORACLE_CHOICES,
    ORACLES,
    OracleChoice,
    OracleConfig,
    emt_oracle,
    make_oracle,
    oracle_from_config,
)
from crystaloop.surrogates.oracles.replay import ReplayOracle, ReplayOracleChoice
from crystaloop.surrogates.oracles.sevennet import SevenNetOracle

__all__ = [
    "Oracle",
    "ASEOracle",
    "RelaxConfig",
    "Relaxation",
    "CHGNetOracle",
    "MLIPOracle",
    "MLIPOracleChoice",
    "MLIP_KINDS",
    "MLIP_PROPERTIES",
    "ReplayOracle",
    "ReplayOracleChoice",
    "ORACLE_CHOICES",
    "OracleChoice",
    "SevenNetOracle",
    "OracleCache",
    "CachedResult",
    "default_cache_url",
    "ORACLES",
    "OracleConfig",
    "make_oracle",
    "oracle_from_config",
    "emt_oracle",
]
