"""`TemplateGenerator` (``generator.kind: template``): composition → templates from the learned
prior → free coordinates and lattice from the training crystal that voted for each template,
lattice rescaled to a volume estimate, optionally redrawn by a trained diffusion model projected
onto the template (``free_parameters: diffusion``, :class:`~crystaloop.generator.symmetry.refine.TemplateDiffusion`);
the symmetry of every output is exact by construction either way.

For each of the ``n`` requested samples the prior gives a distinct template
(:class:`~crystaloop.generator.symmetry.prior.TemplatePrior`); the sample copies the best-voting
training crystal's orbit representatives and lattice parameters, puts the query's elements on
its orbits (the vote's assignment) and scales the lattice lengths isotropically so the cell
volume is ``V_train × V̂(query) / V̂(train)`` (``V̂``: per-element volumes fitted on the same split,
:class:`~crystaloop.generator.symmetry.descriptors.VolumeModel`; the ratio keeps the source's
packing). When the prior has fewer than ``n`` templates the remaining samples take the next
voters of the same templates (other free parameters), and ``last_shortfall`` counts what is
still missing. With modal voting (``voting: modal``, the campaign default;
:mod:`~crystaloop.generator.symmetry.modes`) the samples are instead the structures most of the
votes agree on, heaviest first, each from its nearest voter. Outputs have exactly the condition's per-element counts (the primitive or
conventional cell of the template, whichever has them). With a refiner, the copied parameters
are the starting point of the projected reverse process; a template with an element outside the
diffusion model's vocabulary keeps its copied parameters, and the log says so.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Literal, TypeAlias

import numpy as np
from pydantic import Field

from crystaloop import __version__
from crystaloop.data.crystal import Crystal
from crystaloop.data.errors import CrystaloopError
from crystaloop.data.records import Candidate, Condition, Provenance
from crystaloop.generator.base import Generator, GeneratorSettings
from crystaloop.generator.symmetry.descriptors import VolumeModel
from crystaloop.generator.symmetry.modes import ModalVoting
from crystaloop.generator.symmetry.prior import NoTemplateError, TemplatePrior, TemplateProposal
from crystaloop.generator.symmetry.representation import Orbit, SymmetricCrystal, describe_training

if TYPE_CHECKING:  # torch is imported only when a refiner is built
    from crystaloop.generator.symmetry.refine import TemplateDiffusion

__all__ = ["TemplateGenerator", "TemplateChoice", "FitCriterion"]

logger = logging.getLogger(__name__)

FitCriterion: TypeAlias = Literal["match", "template"]
"""What the prior's leave-one-out fit rewards: a structure match of the top template, or its exact template."""


