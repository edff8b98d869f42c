"""The online surrogate: oracle labels correct the scoring surrogate; over-prediction shrinks trust
and triggers the retrain."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from crystaloop.data.records import CandidateStatus
from crystaloop.data.store import CandidateStore
from crystaloop.loop.campaign import iteration_candidates, online_surrogate, run_campaign
from crystaloop.loop.components import build_components
from crystaloop.loop.config import CampaignConfig
from crystaloop.loop.online import fit_online, measured_matrix, retrain_point, trust_factors
from crystaloop.surrogates.base import SurrogateSet
from crystaloop.surrogates.testing import OffsetSurrogate

torch.set_num_threads(1)
SHIFT = -1.0  # eV: the wrapped surrogate promises heat_ref 1 eV lower (better) than it should


def config(**overrides) -> CampaignConfig:
    payload = {
        "name": "online",
        "objectives": [{"property": "heat_ref", "goal": "minimise", "units": "eV"}],
        "budget": {"iterations": 2, "candidates_per_iteration": 12, "oracle_calls_per_iteration": 5},
        "strategy": {"kind": "al", "min_labels": 3},
        "generator": {"kind": "dataset-replay", "dataset": "perov_5/val"},
        "surrogates": [{"kind": "shipped", "name": "perov_5-heat_ref"}],
        "oracle": {"kind": "replay", "dataset": "perov_5/val", "measure": ["heat_ref"]},
        "guards": {"exploitation": {"max_ood": 100.0}},
    }
    payload.update(overrides)
    return CampaignConfig.model_validate(payload)


def test_retrain_point_and_trust_follow_the_flags():
    every, on_flag = config(), config(retrain_surrogate=False)
    assert retrain_point([], every) == (None, "every iteration")
    assert retrain_point([{"a": False}] * 3, every) == (2, "every iteration")
    assert retrain_point([{"a": False}] * 3, on_flag) == (None, "none")
    assert retrain_point([{"a": True}, {"a": False}, {"a": False}], on_flag) == (0, "over-prediction at iteration 0")
    trust = trust_factors([{"a": True}, {"a": False}, {"a": True}, {"a": True}], ["a", "b"], every)
    assert trust == {"a": 0.25, "b": 1.0}
    assert trust_factors([{"a": True}] * 10, ["a"], every)["a"] == every.guards.exploitation.min_trust


def test_over_predicted_picks_shrink_trust_and_retrain_the_surrogate(tmp_path):
    campaign = config(retrain_surrogate=False)  # only the residual watch may trigger the refit
    components = build_components(campaign)
    components.surrogate = SurrogateSet([OffsetSurrogate(components.surrogate.members[0], SHIFT)])
    with CandidateStore(f"sqlite:///{tmp_path / 's.db'}") as store:
        first, second = run_campaign(components, store, campaign)
        assert first.residuals["heat_ref"]["over_predicted"]  # measured ≈ 1 eV worse than promised
        assert first.surrogate.labels == 0 and first.surrogate.trigger == "none"
        update = second.surrogate
        assert update.trigger == "over-prediction at iteration 0" and update.labels == first.evaluated
        assert update.properties["heat_ref"]["trust"] == pytest.approx(campaign.guards.exploitation.trust_decay)
        assert update.properties["heat_ref"]["mae_online"] < 0.5 * update.properties["heat_ref"]["mae_ensemble"]

        labelled = iteration_candidates(store, campaign.name, 0, [CandidateStatus.EVALUATED])
        truth = measured_matrix(labelled, ["heat_ref"])[:, 0]
        crystals = [c.crystal for c in labelled]
        online = online_surrogate(components, store, campaign, 1)
        before = components.surrogate.predict(crystals).mean[:, 0]
        after = online.predict(crystals).mean[:, 0]
        assert np.abs(after - truth).mean() < 0.5 * np.abs(before - truth).mean()  # moved toward the labels
        # the iteration scored by the updated surrogate stored its corrected predictions
        scored = iteration_candidates(store, campaign.name, 1, [CandidateStatus.SCORED, CandidateStatus.EVALUATED])
        raw = components.surrogate.predict([c.crystal for c in scored])
        stored = np.array([c.predictions["heat_ref"][0] for c in scored])
        assert np.abs(stored - raw.mean[:, 0]).mean() > 0.5  # the 1 eV shift is largely undone
        # the same labels with retraining every iteration give the same correction, full trust
        every = fit_online(components.surrogate, labelled, config(), [{"heat_ref": False}])
        assert every.update.trigger == "every iteration" and every.trust == {"heat_ref": 1.0}
        assert np.abs(every.predict(crystals).mean[:, 0] - truth).mean() < 0.5 * np.abs(before - truth).mean()
