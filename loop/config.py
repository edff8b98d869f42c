"""`CampaignConfig`: one pydantic model describing a whole campaign, read from YAML at the edge.

A campaign is: what to optimise (:class:`Objective`, one or several), what is allowed
(:class:`Constraints`), how much to spend (:class:`Budget`), how to choose
(:data:`~crystaloop.loop.strategies.StrategyChoice`), what to refuse (:class:`GuardsConfig`) and which components
(:class:`GeneratorChoice`, :class:`SurrogateChoice`, :class:`OracleChoice`, each picked by a
registry name). :func:`load_campaign_config` is the only place YAML is read;
:meth:`CampaignConfig.config_hash` goes into every candidate's provenance.

Example (see ``examples/*.yaml``)::

    name: perovskite-water-splitting
    objectives:
      - {property: dir_gap, goal: target, window: [1.5, 3.0], units: eV}
      - {property: e_above_hull, goal: minimise, units: eV/atom}
    budget: {iterations: 5, candidates_per_iteration: 64, oracle_calls_per_iteration: 8}
    strategy: {kind: bo}
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from crystaloop.data.errors import CrystaloopError, describe_validation_error
from crystaloop.generator.composite import CompositeChoice
from crystaloop.generator.config import DiffusionChoice
from crystaloop.generator.registry import GeneratorChoice
from crystaloop.loop.collapse import CollapseMonitorConfig
from crystaloop.loop.constraints import Constraints
from crystaloop.loop.guards import (
    DiversityGuardConfig,
    ExploitationGuardConfig,
    GuardsConfig,
    SynthesizabilityGuardConfig,
    ValidityGuardConfig,
)
from crystaloop.loop.query import QueryConfig
from crystaloop.loop.strategies import RandomConfig, StrategyChoice
from crystaloop.surrogates.oracles.mlip import MLIPOracleChoice
from crystaloop.surrogates.oracles.registry import OracleChoice

__all__ = [
    "Objective",
    "Constraints",
    "Budget",
    "StrategyChoice",
    "ValidityGuardConfig",
    "DiversityGuardConfig",
    "ExploitationGuardConfig",
    "SynthesizabilityGuardConfig",
    "CollapseMonitorConfig",
    "GuardsConfig",
    "SunConfig",
    "SUN_PROPERTY",
    "GeneratorChoice",
    "QueryConfig",
    "SurrogateChoice",
    "OracleChoice",
    "CampaignConfig",
    "load_campaign_config",
    "check_objectives_provided",
    "check_config_objectives",
]

SUN_PROPERTY = "sun"
"""Objective property of S.U.N. campaigns (:mod:`crystaloop.loop.sun`): 1 for a stable, unique,
novel evaluated candidate, else 0; ``{property: sun, goal: maximise}`` counts S.U.N. candidates as
the hits."""

_STRICT = ConfigDict(extra="forbid", frozen=True)


class Objective(BaseModel):
    """One property to optimise.

    Attributes:
        property: property name (a surrogate target such as ``dir_gap`` or an oracle property
            such as ``e_above_hull``).
        goal: ``maximise``, ``minimise`` or ``target`` (inside ``window``).
        window: inclusive ``[low, high]`` for ``goal: target``, in ``units``.
        units: units of the property (``eV``, ``eV/atom``, ``GPa``), checked against the
            surrogate's and oracle's units when the campaign starts.
        threshold: for maximise/minimise, the value a measured candidate must reach (≥ for
            maximise, ≤ for minimise) to count as a hit; ``None`` → every measured value counts.
        weight: weight in the scalarised score of a multi-objective campaign (> 0).
    """

    model_config = _STRICT

    property: str = Field(min_length=1)
    goal: Literal["maximise", "minimise", "target"]
    window: tuple[float, float] | None = None
    units: str = ""
    threshold: float | None = None
    weight: float = Field(1.0, gt=0)

    @model_validator(mode="after")
    def _window_matches_goal(self) -> Objective:
        if self.property == SUN_PROPERTY and (self.goal != "maximise" or self.threshold not in (None, 1.0)):
            raise ValueError(
                f"objective {SUN_PROPERTY!r} (1 for a S.U.N. candidate, else 0) takes goal 'maximise' and no threshold, "
                f"got goal {self.goal!r}, threshold {self.threshold}"
            )
        if self.goal == "target":
            if self.window is None:
                raise ValueError(f"objective {self.property!r} with goal 'target' needs window: [low, high]")
            if not self.window[0] < self.window[1]:
                raise ValueError(f"window of {self.property!r} must have low < high, got {list(self.window)}")
        elif self.window is not None:
            raise ValueError(f"objective {self.property!r} with goal {self.goal!r} takes no window; use goal: target")
        return self

    def satisfied(self, value: float) -> bool:
        """Whether ``value`` (in ``units``) meets this objective's hit criterion."""
        if self.goal == "target":
            low, high = self.window or (float("-inf"), float("inf"))
            return low <= value <= high
        if self.property == SUN_PROPERTY:
            return value >= 1.0
        if self.threshold is None:
            return True
        return value >= self.threshold if self.goal == "maximise" else value <= self.threshold


