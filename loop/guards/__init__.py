"""Guards: validity, diversity, surrogate exploitation, synthesizability (one port, one verdict each).

``build_guards(config)`` gives the guards that run before scoring (constraints, validity,
synthesizability, diversity) and those after (exploitation, which reads the predictions).
"""

from __future__ import annotations

from crystaloop.loop.config import GuardsConfig
from crystaloop.loop.guards.base import Guard, GuardContext, ScreenResult, screen
from crystaloop.loop.guards.diversity import DiversityGuard, collapse_report
from crystaloop.loop.guards.exploitation import ExploitationGuard, residual_watch
from crystaloop.loop.guards.fingerprints import fingerprint, fingerprints, vendi_score
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
    "SynthesizabilityGuard",
    "collapse_report",
    "residual_watch",
    "fingerprint",
    "fingerprints",
    "vendi_score",
    "build_guards",
]


def build_guards(config: GuardsConfig) -> tuple[list[Guard], list[Guard]]:
    """The enabled guards as (before scoring, after scoring), each in the order they run.

    Before scoring: constraints, validity, synthesizability, diversity (cheap, need no model;
    diversity last so only candidates that passed the rest are kept for comparison). After
    scoring: exploitation, which reads the surrogate's std and OOD score.
    """
    pre: list[Guard] = [ConstraintGuard()]
    if config.validity.enabled:
        pre.append(ValidityGuard(config.validity))
    if config.synthesizability.enabled:
        pre.append(SynthesizabilityGuard(config.synthesizability))
    if config.diversity.enabled:
        pre.append(DiversityGuard(config.diversity))
    post: list[Guard] = [ExploitationGuard(config.exploitation)] if config.exploitation.enabled else []
    return pre, post
