"""What a campaign runs on, built by name from plain registries.

* :data:`GENERATORS` — ``diffusion`` (the trained model, imported lazily), ``dataset-replay``,
  ``substitution`` and ``random_search`` (no training; :mod:`crystaloop.generator.substitution`,
  :mod:`crystaloop.generator.random_search`).
* surrogates — shipped ensembles by name or checkpoints by path, combined by :class:`SurrogateSet`.
* :data:`ORACLE_KINDS` — the MLIPs of :mod:`crystaloop.surrogates.oracles` (``chgnet``,
  ``sevennet``, ``emt``) wrapped by :class:`MLIPEvaluator` (relaxed energy, e_above_hull from
  :class:`~crystaloop.surrogates.hull.EnergyAboveHull`, bulk modulus from the EOS fit), and
  ``replay`` (:class:`~crystaloop.loop.replay.ReplayOracle`).

An unknown name raises :class:`~crystaloop.data.errors.UnknownComponentError` listing the valid ones.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from crystaloop.data.crystal import Crystal
from crystaloop.data.errors import CrystaloopError, UnknownComponentError
from crystaloop.data.records import Measurement, Prediction
from crystaloop.generator.base import Generator
from crystaloop.loop.config import (
    MLIP_ORACLES,
    MLIP_PROPERTIES,
    CampaignConfig,
    GeneratorChoice,
    OracleChoice,
    check_objectives_provided,
)
from crystaloop.loop.guards import Guard, StructureIndex, build_guards
from crystaloop.loop.replay import DatasetReplayGenerator, ReplayOracle
from crystaloop.loop.strategies import Strategy, make_strategy

__all__ = [
    "Evaluator",
    "MLIPEvaluator",
    "SurrogateSet",
    "Components",
    "GENERATORS",
    "ORACLE_KINDS",
    "make_generator",
    "make_evaluator",
    "training_split",
    "reference_structures",
    "build_components",
    "check_objectives",
]

logger = logging.getLogger(__name__)


class Evaluator(Protocol):
    """Measures the campaign's properties of one crystal with one oracle."""

    name: str
    properties: tuple[str, ...]

    def measure(self, crystal: Crystal) -> list[Measurement]: ...


class MLIPEvaluator:
    """An ASE oracle measuring ``energy_per_atom`` (relaxed), ``e_above_hull`` and ``bulk_modulus``."""

    def __init__(self, oracle, properties: Sequence[str], missing_reference: str = "fail", phases=None, require_same_structure: bool = True) -> None:  # noqa: ANN001 - an ASEOracle, a PhaseConfig
        unknown = [p for p in properties if p not in MLIP_PROPERTIES]
        if unknown:
            raise UnknownComponentError("MLIP property", unknown[0], MLIP_PROPERTIES)
        from crystaloop.surrogates.hull import EnergyAboveHull

        self.oracle = oracle
        self.name = oracle.name
        self.properties = tuple(properties)
        self.hull = EnergyAboveHull(oracle, missing_reference=missing_reference, phases=phases, require_same_structure=require_same_structure)

    def measure(self, crystal: Crystal) -> list[Measurement]:
        relaxed = self.oracle.relax([crystal])[0]
        energy = relaxed.to_measurement(self.name)
        out = [energy] if "energy_per_atom" in self.properties else []
        if "e_above_hull" in self.properties:
            if relaxed.status == "unconverged":  # its value stays, marked, for inspection
                out += [_unconverged(m, relaxed.reason) for m in self.hull.e_above_hull([crystal], [relaxed.energy_per_atom])]
            else:  # with the relaxation, so a structure that fell apart is no stability verdict
                out += self.hull.e_above_hull([crystal], relaxations=[relaxed])
        if "bulk_modulus" in self.properties:
            from crystaloop.surrogates.eos import bulk_modulus

            out.append(bulk_modulus(crystal, self.oracle))
        return out


def _unconverged(measurement: Measurement, why: str) -> Measurement:
    """``measurement`` (from an unconverged relaxation's energy) marked ``unconverged``: its
    value stays for inspection and never counts as a hull distance, a hit or a stable verdict."""
    if measurement.status != "ok":
        return measurement
    reason = f"from an unconverged relaxation ({why})"
    return Measurement.model_validate({**measurement.model_dump(), "status": "unconverged", "reason": reason})