class Budget(BaseModel):
    """How much a campaign spends: iterations, generated candidates and oracle calls per iteration."""

    model_config = _STRICT

    iterations: int = Field(3, ge=1)
    candidates_per_iteration: int = Field(32, ge=1)
    oracle_calls_per_iteration: int = Field(4, ge=1)


class SunConfig(BaseModel):
    """S.U.N. (stable, unique, novel) classification of evaluated candidates (:mod:`crystaloop.loop.sun`).

    Attributes:
        enabled: classify and report (``False``: reports carry no S.U.N. summary; a ``sun``
            objective then has no hits).
        stable_e_above_hull: stable when the ``ok`` e_above_hull is at most this, in eV/atom.
        strict_e_above_hull: the stricter threshold reported alongside (eV/atom, ≤
            ``stable_e_above_hull``), e.g. "S.U.N. at 0.1 / at 0.0".
        reference: datasets whose structures a novel candidate must not match; ``None`` → the
            diversity guard's reference (by default the generator's training split), ``[]`` → none.
        against_imported: also not novel when matching a candidate imported into the store
            (status ``imported``, e.g. by ``crystaloop data import``).
        max_comparisons: StructureMatcher calls per candidate and index at most (nearest of the
            same reduced formula first); tolerances are the diversity guard's.
    """

    model_config = _STRICT

    enabled: bool = True
    stable_e_above_hull: float = Field(0.1, ge=-1.0, le=10.0, description="eV/atom")
    strict_e_above_hull: float = Field(0.0, ge=-1.0, le=10.0, description="eV/atom")
    reference: tuple[str, ...] | None = None
    against_imported: bool = True
    max_comparisons: int = Field(24, ge=1)

    @model_validator(mode="after")
    def _strict_below_stable(self) -> SunConfig:
        if self.strict_e_above_hull > self.stable_e_above_hull:
            raise ValueError(
                f"strict_e_above_hull {self.strict_e_above_hull} eV/atom must not exceed stable_e_above_hull "
                f"{self.stable_e_above_hull} eV/atom"
            )
        return self


class SurrogateChoice(BaseModel):
    """One property surrogate: a shipped one by name, or a checkpoint path."""

    model_config = _STRICT

    kind: Literal["shipped", "checkpoint"] = "shipped"
    name: str | None = Field(None, description="shipped surrogate name, e.g. perov_5-dir_gap")
    path: str | None = None

    @model_validator(mode="after")
    def _source(self) -> SurrogateChoice:
        if self.kind == "shipped" and not self.name:
            raise ValueError("a shipped surrogate needs name (e.g. perov_5-dir_gap)")
        if self.kind == "checkpoint" and not self.path:
            raise ValueError("a checkpoint surrogate needs path")
        return self


