"""A composite generator: several generator arms, each making a share of every batch.

A campaign names its arms and their default shares::

    generator:
      kind: composite
      arms:
        - {name: sub, share: 0.5, generator: {kind: substitution, prototypes: true}}
        - {name: rss, share: 0.5, generator: {kind: random_search, max_atoms: 12}}

``sample(n, condition, seed=s, shares=...)`` splits ``n`` over the arms by the shares passed in
(the arms' configured shares when ``None``), so the campaign engine can move them between
iterations (:mod:`crystaloop.loop.allocation`), and writes the arm's name into every candidate's
``provenance.arm``. An arm that cannot honour the condition (no structure of the library hosts the
composition) is logged and skipped; only when every arm asked to contribute fails does the call raise.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import replace
from functools import lru_cache
from typing import Any, Literal

import numpy as np
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializeAsAny,
    TypeAdapter,
    ValidationError,
    field_validator,
    model_validator,
)

from crystaloop.data.errors import CrystaloopError
from crystaloop.data.records import Candidate, Condition
from crystaloop.generator.base import Generator, GeneratorSettings

__all__ = ["CompositeGenerator", "CompositeChoice", "CompositeArm", "apportion", "split_by_batch", "normalise_shares"]

logger = logging.getLogger(__name__)


def normalise_shares(shares: Mapping[str, float], arms: Sequence[str]) -> dict[str, float]:
    """``shares`` over ``arms`` summing to 1 (arms missing from ``shares`` get 0).

    Raises:
        CrystaloopError: a share names an unknown arm, is negative or not finite, or all are 0.
    """
    unknown = sorted(set(shares) - set(arms))
    if unknown:
        raise CrystaloopError(f"shares name unknown arm(s) {unknown}; arms: {', '.join(arms)}")
    values = np.array([float(shares.get(a, 0.0)) for a in arms])
    if not np.all(np.isfinite(values)) or np.any(values < 0) or values.sum() <= 0:
        raise CrystaloopError(f"shares must be finite, ≥ 0 and not all 0; got {dict(shares)}")
    return {a: float(v) for a, v in zip(arms, values / values.sum(), strict=True)}


def apportion(n: int, shares: Mapping[str, float]) -> dict[str, int]:
    """Split ``n`` items over the arms by ``shares`` (normalised), largest remainders first, ties
    to the earlier arm: counts sum to ``n`` and each is within 1 of ``n · share``."""
    arms = list(shares)
    weights = normalise_shares(shares, arms)
    exact = np.array([n * weights[a] for a in arms])
    counts = np.floor(exact).astype(int)
    order = np.argsort(-(exact - counts), kind="stable")
    for j in order[: n - int(counts.sum())]:
        counts[j] += 1
    return {a: int(c) for a, c in zip(arms, counts, strict=True)}


def split_by_batch(shares: Mapping[str, float], sizes: Sequence[int]) -> list[dict[str, int]]:
    """Arm counts for each of several batches of the given ``sizes``: the arms' totals are
    ``apportion(sum(sizes), shares)`` and each batch gets a near-proportional run of an
    interleaved sequence (at each slot the arm furthest behind its share), so a small share
    survives batches too small to hold it on their own. Pass a batch's counts as its shares."""
    total = int(sum(sizes))
    targets = apportion(total, shares) if total else dict.fromkeys(shares, 0)
    placed = dict.fromkeys(targets, 0)
    sequence = []
    for slot in range(total):
        arm = max(targets, key=lambda a: (targets[a] * (slot + 1) / total - placed[a], -list(targets).index(a)))
        placed[arm] += 1
        sequence.append(arm)
    out, start = [], 0
    for size in sizes:
        chunk = sequence[start:start + size]
        out.append({a: chunk.count(a) for a in targets})
        start += size
    return out


def _arm_seed(seed: int, arm: int) -> int:
    return int(np.random.SeedSequence([seed, 7919, arm]).generate_state(1)[0])


def _for_arm(condition: Condition | None, generator: Generator) -> Condition | None:
    """The condition without the property targets an arm cannot condition on (an arm without a
    ``properties`` list gets it as is), as the campaign engine does for a single generator."""
    known = getattr(generator, "properties", None)
    if condition is None or known is None or not condition.properties:
        return condition
    return condition.model_copy(update={"properties": {k: v for k, v in condition.properties.items() if k in known}})


