"""The campaign engine: ``run_iteration`` and ``run_campaign``, plain functions over a store.

One iteration: generate → score → guard → select → evaluate → update → report.
:data:`ITERATION_STEPS` is the one table of those steps, in order: :func:`run_iteration` runs it
in process and the Prefect flow (:mod:`crystaloop.flows.campaign`) runs each entry as a task, so a
new step is written once. Every step's outcome is in the store before the next step reads it, and
each step starts from what the store says, so a process killed at any point resumes from the last
completed write:

* **generate** — skipped when the iteration already has candidates; otherwise all sampled
  candidates are added in one transaction (all or none), with seeds derived from the config,
  under the strategy's conditions as the collapse monitor's adjustment widened them.
* **score + guard** — runs on the iteration's candidates still ``generated``, in id order;
  each gets its predictions and verdicts recorded, then ``scored`` or ``rejected``. Candidates
  kept earlier (this iteration included) are the diversity guard's history, so a resumed run
  reaches the verdicts an uninterrupted one would.
* **select** — tops up the iteration's picks to the oracle budget (picks already made count,
  and are pending points for BO), so no candidate is selected twice; after a collapse a share
  of the picks is drawn at random (notes ``exploration pick``).
* **evaluate** — measures each ``selected`` candidate, records the measurements, then marks it
  ``evaluated`` (or ``failed``); a candidate measured but not yet marked is measured again
  (oracle caches make that cheap; results overwrite by key, never duplicate). Its unit of work is
  one candidate (:func:`measure_candidate` then :func:`record_measurements`), which the flow runs
  in parallel.
* **update** (no step of its own: it happens as the store grows) — labels feed the online surrogate that scores the next iteration (the ensemble
  plus a residual GP refitted on all labels, trust shrunk after over-prediction;
  :mod:`crystaloop.loop.online`) and the strategy's GP head at the next selection (the same
  construction); the hull grows through the oracle's cache.
* **report** — an :class:`~crystaloop.loop.report.IterationReport` from the store's contents
  (with the S.U.N. classification of the evaluated candidates, :mod:`crystaloop.loop.sun`, and
  the collapse monitor's verdict and the next iteration's adjustment,
  :mod:`crystaloop.loop.collapse`), saved with ``finish_iteration``; later steps read the
  finished reports, so a resumed campaign continues with the same adjustments.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from crystaloop.data.elements import element_presence
from crystaloop.data.records import Candidate, CandidateStatus, Condition, Measurement, Verdict
from crystaloop.data.store import CandidateFilter, CandidateStore
from crystaloop.generator.composite import CompositeGenerator, split_by_batch
from crystaloop.loop.allocation import ArmAllocation, arm_outcomes, thompson_shares
from crystaloop.loop.collapse import Adjustment, assess, exploration_picks
from crystaloop.loop.components import Components
from crystaloop.loop.config import CampaignConfig
from crystaloop.loop.guards import (
    GuardContext,
    collapse_report,
    fingerprints,
    residual_watch,
    screen,
    selection_features,
)
from crystaloop.loop.guards.exploitation import ResidualHistory
from crystaloop.loop.guards.synthesizability import SynthesizabilityGuard
from crystaloop.loop.online import OnlineSurrogate, fit_online, measured_matrix
from crystaloop.loop.report import IterationReport, PredictedHit, classify_hit, rejection_counts
from crystaloop.loop.strategies import Labels, Pool, StrategyState
from crystaloop.loop.strategies.condition_bo import condition_outcomes
from crystaloop.loop.sun import iteration_sun, with_sun_labels

__all__ = [
    "run_iteration",
    "run_campaign",
    "IterationRun",
    "Step",
    "ITERATION_STEPS",
    "step_named",
    "next_iteration",
    "iteration_candidates",
    "adjustment_for_iteration",
    "iteration_allocation",
    "finished_reports",
    "online_surrogate",
    "Scores",
    "begin_iteration",
    "generate_candidates",
    "score_candidates",
    "guard_candidates",
    "select_candidates",
    "measure_candidate",
    "record_measurements",
    "build_report",
    "end_iteration",
]

logger = logging.getLogger(__name__)

_ALL = 100_000
_KEPT = [CandidateStatus.SCORED, CandidateStatus.SELECTED, CandidateStatus.EVALUATED, CandidateStatus.FAILED]
_PICKED = [CandidateStatus.SELECTED, CandidateStatus.EVALUATED, CandidateStatus.FAILED]


def iteration_candidates(store: CandidateStore, campaign: str, iteration: int | None = None, status=None) -> list[Candidate]:  # noqa: ANN001
    """The campaign's candidates (of one iteration, with given statuses), sorted by id."""
    flt = CandidateFilter(campaign=campaign, iteration=iteration, status=status, limit=_ALL, order_by="id")
    return store.query(flt)