class CampaignConfig(BaseModel):
    """A whole campaign; see the module docstring. ``store_url`` is left out of the hash."""

    model_config = _STRICT

    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.\-]+$")
    objectives: tuple[Objective, ...] = Field(min_length=1)
    constraints: Constraints = Constraints()
    budget: Budget = Budget()
    strategy: StrategyChoice = RandomConfig()
    guards: GuardsConfig = GuardsConfig()
    generator: GeneratorChoice = Field(
        DiffusionChoice(),
        description="left out: the template generator learned from perov_5/train (carbon_24/train when the constraints allow only C), "
                    "when the constraints name elements or chemical systems",
    )
    query: QueryConfig | None = Field(None, description="condition generation on a text or XRD query, direct or through the latent prior")
    surrogates: tuple[SurrogateChoice, ...] = ()
    oracle: OracleChoice = MLIPOracleChoice()
    sun: SunConfig = SunConfig()
    seed: int = 0
    store_url: str | None = None
    retrain_surrogate: bool = Field(
        True,
        description="refit the surrogate's residual GP on all labels every iteration; false: only after the residual watch flags over-prediction",
    )

    @model_validator(mode="before")
    @classmethod
    def _default_generator(cls, data: Any) -> Any:
        """A campaign without a ``generator`` section that names its chemistry (constraints'
        elements or chemical systems) gets the template generator, the one with the best strict
        fit on the held-out splits (bench_template): learned from ``carbon_24/train`` when only
        carbon is allowed, else ``perov_5/train``; compositions no template hosts fall back to
        that set's shipped diffusion model. Without a chemistry (and without ``query``, which
        needs a latent-reading model) the section stays required, as before."""
        if not isinstance(data, dict) or "generator" in data or data.get("query") is not None:
            return data
        try:
            constraints = Constraints.model_validate(data.get("constraints") or {})
        except ValidationError:
            return data  # reported by the field's own validation, with its location
        allowed = set(constraints.elements or ()) | {el for system in constraints.chemical_systems or () for el in system}
        if not allowed:
            return data
        from crystaloop.generator.symmetry.generator import TemplateChoice

        training = "carbon_24/train" if allowed == {"C"} else "perov_5/train"
        return {**data, "generator": TemplateChoice(training=training)}

    @model_validator(mode="after")
    def _distinct_objectives(self) -> CampaignConfig:
        names = [o.property for o in self.objectives]
        if len(set(names)) != len(names):
            raise ValueError(f"objectives name a property twice: {names}")
        unknown = sorted(set(self.strategy.condition_bounds) - {*names, "guidance_scale"})
        if unknown:
            raise ValueError(f"strategy.condition_bounds names {unknown}; allowed: the objectives' properties {names} and 'guidance_scale'")
        if self.query is not None and not isinstance(self.generator, DiffusionChoice):
            raise ValueError(f"query conditions a latent-reading diffusion generator; generator kind is {self.generator.kind!r} "
                             "(allowed with query: 'diffusion', e.g. checkpoint perov_5_multimodal)")
        allocation = self.strategy.allocation
        if allocation.kind != "fixed" and not isinstance(self.generator, CompositeChoice):
            raise ValueError(f"strategy.allocation kind {allocation.kind!r} moves the shares of a composite generator's arms; "
                             f"generator kind is {self.generator.kind!r} (allowed with it: 'fixed')")
        if isinstance(self.generator, CompositeChoice) and allocation.floor * len(self.generator.arms) > 1:
            raise ValueError(f"strategy.allocation.floor {allocation.floor} × {len(self.generator.arms)} arms exceeds 1; "
                             f"allowed: floor ≤ {1 / len(self.generator.arms):.3g}")
        return self

    @property
    def multi_objective(self) -> bool:
        return len(self.objectives) > 1

    def explicit_settings(self) -> dict[str, Any]:
        """The settings that differ from their defaults, as JSON values, with every ``kind`` kept:
        what identifies the campaign, and what a per-run override merges into (so switching a
        strategy's kind does not drag the old kind's default settings along)."""
        full = self.model_dump(mode="json")
        return _with_kinds(self.model_dump(mode="json", exclude_defaults=True), full)

    def config_hash(self) -> str:
        """16 hex digits of sha256 over the canonical JSON of everything but ``store_url``, with
        fields at their defaults left out: spelling a default out does not change a campaign's
        identity, and a setting added in a later release (with a default) leaves the hashes of
        existing campaigns, and so their resumption, alone."""
        payload = self.explicit_settings()
        payload.pop("store_url", None)
        return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]

    def iteration_seed(self, iteration: int, stream: int = 0) -> int:
        """A seed for ``iteration`` derived from :attr:`seed` (independent streams per use)."""
        import numpy as np

        return int(np.random.SeedSequence([self.seed, iteration, stream]).generate_state(1)[0])


