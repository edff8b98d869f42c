"""Posterior sampling diagnostics on a toy problem with an exact posterior (issue #10): DPS and exact guidance against the closed-form posterior, one run.

Two problems, fixed seeds (:mod:`crystaloop.benchmarks.posterior_toy`):

* ``2-D``: a 3-mode Gaussian mixture (weights 0.5 / 0.3 / 0.2, unequal shapes) observed through
  its first coordinate (A = [1, 0], σ_y = 0.2) at y = 2.0, which rules out mode 0 and leaves
  modes 1 (broad along x1) and 2 (narrow along x1) both plausible;
* ``16-D``: 4 modes (weights 0.4 / 0.3 / 0.2 / 0.1, random covariances), a random 4×16 A with
  unit rows, σ_y = 0.1; modes 0 and 1 differ only in the null space of A, so a y drawn from mode
  0 leaves both plausible.

Tables (``table`` column):

* ``mode weights``: sampler mode weights against the exact posterior weights (samples assigned to
  the component of maximum exact responsibility), TV, hallucination rate (samples in modes of
  exact weight < 1e-3), off-support rate (exact posterior log density below the 0.1 % quantile of
  exact draws), sliced W1 to exact draws, mean path-KL score, seconds. Samplers: the prior chain,
  exact guidance, DPS (Chung et al. 2023, normalised step) over ζ, the plug-in likelihood score
  (``dps_score``), and exact posterior draws as the Monte-Carlo floor.
* ``early stopping``: the same figures when the reverse chain stops at t and returns x̂_0(x_t).
* ``calibration``: over many measurements with known x_0: coverage of x_0 within radius r among
  k samples, Spearman(sample spread, error of the sample mean).
* ``ood``: ROC-AUC of the mean path-KL score, in-domain measurements against (a) ``far``: y moved
  by 3 standard deviations of y in a random direction and (b) ``mixture``: the average of two
  in-domain measurements (a two-phase pattern); the exact evidence −log p(y) as the ideal score.

Figures (full run only): ``benchmarks/figures/posterior_toy_samples.png`` (prior, exact
posterior and sampler draws on the 2-D problem) and ``posterior_toy_early_stopping.png``.

    python -m benchmarks.bench_posterior_toy [--quick] [--markdown tables.md]
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch

from crystaloop.benchmarks.posterior_toy import (
    GaussianMixturePrior,
    LinearMeasurement,
    PosteriorSamplerConfig,
    assign_modes,
    early_stopping_curve,
    exact_posterior,
    ood_measurements,
    sample_posterior,
)
from crystaloop.generator.posterior import diagnostics as diag

logger = logging.getLogger(__name__)

FIGURES = Path(__file__).resolve().parent / "figures"
DPS_ZETAS = (0.02, 0.05, 0.1, 0.2, 0.5, 1.0)
STOPS = (0, 5, 10, 20, 50, 100, 200, 300, 500, 700, 900)
Problem = tuple[str, GaussianMixturePrior, LinearMeasurement, np.ndarray]


def two_d_problem() -> Problem:
    """The 2-D problem of the module docstring."""
    prior = GaussianMixturePrior(
        [0.5, 0.3, 0.2],
        [[-2.0, 0.0], [1.5, 2.0], [2.0, -1.5]],
        [[[0.4, 0.1], [0.1, 0.3]], [[0.6, 0.2], [0.2, 0.3]], [[0.05, 0.0], [0.0, 0.4]]],
    )
    return "2-D", prior, LinearMeasurement([[1.0, 0.0]], 0.2), np.array([2.0])


def high_d_problem(seed: int = 1) -> Problem:
    """The 16-D problem of the module docstring (d = 16, m = 4, K = 4).

    Seed 1 gives exact weights 0.66 / 0.34 on the two plausible modes (seed 0: 0.97 / 0.03).
    """
    rng = np.random.default_rng(seed)
    d, m = 16, 4
    matrix = rng.standard_normal((m, d))
    matrix /= np.linalg.norm(matrix, axis=1, keepdims=True)
    means = 2.0 * rng.standard_normal((4, d))
    null = rng.standard_normal(d)
    null -= np.linalg.pinv(matrix) @ (matrix @ null)  # project onto the null space of A
    means[1] = means[0] + 4.0 * null / np.linalg.norm(null)
    covariances = []
    for _ in range(4):
        q, _ = np.linalg.qr(rng.standard_normal((d, d)))
        covariances.append(q @ np.diag(rng.uniform(0.05, 0.5, d)) @ q.T)
    prior = GaussianMixturePrior([0.4, 0.3, 0.2, 0.1], means, np.array(covariances))
    measurement = LinearMeasurement(matrix, 0.1)
    generator = torch.Generator().manual_seed(seed)
    x0 = prior.means[0] + torch.linalg.cholesky(prior.covariances[0]) @ torch.randn(d, generator=generator, dtype=torch.float64)
    y = measurement.measure(x0, generator=generator).numpy()
    return "16-D", prior, measurement, y


def _samplers(quick: bool) -> list[PosteriorSamplerConfig]:
    steps = 100 if quick else None
    configs = [PosteriorSamplerConfig(guidance="none", steps=steps), PosteriorSamplerConfig(guidance="exact", steps=steps)]
    configs += [PosteriorSamplerConfig(guidance="dps", zeta=zeta, steps=steps) for zeta in DPS_ZETAS]
    configs.append(PosteriorSamplerConfig(guidance="dps_score", zeta=1.0, steps=steps))
    if not quick:  # the DPS push per step is ζ: fewer steps, less push in all
        configs += [PosteriorSamplerConfig(guidance="dps", zeta=zeta, steps=100) for zeta in (0.05, 0.2)]
    return configs


def _label(config: PosteriorSamplerConfig) -> str:
    label = config.guidance if config.guidance in ("none", "exact") else f"{config.guidance} ζ={config.zeta:g}"
    return label if config.steps is None else f"{label}, {config.steps} steps"


def _quality(problem: Problem, x: np.ndarray, reference: np.ndarray) -> dict[str, Any]:
    """Mode weights and distances of samples ``x`` (n, d) to the exact posterior."""
    _, prior, measurement, y = problem
    posterior = exact_posterior(prior, measurement, y)
    report = diag.mode_weight_report(assign_modes(posterior, x), posterior.weights.numpy())
    log_density = posterior.log_prob(torch.as_tensor(x)).numpy()
    reference_density = posterior.log_prob(torch.as_tensor(reference)).numpy()
    row: dict[str, Any] = {f"w{k}": float(w) for k, w in enumerate(report.weights)}
    row.update({
        "tv": report.tv, "hallucination_%": 100 * report.hallucination_rate,
        "off_support_%": 100 * diag.outlier_rate(log_density, reference_density),
        "sliced_w1": diag.sliced_wasserstein1(x, reference, seed=0),
    })
    return row


def mode_weight_rows(problem: Problem, quick: bool) -> tuple[list[dict], dict[str, np.ndarray]]:
    """The ``mode weights`` table of one problem, and the samples by sampler label."""
    name, prior, measurement, y = problem
    n = 500 if quick else 4000
    posterior = exact_posterior(prior, measurement, y)
    exact_rows = {f"w{k}": float(w) for k, w in enumerate(posterior.weights)}
    rows = [{"table": "mode weights", "problem": name, "sampler": "exact posterior (closed form)", "n": "", **exact_rows}]
    reference = posterior.sample(n, generator=torch.Generator().manual_seed(1))[0].numpy()
    draws = posterior.sample(n, generator=torch.Generator().manual_seed(2))[0].numpy()
    samples = {"exact posterior draws": draws}
    rows.append({"table": "mode weights", "problem": name, "sampler": "exact posterior draws", "n": n, **_quality(problem, draws, reference)})
    for config in _samplers(quick):
        result = sample_posterior(prior, measurement, y, n, config, seed=0)
        x = result.x[0]
        samples[_label(config)] = x
        row = {"table": "mode weights", "problem": name, "sampler": _label(config), "n": n, **_quality(problem, x, reference)}
        row.update({"kl_mean": float(result.kl.mean()), "seconds": result.seconds})
        rows.append(row)
        logger.info("%s %s: TV %.3f, hallucination %.1f %%", name, row["sampler"], row["tv"], row["hallucination_%"])
    samples["prior"] = prior.sample(n, generator=torch.Generator().manual_seed(3))[0].numpy()
    samples["reference"] = reference
    return rows, samples


def best_dps(rows: list[dict]) -> float:
    """ζ of the DPS row with the lowest sliced W1 to exact draws (tuned against the exact
    posterior: an oracle choice no real problem offers)."""
    dps = [row for row in rows if str(row["sampler"]).startswith("dps ζ=")]
    return float(min(dps, key=lambda row: row["sliced_w1"])["sampler"].split("=")[1].split(",")[0])


def early_stopping_rows(problem: Problem, zeta: float, quick: bool) -> list[dict]:
    name, prior, measurement, y = problem
    n = 300 if quick else 2000
    stops = STOPS[::3] if quick else STOPS
    steps = 100 if quick else None
    reference = exact_posterior(prior, measurement, y).sample(n, generator=torch.Generator().manual_seed(1))[0].numpy()
    rows = []
    for config in (PosteriorSamplerConfig(guidance="exact", steps=steps), PosteriorSamplerConfig(guidance="dps", zeta=zeta, steps=steps)):
        for point in early_stopping_curve(prior, measurement, y, config, stops, n=n, seed=0, reference=reference):
            rows.append({"table": "early stopping", "problem": name, "sampler": _label(config), "n": n, "stop_step": point.stop_step,
                         "tv": point.tv, "hallucination_%": 100 * point.hallucination_rate, "mean_error": point.mean_error,
                         "mean_distance": point.mean_distance, "sliced_w1": point.sliced_w1, "kl_mean": point.kl_mean})
    exact_mean = exact_posterior(prior, measurement, y).mean().numpy()
    rows.append({"table": "early stopping", "problem": name, "sampler": "exact posterior draws", "n": n, "stop_step": "",
                 "mean_distance": float(np.linalg.norm(reference - exact_mean, axis=1).mean())})
    return rows


def calibration_rows(problem: Problem, zeta: float, quick: bool) -> list[dict]:
    """Coverage within radii r25, r50: the quartile and median distance of exact posterior draws
    to the true x_0 (so exact draws cover at k = 1 about 25 % and 50 % by construction)."""
    name, prior, measurement, _ = problem
    n_measurements, k = (40, 8) if quick else (300, 16)
    steps = 100 if quick else None
    y, x0 = ood_measurements(prior, measurement, n_measurements, "in_domain", seed=11)
    draws = exact_posterior(prior, measurement, y).sample(k, generator=torch.Generator().manual_seed(12))[0].numpy()
    radii = np.quantile(np.linalg.norm(draws - x0[:, None, :], axis=2), [0.25, 0.5])
    runs: list[tuple[str, np.ndarray]] = [("exact posterior draws", draws)]
    for config in (PosteriorSamplerConfig(guidance="exact", steps=steps), PosteriorSamplerConfig(guidance="dps", zeta=zeta, steps=steps),
                   PosteriorSamplerConfig(guidance="dps_score", zeta=1.0, steps=steps)):
        runs.append((_label(config), sample_posterior(prior, measurement, y, k, config, seed=13).x))
    rows = []
    for label, samples in runs:
        result = diag.spread_calibration(samples, x0, list(radii))
        row: dict[str, Any] = {"table": "calibration", "problem": name, "sampler": label, "n": f"{n_measurements}×{k}"}
        for j, quantile in enumerate(("r25", "r50")):
            row[quantile] = float(radii[j])
            for kk in (1, 4, k):
                row[f"cov@{kk} {quantile}"] = result.coverage.at(kk, j)
        row.update({"spearman_spread_error": result.spearman, "mean_spread": result.mean_spread, "mean_error": result.mean_error})
        rows.append(row)
    return rows


def ood_rows(problem: Problem, zeta: float, quick: bool) -> list[dict]:
    name, prior, measurement, _ = problem
    n_measurements, k = (30, 4) if quick else (200, 8)
    steps = 100 if quick else None
    sets = {kind: ood_measurements(prior, measurement, n_measurements, kind, seed=seed)[0] for kind, seed in (("in_domain", 21), ("far", 22), ("mixture", 23))}
    predictive = measurement.predictive(prior)
    scores = {"−log p(y) (exact evidence)": {kind: -predictive.log_prob(torch.as_tensor(y)).numpy() for kind, y in sets.items()}}
    for config in (PosteriorSamplerConfig(guidance="exact", steps=steps), PosteriorSamplerConfig(guidance="dps", zeta=zeta, steps=steps),
                   PosteriorSamplerConfig(guidance="dps_score", zeta=1.0, steps=steps)):
        scores[f"KL, {_label(config)}"] = {kind: sample_posterior(prior, measurement, y, k, config, seed=24).kl_per_measurement() for kind, y in sets.items()}
    rows = []
    for score, by_kind in scores.items():
        rows.append({"table": "ood", "problem": name, "score": score, "n": f"{n_measurements} per kind, {k} samples",
                     "auc_far": diag.roc_auc(by_kind["in_domain"], by_kind["far"]),
                     "auc_mixture": diag.roc_auc(by_kind["in_domain"], by_kind["mixture"]),
                     "median_in": float(np.median(by_kind["in_domain"])), "median_far": float(np.median(by_kind["far"])),
                     "median_mixture": float(np.median(by_kind["mixture"]))})
    return rows


def _sample_figure(samples: dict[str, np.ndarray], y: float, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = ["prior", "exact posterior draws", "exact", "dps ζ=0.05", "dps ζ=1", "dps ζ=0.05, 100 steps"]
    fig, axes = plt.subplots(2, 3, figsize=(10, 6.4), sharex=True, sharey=True)
    for ax, label in zip(axes.flat, panels, strict=True):
        label = next(key for key in samples if key == label or key.startswith(label + ","))  # quick runs add ", N steps"
        x = samples[label][:1500]
        ax.scatter(x[:, 0], x[:, 1], s=2, alpha=0.4, color="tab:gray" if label == "prior" else "tab:blue")
        ax.axvline(y, color="tab:red", lw=0.8, ls="--")
        ax.set_title(label if label != "exact" else "exact guidance (sampler)", fontsize=10)
    for ax in axes[1]:
        ax.set_xlabel("x1 (observed, y = red line)")
    for ax in axes[:, 0]:
        ax.set_ylabel("x2 (unobserved)")
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def _early_stopping_figure(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(11, 3.4))
    for sampler in dict.fromkeys(row["sampler"] for row in rows if row["stop_step"] != ""):
        points = [row for row in rows if row["sampler"] == sampler]
        steps = [max(row["stop_step"], 1) for row in points]
        for ax, key in zip(axes, ("tv", "sliced_w1", "mean_distance"), strict=True):
            ax.plot(steps, [row[key] for row in points], marker="o", ms=3, label=sampler)
    reference = next(row["mean_distance"] for row in rows if row["stop_step"] == "")
    axes[2].axhline(reference, color="k", lw=0.8, ls="--", label="exact posterior")
    for ax, title in zip(axes, ("TV of mode weights", "sliced W1 to exact draws", "mean ‖x − E[x|y]‖"), strict=True):
        ax.set_xscale("log")
        ax.set_xlabel("stop step t (0 plotted at 1)")
        ax.set_title(title, fontsize=10)
    axes[2].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def run(quick: bool = False, figures: Path | None = None) -> list[dict]:
    """Every table's rows (``table`` column); figures into ``figures`` (default: full run only)."""
    torch.set_num_threads(1)
    figures = figures if figures is not None else (None if quick else FIGURES)
    rows: list[dict] = []
    for problem in (two_d_problem(), high_d_problem()):
        weight_rows, samples = mode_weight_rows(problem, quick)
        zeta = best_dps(weight_rows)
        logger.info("%s: DPS ζ with the lowest sliced W1 = %g", problem[0], zeta)
        stop_rows = early_stopping_rows(problem, zeta, quick)
        rows += weight_rows + stop_rows + calibration_rows(problem, zeta, quick) + ood_rows(problem, zeta, quick)
        if figures is not None and problem[0] == "2-D":
            figures.mkdir(parents=True, exist_ok=True)
            _sample_figure(samples, float(problem[3][0]), figures / "posterior_toy_samples.png")
            _early_stopping_figure(stop_rows, figures / "posterior_toy_early_stopping.png")
    return rows


def tables(rows: list[dict]) -> str:
    """One markdown table per (table, problem), empty columns dropped."""
    from benchmarks.run_all import to_markdown

    out = []
    for key in dict.fromkeys((row["table"], row["problem"]) for row in rows):
        group = [{k: v for k, v in row.items() if k not in ("table", "problem")} for row in rows if (row["table"], row["problem"]) == key]
        out.append(f"#### {key[0]}, {key[1]}\n\n{to_markdown(group)}")
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes (smoke run, not a result)")
    parser.add_argument("--markdown", type=Path, default=None, help="write the tables to this file")
    parser.add_argument("--figures", type=Path, default=None, help=f"figure folder (default {FIGURES} on a full run)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    text = tables(run(quick=args.quick, figures=args.figures))
    if args.markdown:
        args.markdown.write_text(text)
    logger.info("tables:\n%s", text)


if __name__ == "__main__":
    main()
