"""The Li–Mn–O composite example campaign loads and runs (tiny budget, CHGNet, no prototype phases)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from crystaloop.data.store import CandidateStore
from crystaloop.loop.campaign import iteration_candidates, run_campaign
from crystaloop.loop.components import build_components
from crystaloop.loop.config import load_campaign_config

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "li-mn-o-composite.yaml"


@pytest.mark.slow
def test_li_mn_o_composite_example_runs_tiny(tmp_path: Path) -> None:
    torch.set_num_threads(1)
    config = load_campaign_config(EXAMPLE)
    oracle = config.oracle.model_copy(update={"cache_url": f"sqlite:///{tmp_path / 'oracle.db'}", "max_steps": 20,
                                              "competing_phases": config.oracle.competing_phases.model_copy(update={"enabled": False})})
    tiny = config.model_copy(update={"budget": config.budget.model_copy(update={"iterations": 2, "candidates_per_iteration": 8, "oracle_calls_per_iteration": 2}),
                                     "oracle": oracle})
    with CandidateStore(f"sqlite:///{tmp_path / 's.db'}") as store:
        reports = run_campaign(build_components(tiny), store, tiny)
        candidates = iteration_candidates(store, tiny.name)
    assert [r.iteration for r in reports] == [0, 1]
    assert {c.provenance.arm for c in candidates} == {"substitution", "random_search"}
    assert all(set(c.crystal.elements) <= {"Li", "Mn", "O"} and c.crystal.n_sites <= 12 for c in candidates)
    for report in reports:
        assert report.arms is not None and report.arms.kind == "bandit" and report.oracle_calls == 2
        assert sum(report.arms.generated.values()) == report.generated
        assert min(report.arms.shares.values()) >= 0.15 - 1e-9
