"""Stability against DFT: crystaloop's e_above_hull with an elements-only hull and with prototype competing phases, beside perov_5's DFT heat_all, for CHGNet and SevenNet-0.

Rows: a seeded sample (seed 0) of the shipped perov_5 *val* split (``data/shipped/perov_5/val``;
no shipped model trained on it). Each structure is relaxed by the oracle (its settings,
``RelaxConfig`` defaults: FIRE, fmax 0.1 eV/Å, ≤ 200 steps, cell relaxed, one torch thread)
in a cache of its own, so the candidates never enter each other's hulls. Then:

* **elements**: the formation energy against the oracle's elemental references, clipped at 0:
  the hull the project had before prototype phases (every compound on it unless it lies above
  the elements);
* **prototype**: :class:`~crystaloop.surrogates.hull.EnergyAboveHull` with the binary and
  ternary prototype phases of each system built, relaxed and cached by the same oracle
  (:mod:`crystaloop.surrogates.phases`), in a second cache shared by all rows.

DFT side: ``heat_all`` of Castelli et al. (EES 5, 5814 and 5, 9034, 2012), the heat of formation
against all their competing reference systems. Its unit is not stated in the CSV; the
``slope_heat_all_per_eV_atom`` column fits heat_all against the prototype hull distance
(eV/atom): a slope near 5 would mean eV per 5-atom formula unit, a slope near 1 eV/atom (the
MLIPs' known softening, which compresses high energies, pulls the slope above 1, not below).
DFT-stable: heat_all ≤ 0.5. crystaloop's
stable call: e_above_hull ≤ 0.1 eV/atom. Reported per oracle and hull: Spearman correlation
(of the clipped value, and of the signed hull distance, which does not tie at 0), precision and
recall of the stable call, precision over the base rate, rows evaluated and failed, and the
oracle seconds spent (candidate relaxations; phase building, cold cache). The agreement rows
compare CHGNet and SevenNet on the rows both evaluated. Results persist per row in
``runs/bench/hull_dft/``, so an interrupted run resumes (``--fresh`` starts over).
"""

from __future__ import annotations

import json
import logging
import math
import time
from pathlib import Path

import numpy as np

from crystaloop.data.datasets import load_dataset

logger = logging.getLogger(__name__)

OUT = Path("runs/bench/hull_dft")
STABLE_E_HULL = 0.1  # eV/atom
DFT_STABLE = 0.5  # heat_all, in its own unit (see the module docstring)
ORACLES = ("chgnet", "sevennet")


def _sample(n: int, seed: int = 0) -> list[tuple[str, object, float]]:
    dataset = load_dataset("perov_5/val")
    order = np.random.default_rng(seed).permutation(len(dataset))[:n]
    heat = dataset.properties["heat_all"]
    return [(str(dataset.ids[i]), dataset.crystals[i], float(heat[i])) for i in order]


def _oracles(name: str):
    from crystaloop.surrogates.oracles.cache import OracleCache
    from crystaloop.surrogates.oracles.registry import make_oracle

    OUT.mkdir(parents=True, exist_ok=True)
    candidates = make_oracle(name, cache=OracleCache(f"sqlite:///{OUT / f'{name}-candidates.db'}"))
    phases = make_oracle(name, cache=OracleCache(f"sqlite:///{OUT / f'{name}-phases.db'}"))
    return candidates, phases


def _evaluate(name: str, rows: list, fresh: bool, stored_only: bool = False) -> list[dict]:
    """Per-row results for one oracle (read back from the jsonl where present)."""
    from crystaloop.surrogates.hull import EnergyAboveHull

    path = OUT / f"{name}.jsonl"
    if fresh and path.exists():
        path.unlink()
    done = {}
    if path.exists():
        for line in path.read_text().splitlines():
            record = json.loads(line)
            done[record["id"]] = record
    todo = [] if stored_only else [r for r in rows if r[0] not in done]
    if todo:
        candidate_oracle, phase_oracle = _oracles(name)
        hull = EnergyAboveHull(phase_oracle)
        with path.open("a") as handle:
            for k, (row_id, crystal, heat) in enumerate(todo):
                started = time.perf_counter()
                relaxation = candidate_oracle.relax([crystal])[0]
                relax_seconds = relaxation.seconds
                build = hull.build_phases(sorted(crystal.composition))
                measurement = hull.e_above_hull([crystal], relaxations=[relaxation])[0]
                record = {
                    "id": row_id,
                    "formula": crystal.reduced_formula,
                    "heat_all": heat,
                    "status": measurement.status,
                    "relax_status": relaxation.status,
                    "reason": measurement.reason[:300],
                    "e_above_hull": measurement.value if measurement.property == "e_above_hull" else None,
                    "structure_changed": bool(measurement.details.get("structure_changed")),
                    "relaxed_e_above_hull": measurement.details.get("relaxed_e_above_hull"),
                    "hull_distance": measurement.details.get("hull_distance"),
                    "coverage": measurement.details.get("coverage"),
                    "decomposition": measurement.details.get("decomposition"),
                    "elements_only": _elements_only(hull, crystal, relaxation),
                    "relax_seconds": relax_seconds,
                    "phase_seconds": build.seconds if build else 0.0,
                    "wall_seconds": time.perf_counter() - started,
                }
                handle.write(json.dumps(record) + "\n")
                handle.flush()
                done[row_id] = record
                logger.info(
                    "%s %d/%d %s heat_all %.2f → e_above_hull %s (%s) in %.0f s",
                    name, k + 1, len(todo), record["formula"], heat, record["e_above_hull"], record["coverage"], record["wall_seconds"],
                )  # fmt: skip
    return [done[r[0]] for r in rows if r[0] in done]


