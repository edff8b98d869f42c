"""The campaign's surrogate after it learned from the oracle: the shipped ensemble plus a residual
GP refitted on every label so far, with trust shrunk where its picks were over-predicted.

For iteration i the online surrogate is built from the store alone (so a resumed process, or a
flow task on another worker, builds the same one):

* **labels**: the campaign's evaluated candidates of iterations ≤ t with an ``ok`` measurement of a
  property the ensemble predicts. With ``retrain_surrogate: true`` t = i − 1 (refit every
  iteration); with ``false`` t is the last iteration whose report flagged over-prediction
  (the exploitation guard's residual watch triggers the retrain), none before a flag.
* **correction**: :class:`~crystaloop.loop.strategies.posterior.ResidualGP` with the strategy's
  settings (``gp_components``, ``min_labels``, the campaign seed) on ``measured − ensemble mean``
  over the ensemble's embeddings, plus one offset per element (``gp_element_offsets``); the prediction is ensemble mean + GP mean with the GP's std
  for each property with enough labels, the ensemble's own elsewhere. bo and al fit the very
  same GP on the raw ensemble predictions during selection, so what the store holds is what
  they believe.
* **trust**: per property, ``max(min_trust, trust_decay ** c)`` with c the number of consecutive
  iterations up to i − 1 whose residual watch flagged the property as over-predicted; every
  std is divided by it (less trust, wider uncertainty: the exploitation guard, UCB and the RL
  reward all read the std).

The ensemble's weights do not change: ``surrogates/`` exposes no fine-tuning; the update is the
GP head and the trust factor.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from crystaloop.data.crystal import Crystal
from crystaloop.data.elements import element_presence
from crystaloop.data.records import Candidate, Prediction
from crystaloop.loop.config import CampaignConfig
from crystaloop.loop.report import SurrogateUpdate
from crystaloop.loop.strategies.base import Labels
from crystaloop.loop.strategies.posterior import ResidualGP
from crystaloop.surrogates.base import EmbeddingSurrogate

__all__ = ["OnlineSurrogate", "trust_factors", "retrain_point", "fit_online", "measured_matrix"]

logger = logging.getLogger(__name__)


def measured_matrix(candidates: Sequence[Candidate], properties: Sequence[str]) -> np.ndarray:
    """(n, P) ``ok`` oracle values of ``properties`` per candidate; NaN where not measured."""
    out = np.full((len(candidates), len(properties)), np.nan)
    for i, candidate in enumerate(candidates):
        values = {m.property: m.value for m in candidate.measurements if m.status == "ok" and m.value is not None}
        for j, prop in enumerate(properties):
            out[i, j] = values.get(prop, np.nan)
    return out


def trust_factors(flags: Sequence[dict[str, bool]], properties: Sequence[str], config: CampaignConfig) -> dict[str, float]:
    """Property → trust in (0, 1] from the residual-watch flags of iterations 0 … i − 1 (in order)."""
    exploitation = config.guards.exploitation
    out = {}
    for prop in properties:
        streak = 0
        for flagged in reversed(flags):
            if not flagged.get(prop, False):
                break
            streak += 1
        out[prop] = max(exploitation.min_trust, exploitation.trust_decay**streak)
    return out


def retrain_point(flags: Sequence[dict[str, bool]], config: CampaignConfig) -> tuple[int | None, str]:
    """``(t, trigger)``: labels of iterations ≤ t feed the correction (see the module docstring)."""
    index = len(flags)
    if config.retrain_surrogate:
        return (index - 1 if index > 0 else None), "every iteration"
    flagged = [i for i, f in enumerate(flags) if any(f.values())]
    if not flagged:
        return None, "none"
    return flagged[-1], f"over-prediction at iteration {flagged[-1]}"


@dataclass
class OnlineSurrogate:
    """An embedding surrogate (:class:`~crystaloop.surrogates.base.EmbeddingSurrogate`) with a
    residual GP correction and per-property trust; see the module docstring."""

    surrogate: EmbeddingSurrogate
    gp: ResidualGP | None
    trust: dict[str, float]
    update: SurrogateUpdate

    @property
    def name(self) -> str:
        base = self.surrogate.name
        return f"{base}+gp[{self.update.labels} labels]" if self.gp is not None and self.gp.fitted else base

    @property
    def properties(self) -> tuple[str, ...]:
        return tuple(self.surrogate.properties)

    def _scaled(self, std: np.ndarray, properties: Sequence[str]) -> np.ndarray:
        factors = np.array([self.trust.get(p, 1.0) for p in properties])
        return std / factors[None, :]

    def ensemble(self, crystals: Sequence[Crystal]) -> Prediction:
        """The ensemble's prediction with the trust factors applied to its std (no correction)."""
        raw = self.surrogate.predict(crystals)
        return Prediction(raw.mean, self._scaled(raw.std, raw.properties), raw.properties, raw.units, raw.model)

    def predict(self, crystals: Sequence[Crystal], embeddings: np.ndarray | None = None) -> Prediction:
        """Corrected prediction (n, P) for ``crystals`` (``embeddings``: theirs, if computed)."""
        raw = self.surrogate.predict(crystals)
        mean, std = raw.mean, raw.std
        if self.gp is not None and self.gp.fitted and len(crystals):
            embeddings = self.surrogate.embed(crystals) if embeddings is None else embeddings
            mean, std = self.gp.posterior(embeddings, raw.mean, raw.std, element_presence(crystals) if self.gp.uses_elements else None)
        return Prediction(mean, self._scaled(std, raw.properties), raw.properties, raw.units, self.name)

    def embed(self, crystals: Sequence[Crystal]) -> np.ndarray:
        return self.surrogate.embed(crystals)

    def ood_score(self, crystals: Sequence[Crystal]) -> np.ndarray:
        return self.surrogate.ood_score(crystals)


