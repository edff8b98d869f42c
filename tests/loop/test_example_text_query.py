"""The text-query example campaign loads and runs end to end through the latent prior (tiny budget, CHGNet)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from crystaloop.data.store import CandidateStore
from crystaloop.loop.campaign import iteration_candidates, run_campaign
from crystaloop.loop.components import build_components
from crystaloop.loop.config import load_campaign_config

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "perovskite-text-query.yaml"


@pytest.mark.slow
def test_text_query_example_runs_through_the_prior_and_keeps_what_the_prompt_names(tmp_path: Path) -> None:
    torch.set_num_threads(1)
    config = load_campaign_config(EXAMPLE)
    assert config.query is not None and config.query.route == "prior"
    oracle = config.oracle.model_copy(update={"cache_url": f"sqlite:///{tmp_path / 'oracle.db'}", "max_steps": 20})
    tiny = config.model_copy(update={"budget": config.budget.model_copy(update={"iterations": 1, "candidates_per_iteration": 6,
                                                                                "oracle_calls_per_iteration": 2}),
                                     "oracle": oracle})
    with CandidateStore(f"sqlite:///{tmp_path / 's.db'}") as store:
        reports = run_campaign(build_components(tiny), store, tiny)
        candidates = iteration_candidates(store, tiny.name)
    assert [r.iteration for r in reports] == [0] and reports[0].oracle_calls == 2
    assert candidates and all({"Ti", "O"} <= set(c.crystal.elements) and c.crystal.n_sites == 5 for c in candidates)
    latents = np.array([c.condition.embedding for c in candidates if c.condition is not None and c.condition.embedding is not None])
    assert len(latents) == len(candidates)  # every candidate records the latent it was decoded from
    assert len({tuple(np.round(row, 6)) for row in latents}) > 1  # the prior draws one latent per sample, not one for all