def next_iteration(store: CandidateStore, campaign: str) -> int:
    """Index of the first iteration that has not finished (0 for a new campaign)."""
    if campaign not in store.campaigns():
        return 0
    done = {r.index for r in store.iterations(campaign) if r.finished_at is not None}
    index = 0
    while index in done:
        index += 1
    return index


def finished_reports(store: CandidateStore, config: CampaignConfig, below: int | None = None) -> dict[int, IterationReport]:
    """Reports of the campaign's finished iterations (those before ``below`` when given), by index."""
    if config.name not in store.campaigns():
        return {}
    return {
        row.index: IterationReport.model_validate(json.loads(row.report_json))
        for row in store.iterations(config.name)
        if row.finished_at is not None and row.report_json and (below is None or row.index < below)
    }


def adjustment_for_iteration(store: CandidateStore, config: CampaignConfig, index: int) -> Adjustment:
    """The collapse monitor's adjustment for iteration ``index``: what the finished report of
    iteration ``index - 1`` prescribed (level 0 when there is none or the monitor is off)."""
    if index == 0 or not config.guards.collapse.enabled:
        return Adjustment()
    previous = finished_reports(store, config, index).get(index - 1)
    return previous.collapse.next if previous is not None and previous.collapse is not None else Adjustment()


def iteration_allocation(components: Components, store: CandidateStore, config: CampaignConfig, index: int, n_conditions: int = 1) -> tuple[ArmAllocation, list[dict[str, float]]] | None:
    """The composite generator's shares for iteration ``index`` (``None``: not a composite),
    from what the store holds (:mod:`crystaloop.loop.allocation`): the allocation (its ``before``
    counts the earlier iterations' oracle calls and verified hits per arm) and what to pass as
    the shares of each of the ``n_conditions`` conditions proposed (the arm counts of
    :func:`~crystaloop.generator.composite.split_by_batch`, or an rl policy's mix per condition,
    which needs its proposal of ``index`` made)."""
    generator = components.generator
    if not isinstance(generator, CompositeGenerator):
        return None
    hits = {h for r in finished_reports(store, config, index).values() for h in r.verified_hits}
    picks = [c for c in iteration_candidates(store, config.name, None, _PICKED[1:]) if c.provenance.iteration is not None and c.provenance.iteration < index]
    before = arm_outcomes(picks, hits, generator.arm_names)
    allocation = config.strategy.allocation
    mixes = getattr(components.strategy, "arm_mixes", lambda _: None)(index) if allocation.kind == "bandit" else None
    if mixes:  # the policy's mix per condition; the iteration's shares weight them by candidates
        sizes = _condition_sizes(config.budget.candidates_per_iteration, len(mixes))
        shares = {a: sum(m[a] * n for m, n in zip(mixes, sizes, strict=True)) / sum(sizes) for a in generator.arm_names}
        return ArmAllocation(kind="rl", shares=shares, before=before), list(mixes)
    if allocation.kind == "bandit" and any(o.oracle_calls for o in before.values()):
        shares = thompson_shares(before, floor=allocation.floor, draws=allocation.draws, seed=config.iteration_seed(index, stream=2000))
    else:  # fixed, or nothing measured yet: the configured shares
        shares = dict(generator.shares)
    sizes = _condition_sizes(config.budget.candidates_per_iteration, n_conditions)
    return ArmAllocation(kind=allocation.kind, shares=shares, before=before), [{a: float(n) for a, n in counts.items()} for counts in split_by_batch(shares, sizes)]