def _with_kinds(lean: Any, full: Any) -> Any:
    """``lean`` (a dump without defaults) with every ``kind`` of ``full`` put back: a kind is a
    config's identity even where it is its class's default (``{kind: al}`` is not ``random``)."""
    if isinstance(lean, dict) and isinstance(full, dict):
        out = {k: _with_kinds(v, full[k]) for k, v in lean.items()}
        if "kind" in full:
            out["kind"] = full["kind"]
        return out
    if isinstance(lean, list) and isinstance(full, list) and len(lean) == len(full):
        return [_with_kinds(a, b) for a, b in zip(lean, full, strict=True)]
    return lean


def check_objectives_provided(objectives: tuple[Objective, ...], *, measured: tuple[str, ...] | list[str], predicted: tuple[str, ...] | list[str]) -> None:
    """Raise ``ValueError`` naming the first objective that neither the oracle measures nor a
    surrogate predicts (``sun`` is derived from the measurements), and the allowed properties."""
    allowed = [*dict.fromkeys([*measured, *predicted, SUN_PROPERTY])]
    for objective in objectives:
        if objective.property not in allowed:
            raise ValueError(
                f"objective {objective.property!r} is neither measured by the oracle nor predicted by a surrogate; "
                f"allowed: {', '.join(allowed)} (oracle.measure: {list(measured)}, surrogates: {list(predicted)})"
            )


def check_config_objectives(config: CampaignConfig) -> None:
    """Raise ``ValueError`` if an objective is neither measured by the oracle nor predicted by a
    configured surrogate (or the S.U.N. indicator). What an oracle can measure is checked by its
    own config; shipped surrogates are known by name; with a checkpoint surrogate the check waits
    for :func:`crystaloop.loop.components.check_objectives`, once it has loaded."""
    if any(s.kind != "shipped" for s in config.surrogates):
        return
    from crystaloop.surrogates.shipped import SHIPPED_SURROGATES

    predicted = [SHIPPED_SURROGATES[s.name][1] for s in config.surrogates if s.name in SHIPPED_SURROGATES]
    check_objectives_provided(config.objectives, measured=config.oracle.measure, predicted=predicted)


def load_campaign_config(path: str | Path) -> CampaignConfig:
    """Read a campaign YAML file (the only place YAML is parsed).

    Raises:
        CrystaloopError: the file is missing, not YAML, or its content is not a valid campaign
            (one line per bad field, naming the value), or an objective nothing configured can
            provide (:func:`check_config_objectives`).
    """
    import yaml

    path = Path(path)
    if not path.is_file():
        raise CrystaloopError(f"no campaign config at {path}")
    try:
        payload = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise CrystaloopError(f"{path} is not valid YAML: {exc}") from None
    if not isinstance(payload, dict):
        raise CrystaloopError(f"{path} must hold a mapping of campaign settings, got {type(payload).__name__}")
    try:
        config = CampaignConfig.model_validate(payload)
    except ValidationError as exc:
        raise CrystaloopError(f"{path}: {describe_validation_error(exc)}") from None
    try:
        check_config_objectives(config)
    except ValueError as exc:
        raise CrystaloopError(f"{path}: {exc}") from None
    return config
