"""Flow overhead: one campaign iteration through Prefect versus `run_iteration` called directly.

Same campaign config and seed, a fresh SQLite store per run, components (checkpoints, CHGNet)
built inside the timed call on both paths, order alternated across repeats,
all in one run; medians over 5 repeats (a shared machine is noisy). "direct" builds the components and calls ``loop.campaign.run_iteration`` (no
Prefect); "flow" runs ``campaign_flow`` with one iteration against a real local Prefect server
(started here on a free loopback port, as ``crystaloop server start`` does), with and without
artifacts (markdown summary, table, progress, discovery-curve PNG). Both paths reach the same
candidate set (checked). Campaigns:

* ``replay``: perov_5/val replayed as generator and oracle (DFT ``heat_ref``), the shipped
  surrogate, AL selection: a fast iteration, so the overhead shows in full;
* ``chgnet`` (not with ``--quick``): the shipped perov_5 generator (DDIM, 50 steps), the shipped
  band-gap surrogate, BO selection, 3 CHGNet relaxations: a real iteration.

Run ``python -m benchmarks.bench_flow_overhead`` (``--quick``: replay only, 1 repeat).
"""

from __future__ import annotations

import logging
import os
import socket
import statistics
import tempfile
import time
from pathlib import Path

import torch

from crystaloop.data.store import CandidateStore
from crystaloop.loop.campaign import iteration_candidates, run_iteration
from crystaloop.loop.components import build_components
from crystaloop.loop.config import CampaignConfig

logger = logging.getLogger("crystaloop.benchmarks.flow_overhead")


def _replay_config() -> CampaignConfig:
    return CampaignConfig.model_validate({
        "name": "overhead-replay",
        "seed": 0,
        "objectives": [{"property": "heat_ref", "goal": "minimise", "units": "eV", "threshold": -0.5}],
        "budget": {"iterations": 1, "candidates_per_iteration": 32, "oracle_calls_per_iteration": 4},
        "strategy": {"kind": "al", "acquisition": "ucb"},
        "generator": {"kind": "dataset-replay", "dataset": "perov_5/val"},
        "surrogates": [{"kind": "shipped", "name": "perov_5-heat_ref"}],
        "oracle": {"kind": "replay", "dataset": "perov_5/val", "measure": ["heat_ref"]},
    })


def _chgnet_config() -> CampaignConfig:
    return CampaignConfig.model_validate({
        "name": "overhead-chgnet",
        "seed": 0,
        "objectives": [{"property": "dir_gap", "goal": "target", "window": [1.5, 3.0], "units": "eV"}],
        "constraints": {"max_atoms": 5, "min_atoms": 5},
        "budget": {"iterations": 1, "candidates_per_iteration": 16, "oracle_calls_per_iteration": 3},
        "strategy": {"kind": "bo", "min_labels": 4},
        "generator": {"kind": "diffusion", "checkpoint": "perov_5", "steps": 50, "method": "ddim"},
        "surrogates": [{"kind": "shipped", "name": "perov_5-dir_gap"}],
        "oracle": {"kind": "chgnet", "measure": ["energy_per_atom"], "fmax": 0.1, "max_steps": 50},
    })


def _snapshot(url: str, campaign: str) -> list[tuple[str, str]]:
    with CandidateStore(url) as store:
        return sorted((c.id, c.status.value) for c in iteration_candidates(store, campaign))


def _direct(config: CampaignConfig, folder: Path, tag: str) -> tuple[float, list]:
    url = f"sqlite:///{folder / f'direct-{tag}.db'}"
    started = time.perf_counter()
    with CandidateStore(url) as store:
        run_iteration(build_components(config), store, config, 0)
    return time.perf_counter() - started, _snapshot(url, config.name)


def _flow(config: CampaignConfig, folder: Path, tag: str, artifacts: bool) -> tuple[float, list]:
    from crystaloop.flows.campaign import campaign_flow
    from crystaloop.flows.config import FlowSettings
    from crystaloop.flows.runtime import close_stores, uninstall_components

    uninstall_components(config)  # the flow builds its components too, as a fresh scheduled run does
    url = f"sqlite:///{folder / f'flow-{tag}.db'}"
    settings = FlowSettings(artifacts=artifacts, cache_scores=False, report_dir=str(folder / f"figures-{tag}"))
    started = time.perf_counter()
    state = campaign_flow(config, store_url=url, settings=settings, return_state=True)
    seconds = time.perf_counter() - started
    close_stores()
    if not state.is_completed():
        raise RuntimeError(f"flow run of {config.name} ended {state.type}: {state.message}")
    return seconds, _snapshot(url, config.name)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def run(quick: bool = False) -> list[dict]:
    """Rows: campaign, path, repeats, median/min/max wall seconds, median overhead vs direct."""
    from crystaloop.flows.server import ServerSettings, client_environment, start_server, wait_until_healthy

    torch.set_num_threads(1)
    repeats = 1 if quick else 5
    configs = [_replay_config()] + ([] if quick else [_chgnet_config()])
    with tempfile.TemporaryDirectory(prefix="crystaloop-overhead-") as tmp:
        folder = Path(tmp)
        settings = ServerSettings(port=_free_port(), home=str(folder / "prefect"))
        log = folder / "server.log"
        process = start_server(settings, log_path=log)
        saved = dict(os.environ)
        try:
            wait_until_healthy(settings, process, log_path=log)
            os.environ.update(client_environment(settings), PREFECT_HOME=str(folder / "client"))
            from prefect.settings import PREFECT_API_URL, PREFECT_HOME, temporary_settings

            with temporary_settings(updates={PREFECT_API_URL: settings.api_url, PREFECT_HOME: str(folder / "client")}):
                rows = _measure(configs, folder, repeats)
        finally:
            os.environ.clear()
            os.environ.update(saved)
            process.terminate()
            process.wait(timeout=60)
    return rows


def _measure(configs: list[CampaignConfig], folder: Path, repeats: int) -> list[dict]:
    rows: list[dict] = []
    for config in configs:
        _direct(config, folder, f"{config.name}-warm")  # loads checkpoints, CHGNet, data caches once
        times: dict[str, list[float]] = {"direct": [], "flow": [], "flow, no artifacts": []}
        for r in range(repeats):
            order = list(times) if r % 2 == 0 else list(reversed(times))
            snapshots = {}
            for path in order:
                tag = f"{config.name}-{r}-{path.replace(', ', '-').replace(' ', '-')}"
                if path == "direct":
                    seconds, snapshots[path] = _direct(config, folder, tag)
                else:
                    seconds, snapshots[path] = _flow(config, folder, tag, artifacts=path == "flow")
                times[path].append(seconds)
                logger.info("%s %s repeat %d: %.2f s", config.name, path, r, seconds)
            if len({tuple(i for i, _ in snap) for snap in snapshots.values()}) != 1:
                raise RuntimeError(f"{config.name}: the flow and the direct call produced different candidates")
        base = statistics.median(times["direct"])
        for path, values in times.items():
            median = statistics.median(values)
            rows.append({"campaign": config.name.removeprefix("overhead-"), "path": path, "repeats": repeats,
                         "median_s": median, "min_s": min(values), "max_s": max(values),
                         "overhead_s": median - base, "ratio": median / base})
    return rows


if __name__ == "__main__":
    from benchmarks.run_all import run_standalone

    run_standalone(run, __doc__)
