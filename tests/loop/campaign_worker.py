"""A campaign process for the kill-and-resume test: ``python campaign_worker.py STORE_URL``.

Replay generator and oracle on perov_5/val, the shipped dir_gap surrogate, active learning; the
oracle sleeps 0.3 s per call so the parent can kill the process mid-iteration.
"""

from __future__ import annotations

import sys
import time

import torch

from crystaloop.data.store import CandidateStore
from crystaloop.loop.campaign import run_campaign
from crystaloop.loop.components import build_components
from crystaloop.loop.config import CampaignConfig

CONFIG = {
    "name": "resume-test",
    "objectives": [{"property": "heat_ref", "goal": "minimise", "units": "eV"}],
    "budget": {"iterations": 3, "candidates_per_iteration": 24, "oracle_calls_per_iteration": 3},
    "strategy": {"kind": "al", "acquisition": "ucb"},
    "generator": {"kind": "dataset-replay", "dataset": "perov_5/val"},
    "surrogates": [{"kind": "shipped", "name": "perov_5-heat_ref"}],
    "oracle": {"kind": "replay", "dataset": "perov_5/val", "measure": ["heat_ref"]},
}


class SlowOracle:
    def __init__(self, inner, delay: float) -> None:  # noqa: ANN001
        self.inner, self.delay = inner, delay
        self.name, self.properties = inner.name, inner.properties

    def evaluate(self, crystals):  # noqa: ANN001, ANN201
        time.sleep(self.delay)
        return self.inner.evaluate(crystals)


def main(url: str) -> None:
    torch.set_num_threads(1)
    config = CampaignConfig.model_validate(CONFIG)
    components = build_components(config)
    components.oracle = SlowOracle(components.oracle, 0.3)
    with CandidateStore(url) as store:
        run_campaign(components, store, config)


if __name__ == "__main__":
    main(sys.argv[1])
