"""Oracle registry: a plain name → factory table, and the pydantic config that picks one.

``make_oracle("chgnet", relax=RelaxConfig(fmax=0.05))`` builds an oracle by name; an unknown
name raises :class:`~crystaloop.data.errors.UnknownComponentError` listing the valid ones.
Building an oracle loads nothing: model weights load on the first calculation.

* ``"chgnet"`` — :class:`~crystaloop.surrogates.oracles.chgnet.CHGNetOracle` (weights in the wheel);
* ``"sevennet"`` — :class:`~crystaloop.surrogates.oracles.sevennet.SevenNetOracle` (needs ``sevenn``);
* ``"emt"`` — ASE's effective-medium potential (Al, Cu, Ag, Au, Ni, Pd, Pt; H, C, N, O only
  roughly): physically crude but instant, for tests and demos of the loop.

A campaign picks its oracle by kind from :data:`ORACLE_CHOICES`, the one list of campaign oracle
kinds: the MLIPs above (:class:`~crystaloop.surrogates.oracles.mlip.MLIPOracleChoice`) and
``replay`` (a dataset's labels, :class:`~crystaloop.surrogates.oracles.replay.ReplayOracleChoice`);
:data:`OracleChoice` is their discriminated union and ``choice.build()`` the oracle.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeAlias

from pydantic import BaseModel, ConfigDict, Field, field_validator

from crystaloop.data.errors import UnknownComponentError
from crystaloop.data.kinds import kind_union
from crystaloop.surrogates.oracles.base import ASEOracle, RelaxConfig, package_version
from crystaloop.surrogates.oracles.cache import OracleCache
from crystaloop.surrogates.oracles.chgnet import CHGNetOracle
from crystaloop.surrogates.oracles.mlip import MLIPOracleChoice
from crystaloop.surrogates.oracles.replay import ReplayOracleChoice
from crystaloop.surrogates.oracles.sevennet import SevenNetOracle

__all__ = ["MLIP_KINDS", "ORACLES", "ORACLE_CHOICES", "OracleChoice", "OracleConfig", "make_oracle", "oracle_from_config", "emt_oracle"]


def emt_oracle(*, relax: RelaxConfig | None = None, cache: OracleCache | None = None) -> ASEOracle:
    """ASE's EMT potential as an oracle named ``"emt"`` (see the module docstring)."""

    def factory():
        from ase.calculators.emt import EMT

        return EMT()

    return ASEOracle(
        "emt", factory, relax=relax, cache=cache, settings={"package": "ase", "version": package_version("ase")}
    )


ORACLES: dict[str, Callable[..., ASEOracle]] = {
    "chgnet": CHGNetOracle,
    "sevennet": SevenNetOracle,
    "emt": emt_oracle,
}
"""Oracle name → factory taking keyword arguments (``relax``, ``cache``; the MLIPs also ``model``,
``device``, ``threads``). The one list of ASE oracle kinds: a line here makes a kind usable by
``make_oracle``, ``oracle relax``, ``hull`` and campaigns (``oracle: {kind: <name>}``)."""
MLIP_KINDS = tuple(ORACLES)
"""The ASE oracle kinds a campaign can name (:class:`~crystaloop.surrogates.oracles.mlip.MLIPOracleChoice`)."""

ORACLE_CHOICES: dict[str, type[MLIPOracleChoice] | type[ReplayOracleChoice]] = {
    **{kind: MLIPOracleChoice for kind in MLIP_KINDS},
    "replay": ReplayOracleChoice,
}
"""Campaign oracle kind → its config class (``choice.build()`` makes the oracle)."""
if TYPE_CHECKING:  # what the type checker sees of the union built below
    OracleChoice: TypeAlias = MLIPOracleChoice | ReplayOracleChoice
else:
    OracleChoice = kind_union(ORACLE_CHOICES, default="chgnet")
"""A campaign's oracle config: the class :data:`ORACLE_CHOICES` names for its ``kind``."""


def registered_kind(kind: str) -> str:
    """``kind`` if :data:`ORACLES` has it, else ``ValueError`` naming the registered kinds."""
    if kind not in ORACLES:
        raise ValueError(f"unknown oracle kind {kind!r}; allowed: {', '.join(ORACLES)}")
    return kind


def make_oracle(name: str, **kwargs: Any) -> ASEOracle:
    """Build the oracle registered as ``name`` with the factory's keyword arguments.

    Raises:
        UnknownComponentError: ``name`` is not in :data:`ORACLES`; the message lists the valid names.
    """
    if name not in ORACLES:
        raise UnknownComponentError("oracle", name, ORACLES)
    return ORACLES[name](**kwargs)


class OracleConfig(BaseModel):
    """Which oracle a campaign uses and how (the oracle part of the surrogates config).

    Attributes:
        kind: registry name, see :data:`ORACLES`.
        model: model version (``"0.3.0"`` for chgnet, ``"7net-0"`` for sevennet); ``None`` → the
            oracle's default. Not used by ``"emt"``.
        device: torch device for the MLIPs.
        threads: torch intra-op threads for the MLIPs while they compute (1 suits small cells
            on CPU); ``None`` → torch's own setting.
        relax: relaxation settings.
        cache_url: SQLAlchemy URL of the result cache; ``None`` → the default SQLite file.
        use_cache: persist results (and reuse them).
        serve_failed: serve cached failures instead of recomputing them (default: a failed
            result is cached with its reason but computed again on the next request).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: str = "chgnet"
    model: str | None = None
    device: str = "cpu"
    threads: int | None = Field(1, gt=0)
    relax: RelaxConfig = Field(default_factory=RelaxConfig)
    cache_url: str | None = None
    use_cache: bool = True
    serve_failed: bool = False

    @field_validator("kind")
    @classmethod
    def _registered(cls, value: str) -> str:
        return registered_kind(value)


def oracle_from_config(config: OracleConfig) -> ASEOracle:
    """Build the oracle that ``config`` describes."""
    cache = OracleCache(config.cache_url, serve_failed=config.serve_failed) if config.use_cache else None
    kwargs: dict[str, Any] = {"relax": config.relax, "cache": cache}
    if config.kind != "emt":
        kwargs["device"] = config.device
        kwargs["threads"] = config.threads
        if config.model is not None:
            kwargs["model"] = config.model
    return make_oracle(config.kind, **kwargs)
