"""A campaign outside the shipped training data (Li–Mn–O, CHGNet oracle): substitution vs random search vs a composite of both with the bandit, same oracle budget and seeds, stable / unique / novel / S.U.N. per 100 oracle calls with bootstrap intervals, in one run.

Every arm runs the same campaign (objective ``sun``, elements Li, Mn, O, at most 12 atoms, the
random strategy, CHGNet relaxing and the hull judging) with only the generator changed:

* ``substitution``: ion exchange and partial substitution into the prototype library
  (:mod:`crystaloop.generator.substitution`), substitutions sampled at temperature 1 (at 0 every
  call returns the same few most probable ones, so later iterations add nothing new);
* ``random_search``: random symmetric crystals (pyxtal; :mod:`crystaloop.generator.random_search`);
* ``composite + bandit``: both as arms at 0.5 / 0.5, moved by Thompson sampling on S.U.N. hits
  per oracle call with a 0.15 floor (:mod:`crystaloop.loop.allocation`).

There is no trained diffusion model for this system, so no diffusion arm. The hull holds the
elements, the prototype competing phases of Li–O, Mn–O and Li–Mn–O (built once, before the arms,
and copied into each campaign's own oracle cache so that no campaign sees another's relaxations)
and what the campaign itself relaxed; the ``coverage`` column counts the evaluated candidates by
hull coverage class. Novelty has no training split to check against (none of these generators is
trained), so "novel" means "not matching an imported structure" and equals "evaluated" here;
"unique" is against the campaign's earlier evaluated candidates. Rates are pooled over the seeds
per 100 oracle calls (failed calls count in the denominator); the interval is the 2.5–97.5 %
percentile of 4000 bootstrap resamples of the oracle calls. ``seconds`` is the sum of the
campaigns' iteration times as their reports record them (the shared phase build is reported on its
own row). Everything lives under ``runs/bench/loop_anychem/<quick|full>-<settings hash>/`` (the
phase cache, and per campaign its store and oracle cache), so an interrupted run resumes: the phase
build is skipped once done, an existing oracle cache is kept, and each campaign's finished
iterations are read back from its store (``run_campaign``); ``fresh=True`` starts over. ``quick=True``: 2 seeds × 2 iterations ×
8 candidates × 3 oracle calls, 60 relaxation steps, 12 prototype structures per subsystem; full:
3 seeds × 4 × 24 × 6, 200 steps, 40.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import time
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch

from crystaloop.data.store import CandidateStore
from crystaloop.loop.campaign import run_campaign
from crystaloop.loop.components import build_components
from crystaloop.loop.config import CampaignConfig
from crystaloop.loop.sun import campaign_sun

logger = logging.getLogger(__name__)

RUNS = Path("runs/bench/loop_anychem")

ELEMENTS = ("Li", "Mn", "O")
SUBSTITUTION = {"kind": "substitution", "prototypes": True, "max_atoms": 12, "temperature": 1.0}
RANDOM_SEARCH = {"kind": "random_search", "max_atoms": 12}
ARMS: dict[str, dict[str, Any]] = {
    "substitution": {"generator": SUBSTITUTION},
    "random_search": {"generator": RANDOM_SEARCH},
    "composite + bandit": {
        "generator": {"kind": "composite", "arms": [{"name": "substitution", "share": 0.5, "generator": SUBSTITUTION},
                                                    {"name": "random_search", "share": 0.5, "generator": RANDOM_SEARCH}]},
        "strategy": {"kind": "random", "allocation": {"kind": "bandit", "floor": 0.15}},
    },
}


def _sizes(quick: bool) -> dict[str, Any]:
    if quick:
        return {"seeds": (0, 1), "budget": {"iterations": 2, "candidates_per_iteration": 8, "oracle_calls_per_iteration": 3},
                "max_steps": 60, "phases": 12}
    return {"seeds": (0, 1, 2), "budget": {"iterations": 4, "candidates_per_iteration": 24, "oracle_calls_per_iteration": 6},
            "max_steps": 200, "phases": 40}


def campaign(arm: str, seed: int, cache: Path, quick: bool) -> CampaignConfig:
    """The campaign of ``arm`` for ``seed``, its oracle cache at ``cache``."""
    sizes = _sizes(quick)
    payload: dict[str, Any] = {
        "name": f"anychem-{arm.split()[0]}-{seed}",
        "objectives": [{"property": "sun", "goal": "maximise"}],
        "constraints": {"elements": list(ELEMENTS), "max_atoms": 12},
        "budget": sizes["budget"],
        "strategy": {"kind": "random"},
        "oracle": {"kind": "chgnet", "measure": ["energy_per_atom", "e_above_hull"], "max_steps": sizes["max_steps"],
                   "cache_url": f"sqlite:///{cache}", "competing_phases": {"max_structures_per_subsystem": sizes["phases"]}},
        "seed": seed,
    }
    payload.update(ARMS[arm])
    return CampaignConfig.model_validate(payload)


def _copy_db(source: Path, target: Path) -> None:
    for suffix in ("", "-wal", "-shm"):
        if Path(f"{source}{suffix}").exists():
            shutil.copyfile(f"{source}{suffix}", f"{target}{suffix}")


def _interval(k: int, n: int, rng: np.random.Generator) -> str:
    """``rate [low, high]`` per 100 calls: ``k`` of ``n`` calls, percentile bootstrap over the calls."""
    if n == 0:
        return "n/a"
    resampled = rng.binomial(n, k / n, size=4000) / n * 100.0  # resampling n calls with replacement
    low, high = np.percentile(resampled, [2.5, 97.5])
    return f"{100.0 * k / n:.1f} [{low:.1f}, {high:.1f}]"


def folder_for(quick: bool) -> Path:
    """The run's folder: sizes and arm settings hashed into its name, so changed settings never resume old files."""
    settings = json.dumps({"sizes": _sizes(quick), "arms": ARMS, "elements": ELEMENTS}, sort_keys=True, default=list)
    return RUNS / f"{'quick' if quick else 'full'}-{hashlib.sha256(settings.encode()).hexdigest()[:10]}"