def fit_online(surrogate: EmbeddingSurrogate, labelled: Sequence[Candidate], config: CampaignConfig, flags: Sequence[dict[str, bool]]) -> OnlineSurrogate:
    """The online surrogate of iteration ``len(flags)``.

    Args:
        surrogate: the ensemble (or a :class:`~crystaloop.surrogates.base.SurrogateSet`).
        labelled: the campaign's evaluated candidates of earlier iterations (any order).
        config: the campaign (strategy GP settings, retrain switch, trust settings).
        flags: per earlier iteration, property → over-predicted (the reports' residual watch).
    """
    properties = tuple(surrogate.properties)
    trust = trust_factors(flags, properties, config)
    through, trigger = retrain_point(flags, config)
    rows = [] if through is None else [c for c in labelled if c.provenance.iteration is not None and c.provenance.iteration <= through]
    values = measured_matrix(rows, properties)
    keep = np.isfinite(values).any(axis=1) if len(rows) else np.zeros(0, dtype=bool)
    rows = [c for c, k in zip(rows, keep, strict=True) if k]
    values = values[keep] if len(rows) else np.zeros((0, len(properties)))
    gp = None
    summary: dict[str, dict[str, float]] = {}
    if rows:
        crystals = [c.crystal for c in rows]
        raw = surrogate.predict(crystals)
        embeddings = surrogate.embed(crystals)
        s = config.strategy
        elements = element_presence(crystals)
        gp = ResidualGP.for_strategy(s, config.seed).fit(Labels(embeddings, values, raw.mean, elements))
        mean = gp.posterior(embeddings, raw.mean, raw.std, elements)[0] if gp.fitted else raw.mean
        for j, prop in enumerate(properties):
            known = np.isfinite(values[:, j])
            if known.any():
                summary[prop] = {
                    "labels": float(known.sum()),
                    "trust": trust[prop],
                    "mae_ensemble": float(np.abs(raw.mean[known, j] - values[known, j]).mean()),
                    "mae_online": float(np.abs(mean[known, j] - values[known, j]).mean()),
                }
    for prop in properties:
        summary.setdefault(prop, {"labels": 0.0, "trust": trust[prop]})
    update = SurrogateUpdate(labels=len(rows), through_iteration=through if rows else None, trigger=trigger, properties=summary)
    if rows:
        logger.info("online surrogate: %d labels through iteration %s (%s); %s", len(rows), through, trigger,
                    ", ".join(f"{p} MAE {v['mae_ensemble']:.3g} → {v['mae_online']:.3g}" for p, v in summary.items() if "mae_online" in v))
    return OnlineSurrogate(surrogate, gp, trust, update)
