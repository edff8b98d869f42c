"""Guards: validity, diversity, surrogate exploitation, synthesizability (one port, one verdict each).

``build_guards(config)`` gives the enabled guards in the order they run.
"""

from __future__ import annotations

from crystaloop.loop.config import GuardsConfig
from crystaloop.loop.guards.base import Guard, GuardContext, ScreenResult, screen
from crystaloop.loop.guards.diversity import DiversityGuard, collapse_report
from crystaloop.loop.guards.exploitation import ExploitationGuard, ResidualHistory, residual_watch
from crystaloop.loop.guards.fingerprints import fingerprint, fingerprints, vendi_score
from crystaloop.loop.guards.novelty import Matcher, StructureIndex, StructureMatch, neighbour_profile
from crystaloop.loop.guards.synthesizability import SynthesizabilityGuard
from crystaloop.loop.guards.validity import ConstraintGuard, ValidityGuard

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
    "vendi_score",
    "StructureIndex",
    "StructureMatch",
    "Matcher",
    "neighbour_profile",
    "build_guards",
]


def build_guards(config: GuardsConfig) -> list[Guard]:
    """The enabled guards in the order they run: constraints, validity, synthesizability,
    exploitation (reads the predictions in the context), diversity (last, so only candidates that
    passed everything else are kept for comparison)."""
    guards: list[Guard] = [ConstraintGuard()]
    if config.validity.enabled:
        guards.append(ValidityGuard(config.validity))
    if config.synthesizability.enabled:
        guards.append(SynthesizabilityGuard(config.synthesizability))
    if config.exploitation.enabled:
        guards.append(ExploitationGuard(config.exploitation))
    if config.diversity.enabled:
        guards.append(DiversityGuard(config.diversity))
    return guards