class TemplateGenerator:
    """Crystal structure prediction by template prior + a training crystal's free parameters.

    Args:
        prior: the fitted template prior.
        volumes: per-element volumes fitted on the same training split.
        temperature: 0 → the ``n`` most probable templates; > 0 → sampled (see the prior).
        training_dataset: dataset spec the prior was fitted on (novelty reference for the loop).
        name: component name written into provenance.
        refiner: redraws each sample's free parameters (``None``: the copied ones are kept).
        voting: modal voting settings (:mod:`.modes`: samples are the most supported structures
            among the votes); ``None``: the most probable templates, each from its nearest voter.
    """

    def __init__(self, prior: TemplatePrior, volumes: VolumeModel, *, temperature: float = 0.0,
                 training_dataset: str | None = None, name: str = "template", refiner: TemplateDiffusion | None = None,
                 voting: ModalVoting | None = None, fallback: Generator | None = None) -> None:
        if temperature < 0:
            raise CrystaloopError(f"temperature must be ≥ 0, got {temperature}")
        self.prior, self.volumes, self.temperature = prior, volumes, float(temperature)
        self.training_dataset, self.name, self.refiner, self.voting = training_dataset, name, refiner, voting
        self.fallback = fallback
        self.last_shortfall = 0
        self.last_dropped = 0  # the CLI's count of collapsed samples; this generator drops none

    @classmethod
    def from_crystals(cls, crystals: Sequence[Crystal], *, temperature: float = 0.0, criterion: FitCriterion = "match",
                      loo_rows: int = 100, seed: int = 0, training_dataset: str | None = None,
                      use_cache: bool = True) -> TemplateGenerator:
        """Describe ``crystals``, fit the volume model and the prior on them (see :meth:`from_descriptions`).

        A crystal with no symmetric description (spglib fails at every tolerance) is skipped and logged.
        With ``use_cache`` the descriptions and the prior's fit are read from (or written to) the
        template-fit cache (:mod:`.fit_cache`), keyed by the crystals and ``criterion``, ``loo_rows``
        and ``seed``; a hit skips spglib and the leave-one-out fit and builds the same prior.
        """
        from crystaloop.generator.symmetry.fit_cache import CachedFit, fit_key, load_fit, save_fit

        key = fit_key(crystals, {"criterion": criterion, "loo_rows": loo_rows, "seed": seed}) if use_cache else None
        cached = load_fit(key) if key is not None else None
        if cached is not None:
            logger.info("template generator: prior fit read from the cache (%d crystals)", len(cached.described))
            prior = TemplatePrior(cached.described, bandwidth=cached.bandwidth, identity_weight=cached.identity_weight)
            prior.loo_accuracy = dict(cached.loo_accuracy)
            return cls(prior, VolumeModel(crystals), temperature=temperature, training_dataset=training_dataset)
        described = describe_training(crystals, user="template generator")
        generator = cls.from_descriptions(described, VolumeModel(crystals), temperature=temperature, criterion=criterion,
                                          loo_rows=loo_rows, seed=seed, training_dataset=training_dataset)
        if key is not None:
            save_fit(key, CachedFit(described, generator.prior.bandwidth, generator.prior.identity_weight, generator.prior.loo_accuracy))
        return generator

    @classmethod
    def from_descriptions(cls, described: Sequence[SymmetricCrystal], volumes: VolumeModel, *, temperature: float = 0.0,
                          criterion: FitCriterion = "match", loo_rows: int = 100, seed: int = 0,
                          training_dataset: str | None = None) -> TemplateGenerator:
        """The generator with its prior's bandwidth and identity weight fitted by leave-one-out on ``loo_rows``
        training crystals: ``criterion`` ``"match"`` counts held-out crystals the top template's
        structure matches (the project's CSP matcher), ``"template"`` those whose own template it is."""
        if criterion not in ("match", "template"):
            raise CrystaloopError(f"fit criterion {criterion!r} is unknown; allowed: match, template")
        generator = cls(TemplatePrior(described), volumes, temperature=temperature, training_dataset=training_dataset)
        score = None
        if criterion == "match":
            from crystaloop.data.matching import structure_matcher

            matcher = structure_matcher("csp")
            seen: dict[tuple, float] = {}

            def score(i: int, proposal: TemplateProposal) -> float:
                memo = (i, proposal.key, proposal.sources[0])
                if memo not in seen:
                    built, _ = generator.build(proposal)
                    seen[memo] = float(matcher.get_rms_dist(built.to_pymatgen(), described[i].to_structure()) is not None)
                return seen[memo]
        generator.prior = TemplatePrior.fit_descriptions(described, loo_rows=loo_rows, seed=seed, score=score)
        return generator

    def build(self, proposal: TemplateProposal, vote: int = 0) -> tuple[Crystal, SymmetricCrystal]:
        """The crystal of ``proposal`` filled from its ``vote``-th best training voter."""
        example = self.prior.examples[proposal.sources[vote]]
        assignment = proposal.assignments[vote]
        source = example.symmetric
        orbits = [o.representative for o in source.orbits]
        relabelled = SymmetricCrystal(source.space_group, source.lattice, tuple(
            Orbit(o.letter, o.multiplicity, assignment[o.element], o.representative) for o in source.orbits))
        primitive = proposal.cell == "primitive"
        old = source.to_crystal(primitive=primitive)
        new_composition = {assignment[el]: n for el, n in old.composition.items()}
        target = old.volume * self.volumes.volume(new_composition) / self.volumes.volume(old.composition)
        scale = (target / old.volume) ** (1.0 / 3.0)
        lattice = tuple(x * scale if i < 3 else x for i, x in enumerate(source.lattice))
        symmetric = relabelled.with_parameters(lattice, orbits)
        return symmetric.to_crystal(primitive=primitive), symmetric

    def sample(self, n: int, condition: Condition | None = None, *, seed: int) -> list[Candidate]:
        """``n`` structures for ``condition.composition``, one per distinct template (or modal
        structure) while there are enough; with only ``condition.chemical_system``, ``n`` distinct
        de novo crystals whose elements are a subset of it (:mod:`.de_novo`).

        Raises:
            CrystaloopError: neither a composition nor a chemical system in the condition, ``n < 1``.
            NoTemplateError: no training template hosts the composition (or has as few elements as the
                system) and there is no fallback generator.
        """
        if n < 1:
            raise CrystaloopError(f"n must be ≥ 1, got {n}")
        if condition is None or (condition.composition is None and not condition.chemical_system):
            raise CrystaloopError("generator kind 'template' needs a condition with a composition (structure prediction) "
                                  "or a chemical system (de novo)")
        try:
            if condition.composition is None:
                picks, built = self._de_novo_picks(tuple(condition.chemical_system or ()), n, seed)
            elif self.voting is not None:
                picks, built = self._modal_picks(condition.composition, n, seed)
            else:
                picks = self._nearest_picks(condition.composition, n, seed)
                built = [self.build(proposal, vote) for proposal, vote in picks]
        except NoTemplateError as exc:
            if self.fallback is None:
                raise
            logger.warning("%s: %s; falling back to %s (free coordinates, no template symmetry)", self.name, exc,
                           getattr(self.fallback, "name", type(self.fallback).__name__))
            self.last_shortfall = 0
            return self.fallback.sample(n, condition, seed=seed)
        self.last_shortfall = n - len(picks)
        if self.last_shortfall:
            logger.info("%s: %d of %d requested structures exist for %s", self.name, len(picks), n, condition.composition)
        refined = self._refine([(symmetric, proposal.cell == "primitive") for (_, symmetric), (proposal, _) in zip(built, picks,
                                                                                                                  strict=True)], seed)
        out = []
        for (proposal, vote), (crystal, symmetric), redrawn in zip(picks, built, refined, strict=True):
            source = f"template {symmetric.space_group} {' '.join(f'{el}@{letter}' for letter, el in proposal.orbits)}; " \
                     f"from training crystal #{proposal.sources[vote]}"
            if redrawn is not None:
                crystal = redrawn
                source += f"; free parameters drawn by {self.refiner.description if self.refiner else ''}"
            provenance = Provenance(component=self.name, version=__version__, seed=seed, source=source)
            out.append(Candidate(crystal=crystal, provenance=provenance, condition=condition))
        return out

    def _de_novo_picks(self, chemical_system: tuple[str, ...], n: int,
                       seed: int) -> tuple[list[tuple[TemplateProposal, int]], list[tuple[Crystal, SymmetricCrystal]]]:
        """``n`` distinct crystals from training templates dressed with the system's elements
        (:mod:`.de_novo`), drawn without replacement with probability ∝ p^(1/T) (T = the
        generator's temperature, 1 when it is 0: de novo samples, it does not rank)."""
        from crystaloop.generator.symmetry.de_novo import de_novo_proposals

        proposals = de_novo_proposals(self.prior, chemical_system)
        logits = np.array([p.log_probability for p in proposals]) / (self.temperature or 1.0)
        order = np.argsort(-(logits + np.random.default_rng(seed).gumbel(size=len(proposals))), kind="stable")
        picks: list[tuple[TemplateProposal, int]] = []
        built: list[tuple[Crystal, SymmetricCrystal]] = []
        seen: set[str] = set()
        for i in order:
            crystal, symmetric = self.build(proposals[i])
            key = crystal.canonical_hash()
            if key not in seen:
                seen.add(key)
                picks.append((proposals[i], 0))
                built.append((crystal, symmetric))
                if len(picks) == n:
                    break
        return picks, built

    def _nearest_picks(self, composition: dict[str, int], n: int, seed: int) -> list[tuple[TemplateProposal, int]]:
        """(proposal, voter rank) per sample: ``n`` distinct templates, each from its nearest
        voter, then the next voters of the same templates while samples are missing."""
        proposals = self.prior.sample(composition, n, temperature=self.temperature, seed=seed)
        picks = [(p, 0) for p in proposals]
        depth = 1
        while len(picks) < n and any(depth < len(p.sources) for p in proposals):
            picks += [(p, depth) for p in proposals if depth < len(p.sources)][: n - len(picks)]
            depth += 1
        return picks

    def _modal_picks(self, composition: dict[str, int], n: int,
                     seed: int) -> tuple[list[tuple[TemplateProposal, int]], list[tuple[Crystal, SymmetricCrystal]]]:
        """(proposal, voter rank) and built crystal per sample: the founders of the ``n``
        heaviest groups of structurally equal votes (:mod:`.modes`), or ``n`` groups drawn with
        probability ∝ mass^(1/T) at temperature T > 0; when there are fewer groups than ``n``,
        the nearest-voter picks of further templates (or further voters) fill the rest."""
        from crystaloop.generator.symmetry.modes import group_votes, structure_fingerprint

        voting = self.voting
        assert voting is not None  # noqa: S101 (callers check)
        proposals = self.prior.proposals(composition)[: voting.templates]
        votes = sorted(((p.distances[rank], p, rank) for p in proposals for rank in range(len(p.sources))),
                       key=lambda vote: vote[0])[: voting.voters]
        built = [self.build(p, rank) for _, p, rank in votes]
        h2 = 2.0 * self.prior.bandwidth**2
        weights = [float(np.exp(-(d - votes[0][0]) / h2)) for d, _, _ in votes]
        groups = group_votes([structure_fingerprint(crystal) for crystal, _ in built], weights, voting.radius)
        if self.temperature > 0 and len(groups) > 1:
            logits = np.log([g.mass for g in groups]) / self.temperature
            order = np.argsort(-(logits + np.random.default_rng(seed).gumbel(size=len(groups))), kind="stable")
            groups = [groups[i] for i in order]
        chosen = [g.founder for g in groups[:n]]
        picks = [(votes[i][1], votes[i][2]) for i in chosen]
        crystals = [built[i] for i in chosen]
        if len(picks) < n:  # fewer structures than samples: the plain generator's picks fill the rest
            taken = {(p.key, rank) for p, rank in picks}
            extra = [(p, rank) for p, rank in self._nearest_picks(composition, n + len(picks), seed) if (p.key, rank) not in taken]
            picks += extra[: n - len(picks)]
            crystals += [self.build(p, rank) for p, rank in extra[: n - len(crystals)]]
        return picks, crystals

    def _refine(self, templates: list[tuple[SymmetricCrystal, bool]], seed: int) -> list[Crystal | None]:
        """The refiner's crystal per template (``None`` where there is no refiner or it cannot take the template)."""
        if self.refiner is None or not templates:
            return [None] * len(templates)
        covered = [i for i, (symmetric, _) in enumerate(templates) if self.refiner.covers(symmetric)]
        if len(covered) < len(templates):
            logger.info("%s: %d of %d templates keep their copied free parameters: elements outside %s's vocabulary",
                        self.name, len(templates) - len(covered), len(templates), self.refiner.name)
        out: list[Crystal | None] = [None] * len(templates)
        for i, (crystal, _) in zip(covered, self.refiner.refine([templates[i] for i in covered], seed=seed), strict=True):
            out[i] = crystal
        return out