@dataclass
class SurrogateSet:
    """Several property ensembles side by side: predictions and embeddings concatenated, the
    OOD score the largest of the members'."""

    members: list = field(default_factory=list)

    @property
    def properties(self) -> tuple[str, ...]:
        return tuple(p for m in self.members for p in m.properties)

    @property
    def name(self) -> str:
        return "+".join(m.name for m in self.members)

    def predict(self, crystals: Sequence[Crystal]) -> Prediction:
        parts = [m.predict(crystals) for m in self.members]
        return Prediction(
            mean=np.concatenate([p.mean for p in parts], axis=1),
            std=np.concatenate([p.std for p in parts], axis=1),
            properties=tuple(q for p in parts for q in p.properties),
            units=tuple(u for p in parts for u in p.units),
            model=self.name,
        )

    def embed(self, crystals: Sequence[Crystal]) -> np.ndarray:
        return np.concatenate([m.embed(crystals) for m in self.members], axis=1)

    def ood_score(self, crystals: Sequence[Crystal]) -> np.ndarray:
        scores = [m.ood_score(crystals) for m in self.members if m.reference_embeddings is not None]
        return np.max(np.stack(scores), axis=0) if scores else np.ones(len(crystals))


def _diffusion(choice: GeneratorChoice) -> Generator:
    import importlib

    try:
        module = importlib.import_module("crystaloop.generator.diffusion.generator")
    except ImportError as exc:
        raise CrystaloopError(f"the diffusion generator is not available in this build ({exc})") from None
    if not choice.checkpoint:
        raise CrystaloopError("generator kind 'diffusion' needs checkpoint: <shipped name or path to a trained model>")
    from crystaloop.generator.config import SamplerConfig
    from crystaloop.generator.shipped import resolve_generator_checkpoint

    path = resolve_generator_checkpoint(choice.checkpoint)
    settings = {k: v for k, v in {"steps": choice.steps, "method": choice.method}.items() if v is not None}
    sampler = SamplerConfig(**settings) if settings else None
    return module.DiffusionGenerator.from_checkpoint(path, sampler)


def _dataset_replay(choice: GeneratorChoice) -> Generator:
    from crystaloop.data.datasets import load_dataset

    if not choice.dataset:
        raise CrystaloopError("generator kind 'dataset-replay' needs dataset: <spec such as perov_5/val>")
    return DatasetReplayGenerator.from_dataset(load_dataset(choice.dataset), perturb=choice.perturb)


def _substitution(choice: GeneratorChoice) -> Generator:
    from crystaloop.generator.substitution import SubstitutionGenerator, load_library

    crystals, labels = load_library(choice.library)
    datasets = [spec for spec in choice.library if not spec.startswith("store:")]
    limit = {"max_atoms": choice.max_atoms} if choice.max_atoms is not None else {}
    return SubstitutionGenerator(crystals, labels=labels, prototypes=choice.prototypes, partial=choice.partial,
                                 exclude=choice.exclude, temperature=choice.temperature,
                                 training_dataset=datasets[0] if len(datasets) == 1 else None, **limit)


def _random_search(choice: GeneratorChoice) -> Generator:
    from crystaloop.generator.random_search import RandomSearchGenerator

    settings = {k: v for k, v in {"max_atoms": choice.max_atoms, "space_groups": choice.space_groups,
                                  "volume_factor": choice.volume_factor}.items() if v is not None}
    return RandomSearchGenerator(exclude=choice.exclude, **settings)


GENERATORS: dict[str, Callable[[GeneratorChoice], Generator]] = {
    "diffusion": _diffusion,
    "dataset-replay": _dataset_replay,
    "substitution": _substitution,
    "random_search": _random_search,
}


def make_generator(choice: GeneratorChoice) -> Generator:
    if choice.kind not in GENERATORS:
        raise UnknownComponentError("generator", choice.kind, GENERATORS)
    return GENERATORS[choice.kind](choice)


ORACLE_KINDS = (*MLIP_ORACLES, "replay")


