"""A fixed-seed campaign record, to show that a refactor left the loop's behaviour unchanged.

Runs the four strategies (random, bo, al, rl) for 3 iterations × 24 candidates × 4 oracle calls
with seed 3 on ``perov_5/val`` replayed (generator and oracle) with the shipped ``heat_ref``
surrogate, and a random campaign of the shipped 2-step consistency generator measured by CHGNet
(energy and hull distance, 2 iterations × 12 candidates × 3 calls); writes every candidate's id,
status, iteration, guard verdicts, predictions and measurements as JSON (about 2 min on 2 cores)::

    python -m crystaloop.benchmarks.campaign_record --out before.json   # on the old commit
    python -m crystaloop.benchmarks.campaign_record --out after.json    # on the new one
    cmp before.json after.json

The config is written out in full, so a release that adds a setting with a default keeps it.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import tempfile
from pathlib import Path

import torch

from crystaloop.data.store import CandidateStore
from crystaloop.loop.campaign import iteration_candidates, run_campaign
from crystaloop.loop.components import build_components
from crystaloop.loop.config import CampaignConfig

logger = logging.getLogger("crystaloop.benchmarks.campaign_record")

STRATEGIES = ("random", "bo", "al", "rl", "mlip")


def campaign(strategy: str, folder: Path) -> CampaignConfig:
    """The recorded campaign for ``strategy`` (``mlip``: random strategy, CHGNet oracle)."""
    common = {
        "name": f"record-{strategy}",
        "objectives": [{"property": "heat_ref", "goal": "minimise", "units": "eV"}],
        "budget": {"iterations": 3, "candidates_per_iteration": 24, "oracle_calls_per_iteration": 4},
        "strategy": {"kind": strategy},
        "generator": {"kind": "dataset-replay", "dataset": "perov_5/val"},
        "surrogates": [{"kind": "shipped", "name": "perov_5-heat_ref"}],
        "oracle": {"kind": "replay", "dataset": "perov_5/val", "measure": ["heat_ref"]},
        "seed": 3,
    }
    if strategy == "mlip":
        common |= {
            "budget": {"iterations": 2, "candidates_per_iteration": 12, "oracle_calls_per_iteration": 3},
            "strategy": {"kind": "random"},
            "generator": {"kind": "diffusion", "checkpoint": "perov_5_consistency", "steps": 2, "method": "consistency"},
            "oracle": {"kind": "chgnet", "measure": ["energy_per_atom", "e_above_hull"], "cache_url": f"sqlite:///{folder / 'oracle.db'}",
                       "competing_phases": {"enabled": False}},
        }
    return CampaignConfig.model_validate(common)


def record(strategy: str, folder: Path) -> list[dict]:
    """Every candidate of the strategy's campaign, in store order, as plain JSON values."""
    config = campaign(strategy, folder)
    with CandidateStore(f"sqlite:///{folder / f'{strategy}.db'}") as store:
        run_campaign(build_components(config), store, config)
        rows = []
        for c in iteration_candidates(store, config.name):
            rows.append({
                "id": c.id,
                "status": c.status.value,
                "iteration": c.provenance.iteration,
                "verdicts": [(v.guard, v.ok) for v in c.verdicts],
                "predictions": {k: (round(mean, 6), round(std, 6)) for k, (mean, std, _) in sorted(c.predictions.items())},
                "measurements": [(m.property, m.value, m.status) for m in c.measurements],
            })
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="JSON file to write")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    torch.set_num_threads(1)
    out = args.out.resolve()
    with tempfile.TemporaryDirectory() as tmp:
        os.chdir(tmp)  # the RL policy checkpoints go to runs/ under the working directory
        result = {s: record(s, Path(tmp)) for s in STRATEGIES}
    out.write_text(json.dumps(result, indent=1, sort_keys=True))
    logger.warning("wrote %s: %s", out, {s: len(rows) for s, rows in result.items()})


if __name__ == "__main__":
    main()