class _BuiltOnFirstUse:
    """A generator built from its settings when first asked to sample (the fallback model loads only when needed)."""

    def __init__(self, settings: GeneratorSettings, *, name: str) -> None:
        self.settings, self.name = settings, name
        self._generator: Generator | None = None

    def sample(self, n: int, condition: Condition | None = None, *, seed: int) -> list[Candidate]:
        if self._generator is None:
            self._generator = self.settings.build()
        return self._generator.sample(n, condition, seed=seed)


class TemplateChoice(GeneratorSettings):
    """A campaign's ``template`` generator (``generator: {kind: template, training: perov_5/train}``).

    Attributes:
        training: dataset spec the template prior and the volumes are fitted on.
        temperature: 0 → the most probable templates first; > 0 → sampled ∝ p^(1/T).
        loo_rows: training crystals held out one at a time to choose the prior's bandwidth and identity weight.
        criterion: what that fit rewards (``match``: the top template's structure matches the held-out crystal).
        seed: seed of that leave-one-out subsample.
        free_parameters: ``copy`` keeps the voting training crystal's coordinates and lattice
            (volume rescaled); ``diffusion`` redraws them with a trained diffusion model projected
            onto the template, starting from the copy noised to ``refine_start`` of the schedule.
        checkpoint: that diffusion model, a shipped name or a file (default: the shipped model
            named like the training set, ``perov_5`` for ``perov_5/train``); a distilled student
            (``perov_5_consistency``) refines in ``refine_steps`` consistency steps (1–4).
        refine_start: fraction of the noise schedule the refinement starts from, in (0, 1]
            (1 = from the prior, forgetting the copied parameters).
        refine_steps: reverse steps (DDIM for a teacher, consistency steps for a student) over that
            part of the schedule.
        voting: ``modal`` answers with the structures most of the votes agree on (:mod:`.modes`:
            votes of the ``modal_templates`` most probable templates, the ``modal_voters`` nearest
            of them, grouped within fingerprint distance ``modal_radius``); ``nearest``: the most
            probable templates, each filled from its nearest voter.
        fallback: the free-coordinate diffusion model a composition no template hosts goes to
            (``shipped``: the shipped model named like the training set, if any; a name or path;
            ``None``: refuse with the :class:`NoTemplateError`). Built when first needed.
    """

    kind: Literal["template"] = "template"
    training: str = Field(..., min_length=1, description="dataset spec to learn templates from, e.g. perov_5/train")
    temperature: float = Field(0.0, ge=0, description="0 = most probable templates first; > 0 = sampled")
    loo_rows: int = Field(100, ge=0, description="rows held out one at a time to fit the prior")
    criterion: FitCriterion = "match"
    seed: int = 0
    free_parameters: Literal["copy", "diffusion"] = "copy"
    checkpoint: str | None = Field(None, min_length=1, description="diffusion model for free_parameters: diffusion")
    refine_start: float = Field(0.1, gt=0, le=1)
    refine_steps: int = Field(50, ge=1)
    voting: Literal["modal", "nearest"] = "modal"
    modal_templates: int = Field(40, ge=1)
    modal_voters: int = Field(200, ge=1)
    modal_radius: float = Field(0.05, ge=0)
    fallback: str | None = Field("shipped", description="free-coordinate diffusion model for compositions no template hosts: "
                                 "'shipped' (the shipped model named like the training set, when there is one), "
                                 "a shipped name or checkpoint path, or null (refuse)")

    def build(self) -> TemplateGenerator:
        from crystaloop.data.datasets import load_dataset

        crystals = load_dataset(self.training).crystals
        generator = TemplateGenerator.from_crystals(crystals, temperature=self.temperature, criterion=self.criterion,
                                                    loo_rows=self.loo_rows, seed=self.seed, training_dataset=self.training)
        if self.voting == "modal":
            generator.voting = ModalVoting(self.modal_templates, self.modal_voters, self.modal_radius)
        generator.fallback = self.fallback_generator()
        if self.free_parameters == "diffusion":
            generator.refiner = self.refiner()
        return generator

    def fallback_generator(self) -> Generator | None:
        """The diffusion generator ``fallback`` names (``None`` when it is null, or ``shipped`` and none is shipped)."""
        from crystaloop.generator.config import DiffusionChoice
        from crystaloop.generator.shipped import SHIPPED_GENERATORS

        if self.fallback is None:
            return None
        checkpoint = self.training.split("/")[0] if self.fallback == "shipped" else self.fallback
        if self.fallback == "shipped" and checkpoint not in SHIPPED_GENERATORS:
            return None
        return _BuiltOnFirstUse(DiffusionChoice(checkpoint=checkpoint), name=f"diffusion ({checkpoint})")

    def refiner(self) -> TemplateDiffusion:
        """The projected diffusion model ``free_parameters: diffusion`` uses.

        Raises:
            CrystaloopError: no checkpoint given and none is shipped for the training set's name.
        """
        from crystaloop.generator.consistency.checkpoint import load_any_model
        from crystaloop.generator.consistency.model import ConsistencyModel
        from crystaloop.generator.shipped import SHIPPED_GENERATORS, resolve_generator_checkpoint
        from crystaloop.generator.symmetry.refine import TemplateDiffusion

        spec = self.checkpoint or self.training.split("/")[0]
        if self.checkpoint is None and spec not in SHIPPED_GENERATORS:
            raise CrystaloopError(f"free_parameters: diffusion needs a checkpoint: none is shipped for {self.training!r}; "
                                  f"shipped: {', '.join(SHIPPED_GENERATORS)}")
        path = resolve_generator_checkpoint(spec)
        model = load_any_model(path)
        distilled = isinstance(model, ConsistencyModel)
        if distilled and self.refine_steps > 4:
            raise CrystaloopError(f"{spec!r} is a distilled student: refine_steps must be 1–4, got {self.refine_steps}")
        return TemplateDiffusion(model.eval(), steps=self.refine_steps, start=self.refine_start,
                                 method="consistency" if distilled else "ddim", name=spec)