def _elements_only(hull, crystal, relaxation) -> float | None:
    """Formation energy (eV/atom) against the elemental references, or ``None``."""
    if relaxation.status != "ok" or relaxation.energy_per_atom is None:
        return None
    total = 0.0
    n = sum(crystal.composition.values())
    for element, count in crystal.composition.items():
        reference = hull.reference(element)
        if reference.status != "ok" or reference.energy_per_atom is None:
            return None
        total += count / n * reference.energy_per_atom
    return relaxation.energy_per_atom - total


def _spearman(x: list[float], y: list[float]) -> float:
    from scipy.stats import spearmanr

    if len(x) < 3:
        return math.nan
    return float(spearmanr(x, y).statistic)


def _scores(name: str, hull_name: str, records: list[dict], values: list[float | None], distances: list[float | None]) -> dict:
    pairs = [(v, d, r["heat_all"]) for v, d, r in zip(values, distances, records, strict=True) if v is not None]
    heat = [p[2] for p in pairs]
    called = [p[0] <= STABLE_E_HULL for p in pairs]
    truth = [h <= DFT_STABLE for h in heat]
    tp = sum(c and t for c, t in zip(called, truth, strict=True))
    precision = tp / sum(called) if sum(called) else math.nan
    recall = tp / sum(truth) if sum(truth) else math.nan
    base = sum(truth) / len(truth) if truth else math.nan
    return {
        "oracle": name,
        "hull": hull_name,
        "rows": len(records),
        "evaluated": len(pairs),
        "dft_stable": sum(truth),
        "called_stable": sum(called),
        "true_positives": tp,
        "precision": precision,
        "recall": recall,
        "base_rate": base,
        "precision_over_base": precision / base if base and base == base and precision == precision else math.nan,
        "spearman_value": _spearman([p[0] for p in pairs], heat),
        "spearman_signed": _spearman([p[1] for p in pairs], heat),
    }


def _summary(name: str, records: list[dict]) -> list[dict]:
    elements = [None if r["elements_only"] is None else max(0.0, r["elements_only"]) for r in records]
    a = _scores(name, "elements", records, elements, [r["elements_only"] for r in records])
    # a relaxation that changed the structure is a call of "not stable" (value +inf for ranking)
    changed = [r.get("structure_changed", False) for r in records]
    values = [math.inf if c else r["e_above_hull"] for r, c in zip(records, changed, strict=True)]
    b = _scores(name, "prototype", records, values, [r["hull_distance"] for r in records])
    b["spearman_value"] = _spearman(*_finite_pairs([r["e_above_hull"] for r in records], records))
    b["spearman_signed"] = _spearman(*_finite_pairs([r["hull_distance"] if not c else None for r, c in zip(records, changed, strict=True)], records))
    relaxed = [r.get("relaxed_e_above_hull") if c else r["e_above_hull"] for r, c in zip(records, changed, strict=True)]
    b["spearman_ignoring_changes"] = _spearman(*_finite_pairs(relaxed, records))
    b["structure_changed"] = sum(changed)
    relax = sum(r["relax_seconds"] for r in records)
    systems, phases = _phase_cost(name)
    a["oracle_seconds"] = relax
    b["oracle_seconds"] = relax + phases
    b["phase_seconds"] = phases
    b["subsystems_built"] = systems
    b["failed"] = sum(r["status"] != "ok" and not c for r, c in zip(records, changed, strict=True))
    slope = _slope([r["hull_distance"] for r in records], [r["heat_all"] for r in records])
    b["slope_heat_all_per_eV_atom"] = slope
    return [a, b]