def online_surrogate(components: Components, store: CandidateStore, config: CampaignConfig, index: int) -> OnlineSurrogate | None:
    """The surrogate that scores iteration ``index``: the ensemble corrected by the labels of
    earlier iterations, trust shrunk after over-prediction (:mod:`crystaloop.loop.online`);
    ``None`` without a surrogate. Built from the store, memoised in ``components.cache``."""
    if components.surrogate is None:
        return None
    reports = finished_reports(store, config, index)
    properties = components.surrogate.properties
    flags = [{p: bool(reports[i].residuals.get(p, {}).get("over_predicted", False)) if i in reports else False for p in properties} for i in range(index)]
    labelled = [
        c for c in iteration_candidates(store, config.name, None, [CandidateStatus.EVALUATED])
        if c.provenance.iteration is not None and c.provenance.iteration < index
    ]
    key = ("online", config.config_hash(), index, tuple(c.id for c in labelled), json.dumps(flags))
    if key not in components.cache:
        components.cache = {k: v for k, v in components.cache.items() if k[0] != "online"}  # keep one
        components.cache[key] = fit_online(components.surrogate, labelled, config, flags)
    return components.cache[key]


# ---------------------------------------------------------------------------- steps
def _supported(condition: Condition, generator: object) -> Condition:
    """Drop property targets the generator cannot condition on (e.g. e_above_hull, which only
    the oracle measures); a generator without a ``properties`` list receives the condition as is."""
    known = getattr(generator, "properties", None)
    if known is None or not condition.properties:
        return condition
    kept = {k: v for k, v in condition.properties.items() if k in known}
    if len(kept) < len(condition.properties):
        logger.debug("generator conditions on %s only; not on %s", known, sorted(set(condition.properties) - set(kept)))
    return condition.model_copy(update={"properties": kept})