class CompositeGenerator:
    """Generator arms sampled by shares (see the module docstring).

    Args:
        arms: ``(name, generator)`` pairs, names distinct.
        shares: default share of each arm (normalised; every arm named).
        name: component name (each candidate keeps its arm generator's own provenance, plus ``arm``).

    Attributes:
        last_counts: arm → ``(asked, made)`` of the latest ``sample`` call.
    """

    def __init__(self, arms: Sequence[tuple[str, Generator]], shares: Mapping[str, float], *, name: str = "composite") -> None:
        names = [a for a, _ in arms]
        if not arms or len(set(names)) != len(names):
            raise CrystaloopError(f"a composite generator needs arms with distinct names, got {names}")
        self.arms = dict(arms)
        self.shares = normalise_shares(shares, names)
        self.name = name
        self.last_counts: dict[str, tuple[int, int]] = {}
        self.last_shortfall = 0
        self.last_dropped = 0

    @property
    def arm_names(self) -> tuple[str, ...]:
        return tuple(self.arms)

    @property
    def training_dataset(self) -> str | None:
        """The first training split an arm records (novelty reference; see loop.components.training_split)."""
        for generator in self.arms.values():
            spec = getattr(generator, "training_dataset", None)
            if isinstance(spec, str) and spec:
                return spec
        return None

    def sample(self, n: int, condition: Condition | None = None, *, seed: int, shares: Mapping[str, float] | None = None) -> list[Candidate]:
        """About ``n`` candidates, ``apportion(n, shares)`` asked of each arm (an arm may return
        fewer, e.g. when its outputs collapse to one canonical hash), each marked with its arm.

        Raises:
            CrystaloopError: ``n < 1``, bad shares, or every arm asked for candidates failed
                (the message names each arm's error).
        """
        if n < 1:
            raise CrystaloopError(f"n must be ≥ 1, got {n}")
        weights = normalise_shares(self.shares if shares is None else shares, self.arm_names)
        counts = apportion(n, weights)
        out: list[Candidate] = []
        errors: dict[str, str] = {}
        self.last_counts = {}
        for j, (arm, generator) in enumerate(self.arms.items()):
            if counts[arm] == 0:
                self.last_counts[arm] = (0, 0)
                continue
            try:
                made = generator.sample(counts[arm], _for_arm(condition, generator), seed=_arm_seed(seed, j))
            except CrystaloopError as exc:
                logger.warning("composite arm %s made nothing for %s: %s", arm, condition, exc)
                errors[arm] = str(exc)
                made = []
            self.last_counts[arm] = (counts[arm], len(made))
            out.extend(replace(c, provenance=c.provenance.model_copy(update={"arm": arm}), condition=condition) for c in made)
        if not out:
            raise CrystaloopError(f"no arm of the composite generator made a candidate: {errors}")
        self.last_shortfall = n - len(out)
        return out


@lru_cache(maxsize=1)
def _arm_adapter() -> TypeAdapter[Any]:
    """The union of every generator kind but ``composite`` (built on first use: the registry
    imports this module)."""
    from crystaloop.data.kinds import kind_union
    from crystaloop.generator.registry import GENERATOR_CHOICES

    kinds = {k: v for k, v in GENERATOR_CHOICES.items() if k != "composite"}
    return TypeAdapter(kind_union(kinds, default="diffusion"))


class CompositeArm(BaseModel):
    """One arm of a composite generator.

    Attributes:
        name: the arm's name, written into ``provenance.arm`` of what it makes.
        share: its default share of each batch (normalised over the arms; ≥ 0).
        generator: any generator config but ``composite`` (``{kind: substitution, ...}``).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=r"^[A-Za-z0-9_.\-]+$", max_length=40)
    share: float = Field(ge=0)
    generator: SerializeAsAny[GeneratorSettings]

    @field_validator("generator", mode="before")
    @classmethod
    def _arm_generator(cls, value: Any) -> Any:
        if isinstance(value, GeneratorSettings) and value.kind != "composite":
            return value
        if isinstance(value, CompositeChoice) or (isinstance(value, Mapping) and value.get("kind") == "composite"):
            raise ValueError("an arm's generator cannot itself be composite")
        try:
            return _arm_adapter().validate_python(value)
        except ValidationError:  # re-raised as is: pydantic keeps its locations under this field
            raise


class CompositeChoice(GeneratorSettings):
    """A campaign's ``composite`` generator: ``arms`` (names distinct, shares not all 0); see the
    module docstring. The engine passes each iteration's shares (``strategy.allocation``)."""

    kind: Literal["composite"] = "composite"
    arms: tuple[CompositeArm, ...]

    @model_validator(mode="after")
    def _distinct(self) -> CompositeChoice:
        names = [a.name for a in self.arms]
        if not names:
            raise ValueError("generator kind 'composite' needs arms: [{name, share, generator}, ...]")
        if len(set(names)) != len(names):
            raise ValueError(f"composite arms need distinct names, got {names}")
        if sum(a.share for a in self.arms) <= 0:
            raise ValueError(f"composite arm shares must not all be 0, got {[a.share for a in self.arms]}")
        return self

    @property
    def arm_names(self) -> tuple[str, ...]:
        return tuple(a.name for a in self.arms)

    @property
    def shares(self) -> dict[str, float]:
        """The configured shares, normalised."""
        return normalise_shares({a.name: a.share for a in self.arms}, self.arm_names)

    def build(self) -> CompositeGenerator:
        return CompositeGenerator([(a.name, a.generator.build()) for a in self.arms], self.shares)