def _build_phases(cache: Path, quick: bool) -> None:
    """Relax the elements and the prototype competing phases into the oracle cache at ``cache``."""
    oracle = campaign("substitution", 0, cache, quick).oracle.build()
    oracle.hull.phase_diagram(list(ELEMENTS))


def shared_phases(folder: Path, quick: bool) -> tuple[Path, float]:
    """The oracle cache holding the elements and prototype phases (built once; ``phases.json`` marks it done)
    and the seconds its build took."""
    cache, done = folder / "phases.db", folder / "phases.json"
    if done.exists():
        return cache, float(json.loads(done.read_text())["seconds"])
    start = time.perf_counter()
    _build_phases(cache, quick)
    seconds = round(time.perf_counter() - start, 1)
    done.write_text(json.dumps({"seconds": seconds}))
    return cache, seconds


class ArmSeedResult(NamedTuple):
    """One campaign's outcome: its S.U.N. summary (``None`` when nothing was summarised), last arm
    shares (``None`` without a composite), iteration seconds and failed oracle calls."""

    summary: Any
    shares: dict[str, float] | None
    seconds: float
    failed: int


def _run_one(arm: str, seed: int, folder: Path, seed_cache: Path, quick: bool) -> ArmSeedResult:
    """Run (or resume) the campaign of ``arm`` for ``seed`` in ``folder``."""
    torch.set_num_threads(1)
    tag = f"{arm.split()[0]}-{seed}"
    cache = folder / f"oracle-{tag}.db"
    if not cache.exists():  # a resumed campaign keeps its own relaxations
        _copy_db(seed_cache, cache)
    config = campaign(arm, seed, cache, quick)
    with CandidateStore(f"sqlite:///{folder / f'store-{tag}.db'}") as store:
        reports = run_campaign(build_components(config), store, config)
    total = campaign_sun(r.sun for r in reports)
    logger.info("%s seed %d: %s", arm, seed, total.describe() if total else "no S.U.N. summary")
    shares = reports[-1].arms.shares if reports[-1].arms is not None else None
    return ArmSeedResult(total, shares, sum(r.seconds for r in reports), sum(r.failed for r in reports))


def run(quick: bool = False, fresh: bool = False, jobs: int = 1) -> list[dict]:
    """The table; ``jobs`` campaigns run at once in separate processes (each campaign has its own store
    and oracle cache, so they share nothing but the phase cache they were copied from)."""
    torch.set_num_threads(1)
    sizes = _sizes(quick)
    folder = folder_for(quick)
    if fresh and folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True, exist_ok=True)
    seed_cache, phase_seconds = shared_phases(folder, quick)
    tasks = [(arm, seed) for arm in ARMS for seed in sizes["seeds"]]
    if jobs > 1:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
            futures = [pool.submit(_run_one, arm, seed, folder, seed_cache, quick) for arm, seed in tasks]
            results = [f.result() for f in futures]
    else:
        results = [_run_one(arm, seed, folder, seed_cache, quick) for arm, seed in tasks]
    rows: list[dict] = [{"arm": "shared hull (elements + prototype phases)", "seeds": "", "seconds": phase_seconds}]
    for arm in ARMS:
        mine = [result for (name, _), result in zip(tasks, results, strict=True) if name == arm]
        totals = [each.summary for each in mine if each.summary is not None]
        shares = [each.shares for each in mine if each.shares is not None]
        rows.append(_row(arm, sizes, totals, sum(each.failed for each in mine), sum(each.seconds for each in mine), shares))
    return rows


def _row(arm: str, sizes: dict[str, Any], totals: list, failed: int, seconds: float, shares: list[dict[str, float]]) -> dict:
    rng = np.random.default_rng(0)
    calls = sum(t.oracle_calls for t in totals)
    coverage: dict[str, int] = {}
    for t in totals:
        for kind, count in t.coverage.items():
            coverage[kind] = coverage.get(kind, 0) + count
    row = {
        "arm": arm,
        "seeds": len(sizes["seeds"]),
        "oracle calls": calls,
        "failed calls": failed,
        "stable / 100 calls": _interval(sum(t.stable for t in totals), calls, rng),
        "unique / 100": _interval(sum(t.unique for t in totals), calls, rng),
        "novel / 100": _interval(sum(t.novel for t in totals), calls, rng),
        "S.U.N. / 100": _interval(sum(t.sun for t in totals), calls, rng),
        "S.U.N. at 0 eV / 100": _interval(sum(t.sun_strict for t in totals), calls, rng),
        "coverage": ", ".join(f"{k} {v}" for k, v in sorted(coverage.items())) or "none",
        "last shares": "; ".join(", ".join(f"{a} {s:.2f}" for a, s in each.items()) for each in shares) or "",
        "seconds": round(seconds, 1),
    }
    return row


if __name__ == "__main__":
    from benchmarks.run_all import run_standalone

    run_standalone(run, __doc__, {"--fresh": {"action": "store_true", "help": "start over instead of resuming runs/bench/loop_anychem"},
                                  "--jobs": {"type": int, "default": 1, "help": "campaigns run at once, one process each"}})