def make_evaluator(choice: OracleChoice) -> Evaluator:
    if choice.kind not in ORACLE_KINDS:
        raise UnknownComponentError("oracle", choice.kind, ORACLE_KINDS)
    if choice.kind == "replay":
        from crystaloop.data.datasets import load_dataset

        if not choice.dataset:
            raise CrystaloopError("oracle kind 'replay' needs dataset: <spec such as perov_5/val>")
        return ReplayOracle(load_dataset(choice.dataset), choice.measure)
    from crystaloop.surrogates.oracles import OracleConfig, RelaxConfig, oracle_from_config

    config = OracleConfig(kind=choice.kind, relax=RelaxConfig(fmax=choice.fmax, max_steps=choice.max_steps), cache_url=choice.cache_url)
    return MLIPEvaluator(
        oracle_from_config(config), choice.measure, missing_reference=choice.missing_reference, phases=choice.competing_phases,
        require_same_structure=choice.require_same_structure,
    )


def load_surrogates(config: CampaignConfig) -> SurrogateSet | None:
    """The configured surrogates, or ``None`` when there are none."""
    if not config.surrogates:
        return None
    from crystaloop.surrogates.ensemble import PropertyEnsemble
    from crystaloop.surrogates.shipped import shipped_surrogate_path

    members = []
    for choice in config.surrogates:
        path = shipped_surrogate_path(choice.name) if choice.kind == "shipped" else choice.path
        members.append(PropertyEnsemble.load(path))
    return SurrogateSet(members)


def training_split(generator: Generator) -> str | None:
    """The dataset spec a generator was trained on (``perov_5/train``), where it records one:
    a ``training_dataset`` attribute, else the diffusion checkpoint's ``config.dataset``."""
    spec = getattr(generator, "training_dataset", None)
    if spec is None:
        spec = getattr(getattr(getattr(generator, "model", None), "config", None), "dataset", None)
    return spec if isinstance(spec, str) and spec else None


def reference_structures(config: CampaignConfig, generator: Generator) -> StructureIndex | None:
    """The structures a candidate must not copy to count as novel: ``guards.diversity.reference``,
    or (``None`` there) the generator's training split; ``None`` when there are none or the
    diversity guard is off."""
    diversity = config.guards.diversity
    if not diversity.enabled:
        return None
    specs = diversity.reference
    if specs is None:
        split = training_split(generator)
        specs = (split,) if split is not None else ()
        if split is None:
            logger.info("generator %s records no training split; novelty is checked against the campaign only", getattr(generator, "name", "?"))
    return StructureIndex.from_datasets(specs) if specs else None


@dataclass
class Components:
    """Everything :func:`crystaloop.loop.campaign.run_iteration` calls.

    Attributes:
        known_ids: extra canonical hashes the diversity guard treats as duplicates.
        reference: known structures outside the campaign (the generator's training split);
            a candidate matching one is "not novel" (:func:`reference_structures`).
        cache: per-process memo of derived objects (the online surrogate of an iteration),
            keyed by everything they depend on.
    """

    generator: Generator
    evaluator: Evaluator
    strategy: Strategy
    guards: list[Guard]
    surrogate: SurrogateSet | None = None
    known_ids: set[str] = field(default_factory=set)
    reference: StructureIndex | None = None
    cache: dict = field(default_factory=dict, repr=False)


def check_objectives(config: CampaignConfig, evaluator: Evaluator, surrogate: SurrogateSet | None) -> None:
    """Raise :class:`CrystaloopError` if an objective is neither measured by ``evaluator`` nor
    predicted by ``surrogate`` (the loaded components, checkpoints included), naming the allowed ones."""
    predicted = surrogate.properties if surrogate is not None else ()
    try:
        check_objectives_provided(config.objectives, measured=evaluator.properties, predicted=predicted)
    except ValueError as exc:
        raise CrystaloopError(f"campaign {config.name}: {exc}") from None


def build_components(config: CampaignConfig) -> Components:
    """Resolve every component the config names (weights and reference structures load here);
    the objectives are checked against what the oracle and surrogates provide before anything
    else loads."""
    evaluator = make_evaluator(config.oracle)
    surrogate = load_surrogates(config)
    check_objectives(config, evaluator, surrogate)
    generator = make_generator(config.generator)
    return Components(
        generator=generator,
        evaluator=evaluator,
        strategy=make_strategy(config),
        guards=build_guards(config.guards),
        surrogate=surrogate,
        reference=reference_structures(config, generator),
    )