def _condition_sizes(n_total: int, n_conditions: int) -> list[int]:
    """Candidates generated under each of ``n_conditions`` conditions (the first get the remainder)."""
    return [n_total // n_conditions + (j < n_total % n_conditions) for j in range(n_conditions)]


def generate_candidates(components: Components, store: CandidateStore, config: CampaignConfig, index: int) -> int | None:
    """Generate the iteration's candidates in one transaction; returns crystals already stored,
    or ``None`` when the iteration had candidates (resumed: generation skipped)."""
    if store.count(CandidateFilter(campaign=config.name, iteration=index)) > 0:
        return None
    n_total = config.budget.candidates_per_iteration
    adjustment = adjustment_for_iteration(store, config, index)
    if not adjustment.neutral:
        logger.info("iteration %d: collapse level %d, generation widened (%s)", index, adjustment.level, "; ".join(adjustment.describe()))
    history = [c for c in iteration_candidates(store, config.name) if c.provenance.iteration is not None and c.provenance.iteration < index]
    state = StrategyState(config, index, config.iteration_seed(index), n_conditions=max(1, min(4, n_total)), adjustment=adjustment, history=history)
    conditions = [_supported(condition, components.generator) for condition in components.strategy.propose(state)]
    sizes = _condition_sizes(n_total, len(conditions))
    allocation = iteration_allocation(components, store, config, index, len(conditions))
    if allocation is not None:
        logger.info("iteration %d: arm shares %s (%s)", index, {a: round(s, 3) for a, s in allocation[0].shares.items()}, allocation[0].kind)
    candidates: list[Candidate] = []
    for j, (condition, size) in enumerate(zip(conditions, sizes, strict=True)):
        if size == 0:
            continue
        seed = config.iteration_seed(index, stream=1 + j)
        shares = {} if allocation is None else {"shares": allocation[1][j]}
        for c in components.generator.sample(size, condition, seed=seed, **shares):
            provenance = c.provenance.model_copy(update={"campaign": config.name, "iteration": index, "config_hash": config.config_hash()})
            candidates.append(replace(c, provenance=provenance, status=CandidateStatus.GENERATED))
    report = store.add_many(candidates, chunk_size=max(1, len(candidates)))
    logger.info("iteration %d: generated %d, %d new, %d already stored", index, len(candidates), report.added, report.existing)
    return report.existing


@dataclass
class Scores:
    """Surrogate outputs for the pending candidates that passed the context-free guards.

    Attributes:
        predictions: candidate id → property → (mean, std, units).
        ood: candidate id → OOD score.
        reference_std: property → median std over the scored batch.
        model: name of the surrogate that predicted.
    """

    predictions: dict[str, dict[str, tuple[float, float, str]]] = field(default_factory=dict)
    ood: dict[str, float] = field(default_factory=dict)
    reference_std: dict[str, float] = field(default_factory=dict)
    model: str = ""


def score_candidates(components: Components, store: CandidateStore, config: CampaignConfig, index: int) -> Scores:
    """Predictions of the online surrogate (:func:`online_surrogate`) for the iteration's
    ``generated`` candidates that pass the context-free guards (constraints, validity); writes nothing."""
    pending = iteration_candidates(store, config.name, index, [CandidateStatus.GENERATED])
    if not pending or components.surrogate is None:
        return Scores()
    context = GuardContext(constraints=config.constraints)
    free = [g for g in components.guards if g.context_free]
    scorable = [c for c in pending if all(g.check(c, context).ok for g in free)]
    if not scorable:
        return Scores()
    crystals = [c.crystal for c in scorable]
    online = online_surrogate(components, store, config, index)
    prediction = online.predict(crystals)
    ood = online.ood_score(crystals)
    return Scores(
        predictions={c.id: prediction.row(i) for i, c in enumerate(scorable)},
        ood={c.id: float(s) for c, s in zip(scorable, ood, strict=True)},
        reference_std={p: float(np.median(prediction.std[:, j])) for j, p in enumerate(prediction.properties)},
        model=prediction.model,
    )


def guard_candidates(components: Components, store: CandidateStore, config: CampaignConfig, index: int, scores: Scores) -> None:
    """Run every guard on the iteration's ``generated`` candidates, in id order, and record each
    one's predictions and verdicts, then ``scored`` or ``rejected``."""
    pending = iteration_candidates(store, config.name, index, [CandidateStatus.GENERATED])
    if not pending:
        return
    history = config.guards.diversity.against_history
    kept = iteration_candidates(store, config.name, None if history else index, _KEPT)
    context = GuardContext(constraints=config.constraints, known_ids=set(components.known_ids) | {c.id for c in kept}, reference=components.reference)
    if kept:
        context.kept_fingerprints = fingerprints([c.crystal for c in kept])
        for c in kept:
            context.kept.add(c.crystal, c.id, canonical_hash=c.id)
    if scores.predictions:
        context.predictions = dict(scores.predictions)
        context.ood = dict(scores.ood)
        context.reference_std = dict(scores.reference_std)
    measured = iteration_candidates(store, config.name, None, [CandidateStatus.EVALUATED])
    if measured:  # where the surrogate was measured to flatter (exploitation guard)
        context.residuals = ResidualHistory.from_candidates(measured, config.objectives)
    results = screen(pending, components.guards, context)
    for result in results:
        cid = result.candidate.id
        ood_verdict = [Verdict(guard="ood", ok=True, score=context.ood[cid])] if cid in context.ood else []
        store.record(cid, predictions=scores.predictions.get(cid), model=scores.model, verdicts=list(result.verdicts) + ood_verdict)
        failure = result.first_failure
        if failure is None:
            store.update_status(cid, CandidateStatus.SCORED)
        else:
            store.update_status(cid, CandidateStatus.REJECTED, note=f"{failure.guard}: {failure.reason}")
    kept_now = sum(r.ok for r in results)
    logger.info("iteration %d: guards kept %d of %d, rejected %d", index, kept_now, len(results), len(results) - kept_now)


def _score_and_guard(components: Components, store: CandidateStore, config: CampaignConfig, index: int) -> None:
    guard_candidates(components, store, config, index, score_candidates(components, store, config, index))


def _objective_matrix(candidates: Sequence[Candidate], config: CampaignConfig, source: str) -> np.ndarray:
    """(n, m, 2) predicted mean/std (source 'predicted') or (n, m) measured values ('measured')."""
    props = [o.property for o in config.objectives]
    if source == "predicted":
        out = np.full((len(candidates), len(props), 2), np.nan)
        for i, c in enumerate(candidates):
            for j, p in enumerate(props):
                if p in c.predictions:
                    out[i, j] = c.predictions[p][:2]
        return out
    return measured_matrix(candidates, props)


def _embed(components: Components, candidates: Sequence[Candidate]) -> np.ndarray:
    if not candidates:
        return np.zeros((0, 0))
    crystals = [c.crystal for c in candidates]
    if components.surrogate is not None:
        return components.surrogate.embed(crystals)
    return selection_features(crystals)


def _ensemble_matrix(online: OnlineSurrogate | None, candidates: Sequence[Candidate], config: CampaignConfig) -> np.ndarray:
    """(n, m, 2) the ensemble's own mean and (trust-scaled) std per objective, NaN where it does
    not predict: the prior the strategies' residual GP corrects with the labels, as the online
    surrogate does (so their posterior is what the store holds)."""
    out = np.full((len(candidates), len(config.objectives), 2), np.nan)
    if online is None or not candidates:
        return out
    prediction = online.ensemble([c.crystal for c in candidates])
    for j, objective in enumerate(config.objectives):
        if objective.property in prediction.properties:
            column = prediction.properties.index(objective.property)
            out[:, j, 0], out[:, j, 1] = prediction.mean[:, column], prediction.std[:, column]
    return out


def select_candidates(components: Components, store: CandidateStore, config: CampaignConfig, index: int) -> list[str]:
    """Top the iteration's picks up to the oracle budget; returns the ids selected by this call."""
    picked = iteration_candidates(store, config.name, index, _PICKED)
    k = config.budget.oracle_calls_per_iteration - len(picked)
    pool_candidates = iteration_candidates(store, config.name, index, [CandidateStatus.SCORED])
    if k <= 0 or not pool_candidates:
        return []
    history = [
        c for c in iteration_candidates(store, config.name, None, [CandidateStatus.EVALUATED])
        if c.provenance.iteration is not None and c.provenance.iteration < index
    ]
    online = online_surrogate(components, store, config, index)
    embeddings = _embed(components, pool_candidates)
    labels = Labels(
        embeddings=_embed(components, history) if history else np.zeros((0, embeddings.shape[1])),
        values=with_sun_labels(_objective_matrix(history, config, "measured"), history, config, _sun_ids(store, config, index)),
        prior=_ensemble_matrix(online, history, config)[..., 0],
        elements=element_presence([c.crystal for c in history]),
    )
    adjustment = adjustment_for_iteration(store, config, index)
    pool = Pool(pool_candidates, embeddings, labels, exploration=adjustment.beta_factor)
    if picked:
        pool.pending = _embed(components, picked)
        pool.pending_prior = _ensemble_matrix(online, picked, config)[..., 0]
        pool.pending_elements = element_presence([c.crystal for c in picked])
    n_random = exploration_picks(config.budget.oracle_calls_per_iteration, adjustment)
    n_random = min(k, max(0, n_random - sum(_is_exploration_pick(store, c.id) for c in picked)))
    predictions = _ensemble_matrix(online, pool_candidates, config)
    indices = components.strategy.select(pool, predictions, k - n_random) if k > n_random else []
    chosen = [pool_candidates[i].id for i in sorted(int(i) for i in indices)]
    for cid in chosen:
        store.update_status(cid, CandidateStatus.SELECTED, note=f"{components.strategy.name} pick")
    rest = [c.id for c in pool_candidates if c.id not in set(chosen)]
    rng = np.random.default_rng(config.iteration_seed(index, stream=1000))
    explore = sorted(rng.choice(rest, size=min(n_random, len(rest)), replace=False).tolist()) if n_random and rest else []
    for cid in explore:
        store.update_status(cid, CandidateStatus.SELECTED, note=f"{_EXPLORATION_NOTE} (collapse level {adjustment.level})")
    logger.info("iteration %d: selected %d of %d scored (%d at random for exploration)", index, len(chosen) + len(explore), len(pool_candidates), len(explore))
    return chosen + explore


_EXPLORATION_NOTE = "exploration pick"


def _sun_ids(store: CandidateStore, config: CampaignConfig, below: int) -> set[str] | None:
    """S.U.N. candidates of the finished iterations before ``below`` (``None``: S.U.N. off)."""
    if not config.sun.enabled:
        return None
    return {i for r in finished_reports(store, config, below).values() if r.sun is not None for i in r.sun.sun_ids}


def _is_exploration_pick(store: CandidateStore, candidate_id: str) -> bool:
    return any(h.to_status == CandidateStatus.SELECTED and h.note.startswith(_EXPLORATION_NOTE) for h in store.status_history(candidate_id))


def measure_candidate(components: Components, candidate: Candidate) -> list[Measurement]:
    """The oracle's measurements of one candidate; writes nothing."""
    return components.oracle.evaluate([candidate.crystal])


def record_measurements(store: CandidateStore, config: CampaignConfig, candidate: Candidate, measurements: Sequence[Measurement]) -> CandidateStatus:
    """Record a candidate's measurements (and the measured synthesizability verdict), then mark
    it ``evaluated``, or ``failed`` when every measurement failed; returns the new status."""
    guard = SynthesizabilityGuard(config.guards.synthesizability)
    measured = replace(candidate, measurements=tuple(measurements))
    verdicts = [guard.check(measured, GuardContext())] if config.guards.synthesizability.enabled else []
    store.record(candidate.id, measurements=list(measurements), verdicts=verdicts)
    failed = [m for m in measurements if m.status != "ok"]
    status = CandidateStatus.FAILED if failed and len(failed) == len(measurements) else CandidateStatus.EVALUATED
    note = "; ".join(f"{m.property}: {m.reason}" for m in failed)
    store.update_status(candidate.id, status, note=note)
    return status


def build_report(components: Components, store: CandidateStore, config: CampaignConfig, index: int, duplicates: int | None, resumed: bool, started: float) -> IterationReport:
    """The iteration's report from the store's contents (``started``: a ``perf_counter`` time)."""
    candidates = iteration_candidates(store, config.name, index)
    by_status: dict[CandidateStatus, list[Candidate]] = {s: [] for s in CandidateStatus}
    for c in candidates:
        by_status[c.status].append(c)
    evaluated = by_status[CandidateStatus.EVALUATED]
    measurable = components.oracle.properties
    picks = evaluated + by_status[CandidateStatus.FAILED]
    sun = iteration_sun(components, store, config, index, evaluated, len(picks))
    verified, predicted = [], []
    for c in evaluated:
        kind = classify_hit(c, config, measurable, None if sun is None else set(sun.sun_ids))
        if kind == "verified":
            verified.append(c.id)
        elif kind == "predicted":
            unmeasured = {o.property: tuple(c.predictions[o.property]) for o in config.objectives if o.property not in measurable and o.property in c.predictions}
            predicted.append(PredictedHit(id=c.id, formula=c.crystal.reduced_formula, predicted=unmeasured))
    best: dict[str, float] = {}
    measured = _objective_matrix(evaluated, config, "measured")
    for j, objective in enumerate(config.objectives):
        column = measured[:, j][np.isfinite(measured[:, j])] if len(evaluated) else np.zeros(0)
        if column.size:
            if objective.goal == "target":
                low, high = objective.window or (0.0, 0.0)
                column = column[np.argsort(np.abs(column - 0.5 * (low + high)))]
                best[objective.property] = float(column[0])
            else:
                best[objective.property] = float(column.max() if objective.goal == "maximise" else column.min())
    diversity = collapse_report(candidates, duplicates)
    adjustment = adjustment_for_iteration(store, config, index)
    collapse = assess(diversity, adjustment, config.guards.collapse) if config.guards.collapse.enabled else None
    if collapse is not None and collapse.collapsed:
        logger.warning("iteration %d: batch collapsed (%s); next iteration: %s", index, "; ".join(collapse.reasons), "; ".join(collapse.next.describe()))
    return IterationReport(
        campaign=config.name,
        iteration=index,
        config_hash=config.config_hash(),
        generated=len(candidates),
        duplicates_skipped=duplicates,
        rejected_by_reason=rejection_counts(by_status[CandidateStatus.REJECTED], [g.name for g in components.guards]),
        scored=len(by_status[CandidateStatus.SCORED]),
        selected=len(by_status[CandidateStatus.SELECTED]),
        evaluated=len(evaluated),
        failed=len(by_status[CandidateStatus.FAILED]),
        oracle_calls=len(picks),
        verified_hits=verified,
        predicted_hits=predicted,
        best_measured=best,
        diversity={k: float(v) for k, v in diversity.items()},
        adjustment=adjustment,
        collapse=collapse,
        residuals=residual_watch(evaluated, config.objectives),
        surrogate=online.update if (online := online_surrogate(components, store, config, index)) is not None else None,
        conditions=condition_outcomes(candidates, config),
        sun=sun,
        arms=_arm_report(components, store, config, index, candidates, picks, verified),
        resumed=resumed,
        seconds=round(time.perf_counter() - started, 3),
    )


def _arm_report(components: Components, store: CandidateStore, config: CampaignConfig, index: int, candidates: Sequence[Candidate], picks: Sequence[Candidate], verified: Sequence[str]) -> ArmAllocation | None:
    """The iteration's allocation with what each arm generated, its oracle calls and hits."""
    allocation = iteration_allocation(components, store, config, index)
    if allocation is None:
        return None
    arms = list(allocation[0].shares)
    generated = {a: sum(c.provenance.arm == a for c in candidates) for a in arms}
    return allocation[0].model_copy(update={"generated": generated, "outcomes": arm_outcomes(picks, set(verified), arms)})


_generate = generate_candidates  # the step names the engine's tests use


# ---------------------------------------------------------------------------- the step table
@dataclass
class IterationRun:
    """What one iteration's steps hand each other; everything else they read from the store.

    Attributes:
        index: the iteration.
        resumed: the iteration had been started before.
        started: ``time.perf_counter()`` when this run of it began (the report's ``seconds``).
        duplicates: crystals already stored when generating; ``None`` when generation was
            skipped because the iteration had candidates (a resumed run).
        scores: the surrogate's scores of the pending candidates, for the guard step.
        report: the iteration's report, once the report step has saved it.
    """

    index: int
    resumed: bool
    started: float = field(default_factory=time.perf_counter)
    duplicates: int | None = None
    scores: Scores = field(default_factory=Scores)
    report: IterationReport | None = None


StepFunction = Callable[[Components, CandidateStore, CampaignConfig, IterationRun], None]


@dataclass(frozen=True)
class Step:
    """One entry of :data:`ITERATION_STEPS`: a name (the flow's task name) and what it does to
    the store and the :class:`IterationRun`."""

    name: str
    run: StepFunction


def _generate_step(components: Components, store: CandidateStore, config: CampaignConfig, run: IterationRun) -> None:
    run.duplicates = generate_candidates(components, store, config, run.index)


def _score_step(components: Components, store: CandidateStore, config: CampaignConfig, run: IterationRun) -> None:
    run.scores = score_candidates(components, store, config, run.index)


def _guard_step(components: Components, store: CandidateStore, config: CampaignConfig, run: IterationRun) -> None:
    guard_candidates(components, store, config, run.index, run.scores)


def _select_step(components: Components, store: CandidateStore, config: CampaignConfig, run: IterationRun) -> None:
    select_candidates(components, store, config, run.index)


def _evaluate_step(components: Components, store: CandidateStore, config: CampaignConfig, run: IterationRun) -> None:
    for candidate in iteration_candidates(store, config.name, run.index, [CandidateStatus.SELECTED]):
        record_measurements(store, config, candidate, measure_candidate(components, candidate))


def _report_step(components: Components, store: CandidateStore, config: CampaignConfig, run: IterationRun) -> None:
    run.report = build_report(components, store, config, run.index, run.duplicates, run.resumed or run.duplicates is None, run.started)
    end_iteration(store, config, run.report)


ITERATION_STEPS: tuple[Step, ...] = (
    Step("generate", _generate_step),
    Step("score", _score_step),
    Step("guard", _guard_step),
    Step("select", _select_step),
    Step("evaluate", _evaluate_step),
    Step("report", _report_step),
)
"""The iteration's steps in order (see the module docstring); the engine and the flow both run this table."""


def step_named(name: str) -> Step:
    """The entry of :data:`ITERATION_STEPS` called ``name``; ``KeyError`` naming the known ones."""
    for step in ITERATION_STEPS:
        if step.name == name:
            return step
    raise KeyError(f"no iteration step {name!r}; steps: {', '.join(s.name for s in ITERATION_STEPS)}")


# ---------------------------------------------------------------------------- public API
def run_iteration(components: Components, store: CandidateStore, config: CampaignConfig, index: int | None = None) -> IterationReport:
    """Run (or resume) one iteration and return its report: every entry of
    :data:`ITERATION_STEPS` in order; see the module docstring.

    Args:
        components: generator, oracle, strategy, guards and surrogate.
        store: where every step is persisted.
        config: the campaign; its ``name`` is the campaign id.
        index: iteration to run; ``None`` → the first unfinished one.
    """
    run = begin_iteration(store, config, index)
    for step in ITERATION_STEPS:
        step.run(components, store, config, run)
    if run.report is None:  # the table ends with the report step
        raise RuntimeError(f"iteration {run.index} of {config.name}: no step saved a report")
    return run.report


def begin_iteration(store: CandidateStore, config: CampaignConfig, index: int | None = None) -> IterationRun:
    """Register the campaign and mark the iteration started; returns its :class:`IterationRun`
    (``index=None`` → the first unfinished iteration; ``resumed``: it had been started before)."""
    started = time.perf_counter()
    store.ensure_campaign(config.name, name=config.name, config_json=config.model_dump_json(exclude={"store_url"}), config_hash=config.config_hash())
    index = next_iteration(store, config.name) if index is None else index
    resumed = any(r.index == index for r in store.iterations(config.name))
    store.start_iteration(config.name, index)
    return IterationRun(index=index, resumed=resumed, started=started)


def end_iteration(store: CandidateStore, config: CampaignConfig, report: IterationReport) -> None:
    """Save the report and mark its iteration finished."""
    store.finish_iteration(config.name, report.iteration, report.model_dump_json())
    logger.info(
        "iteration %d of %s: %d generated, %d evaluated, %d verified hits, %d predicted-only",
        report.iteration, config.name, report.generated, report.evaluated, len(report.verified_hits), len(report.predicted_hits),
    )


def run_campaign(components: Components, store: CandidateStore, config: CampaignConfig) -> list[IterationReport]:
    """Run the remaining iterations of the budget; finished ones are read back, not rerun."""
    reports = []
    for index in range(config.budget.iterations):
        finished = [r for r in store.iterations(config.name) if r.index == index and r.finished_at is not None] if config.name in store.campaigns() else []
        if finished and finished[0].report_json:
            reports.append(IterationReport.model_validate(json.loads(finished[0].report_json)))
            continue
        reports.append(run_iteration(components, store, config, index))
    return reports

