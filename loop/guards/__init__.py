"""Guards: validity, diversity, surrogate exploitation, synthesizability (one port, one verdict each).

Each guard's module holds the guard and its config (a pydantic model with ``enabled``).
:data:`GUARDS` is the one list of configurable guards, in the order they run after the
constraint guard, and :class:`GuardsConfig` (the campaign's ``guards`` section) has one field
per entry, of that guard's config type, plus the collapse monitor's; ``build_guards(config)``
gives the enabled ones. Adding a guard touches its new module and this one. A guard with
``context_free = True`` needs no predictions or history, so the loop also runs it before
scoring (nothing is predicted for a candidate it refuses).
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from crystaloop.loop.collapse import CollapseMonitorConfig
from crystaloop.loop.guards.base import Guard, GuardContext, ScreenResult, screen
from crystaloop.loop.guards.diversity import DiversityGuard, DiversityGuardConfig, collapse_report
from crystaloop.loop.guards.exploitation import (
    ExploitationGuard,
    ExploitationGuardConfig,
    ResidualHistory,
    residual_watch,
)
from crystaloop.loop.guards.fingerprints import fingerprint, fingerprints, selection_features, vendi_score
from crystaloop.loop.guards.novelty import Matcher, StructureIndex, StructureMatch, neighbour_profile
from crystaloop.loop.guards.synthesizability import SynthesizabilityGuard, SynthesizabilityGuardConfig
from crystaloop.loop.guards.validity import ConstraintGuard, ValidityGuard, ValidityGuardConfig

__all__ = [
    "Guard",
    "GuardContext",
    "ScreenResult",
    "screen",
    "ConstraintGuard",
    "ValidityGuard",
    "DiversityGuard",
    "ExploitationGuard",
    "ResidualHistory",
    "SynthesizabilityGuard",
    "collapse_report",
    "residual_watch",
    "fingerprint",
    "fingerprints",
    "selection_features",
    "vendi_score",
    "StructureIndex",
    "StructureMatch",
    "Matcher",
    "neighbour_profile",
    "ValidityGuardConfig",
    "DiversityGuardConfig",
    "ExploitationGuardConfig",
    "SynthesizabilityGuardConfig",
    "CollapseMonitorConfig",
    "GUARDS",
    "GuardsConfig",
    "build_guards",
]

GUARDS: dict[str, type[ValidityGuard] | type[SynthesizabilityGuard] | type[ExploitationGuard] | type[DiversityGuard]] = {
    "validity": ValidityGuard,
    "synthesizability": SynthesizabilityGuard,
    "exploitation": ExploitationGuard,  # reads the predictions in the context
    "diversity": DiversityGuard,  # last: only candidates that passed everything else are kept for comparison
}
"""Guard name (= its field of :class:`GuardsConfig`) → its class, taking that config; in run order."""


class GuardsConfig(BaseModel):
    """The campaign's ``guards`` section: one field per entry of :data:`GUARDS` (same name, that
    guard's config) and the collapse monitor (:mod:`crystaloop.loop.collapse`)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    validity: ValidityGuardConfig = ValidityGuardConfig()
    diversity: DiversityGuardConfig = DiversityGuardConfig()
    exploitation: ExploitationGuardConfig = ExploitationGuardConfig()
    synthesizability: SynthesizabilityGuardConfig = SynthesizabilityGuardConfig()
    collapse: CollapseMonitorConfig = CollapseMonitorConfig()


def build_guards(config: GuardsConfig) -> list[Guard]:
    """The enabled guards in the order they run: constraints, validity, synthesizability,
    exploitation (reads the predictions in the context), diversity (last, so only candidates that
    passed everything else are kept for comparison)."""
    guards: list[Guard] = [ConstraintGuard()]
    for name, guard in GUARDS.items():
        settings = getattr(config, name)
        if settings.enabled:
            guards.append(guard(settings))  # type: ignore[arg-type]  # each class takes its own field's config
    return guards