def _finite_pairs(values: list[float | None], records: list[dict]) -> tuple[list[float], list[float]]:
    pairs = [(v, r["heat_all"]) for v, r in zip(values, records, strict=True) if v is not None and math.isfinite(v)]
    return [p[0] for p in pairs], [p[1] for p in pairs]


def _phase_cost(name: str) -> tuple[int, float]:
    """(subsystems built, oracle seconds spent building them) from the phase registry."""
    from sqlalchemy import text

    from crystaloop.surrogates.phase_registry import PhaseRegistry

    _, phase_oracle = _oracles(name)
    registry = PhaseRegistry(phase_oracle.cache)
    with registry.engine.connect() as connection:
        rows = connection.execute(text("SELECT seconds FROM hull_systems WHERE oracle_key = :key"), {"key": phase_oracle.cache_key()}).all()
    return len(rows), float(sum(r[0] for r in rows))


def _slope(x: list[float | None], y: list[float]) -> float:
    pairs = [(a, b) for a, b in zip(x, y, strict=True) if a is not None]
    if len(pairs) < 3:
        return math.nan
    xs, ys = np.array(pairs).T
    return float(np.polyfit(xs, ys, 1)[0])


def _agreement(results: dict[str, list[dict]]) -> list[dict]:
    if len(results) < 2:
        return []
    (n1, r1), (n2, r2) = list(results.items())[:2]
    by_id = {r["id"]: r for r in r2}
    both = [(r, by_id[r["id"]]) for r in r1 if r["id"] in by_id and r["e_above_hull"] is not None and by_id[r["id"]]["e_above_hull"] is not None]
    if not both:
        return []
    same = sum((a["e_above_hull"] <= STABLE_E_HULL) == (b["e_above_hull"] <= STABLE_E_HULL) for a, b in both)
    mae = float(np.mean([abs(a["e_above_hull"] - b["e_above_hull"]) for a, b in both]))
    rho = _spearman([a["hull_distance"] for a, _ in both], [b["hull_distance"] for _, b in both])
    return [{"oracle": f"{n1} vs {n2}", "hull": "prototype", "evaluated": len(both), "stable_call_agreement": same / len(both), "e_above_hull_mae": mae, "spearman_signed": rho}]


def plot(results: dict[str, list[dict]], path: Path) -> Path:
    """Scatter of DFT heat_all against the prototype hull distance, one panel per oracle."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(results), figsize=(5 * len(results), 4.2), squeeze=False)
    for ax, (name, records) in zip(axes[0], results.items(), strict=True):
        ok = [r for r in records if r["hull_distance"] is not None]
        ax.scatter([r["hull_distance"] for r in ok], [r["heat_all"] for r in ok], s=12, alpha=0.7, label="prototype hull")
        el = [r for r in records if r["elements_only"] is not None]
        ax.scatter([r["elements_only"] for r in el], [r["heat_all"] for r in el], s=8, alpha=0.4, marker="x", label="elements only")
        ax.axhline(DFT_STABLE, color="grey", lw=0.8, ls="--")
        ax.axvline(STABLE_E_HULL, color="grey", lw=0.8, ls=":")
        ax.set_xlabel(f"{name} hull distance (eV/atom)")
        ax.set_ylabel("DFT heat_all (Castelli et al.)")
        ax.set_title(name)
        ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def run(quick: bool = False, rows: int = 100, oracles: str = ",".join(ORACLES), fresh: bool = False, stored_only: bool = False) -> list[dict]:
    """Rows of the table (see the module docstring); ``quick`` evaluates 2 rows with CHGNet (a smoke
    run: its figure goes to ``runs/bench/hull_dft/``, not ``benchmarks/figures/``); ``stored_only``
    tabulates the rows each oracle has evaluated so far, computing nothing."""
    sample = _sample(2 if quick else rows)
    names = ["chgnet"] if quick else [n.strip() for n in oracles.split(",") if n.strip()]
    results = {name: _evaluate(name, sample, fresh, stored_only) for name in names}
    table = [row for name in names for row in _summary(name, results[name])]
    table += _agreement(results)
    figure = plot(results, (OUT if quick else Path(__file__).with_name("figures")) / "hull_dft.png")
    logger.info("figure: %s", figure)
    return table


if __name__ == "__main__":
    from benchmarks.run_all import run_standalone

    run_standalone(
        run,
        __doc__,
        {
            "--rows": {"type": int, "default": 100, "help": "perov_5 val rows to evaluate"},
            "--oracles": {"default": ",".join(ORACLES), "help": "comma-separated oracle names"},
            "--fresh": {"action": "store_true", "help": "forget stored per-row results"},
            "--stored-only": {"action": "store_true", "help": "tabulate stored rows only, compute nothing"},
        },
    )
