"""``crystaloop solve-xrd``: candidate structures for a measured powder pattern.

Posterior sampling with the generator guided by the pattern (``generator.posterior_xrd``), each
sample refined against the pattern and ranked by Rwp; the KL score of each sample's reverse path
says how far the pattern pulled the generator away from its prior: near zero when the pattern gave
the model nothing to pull on (no structure of its domain explains it; see generator.posterior). Writes the structures, a JSON summary, and a plot
overlaying the measured pattern and the best solutions' simulated patterns.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import typer

from crystaloop.commands.common import (
    Column,
    FormatOption,
    Output,
    OutputFormat,
    console,
    exit_on_error,
    fail,
    parse_composition,
    progress_bar,
)

if TYPE_CHECKING:
    import numpy as np

__all__ = ["solve_xrd", "plot_solutions"]

logger = logging.getLogger(__name__)


def plot_solutions(path: Path, two_theta: np.ndarray, measured: np.ndarray, solutions: list, top: int = 3) -> Path:
    """PNG: the best solution against the measured pattern as a Rietveld plot (calculated,
    difference, reflection ticks; see data.xrd_plot), the ``top`` solutions' patterns stacked below."""
    from crystaloop.data.xrd_plot import powder_fit_figure, reflection_positions

    best = solutions[0]
    names = [f"#{rank} {s.crystal.reduced_formula}: Rwp {s.rwp:.3f}, KL {s.kl:.1f}" for rank, s in enumerate(solutions[:top], start=1)]
    figure = powder_fit_figure(two_theta, measured, best.simulated, reflection_positions(best.crystal), label=f"calculated, {names[0]}",
                               compared=list(zip(names, [s.simulated for s in solutions[:top]], strict=True)) if len(solutions) > 1 else (),
                               title="measured pattern and the best solution (Cu Kα)")
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    return path


def solve_xrd(
    pattern: Annotated[Path, typer.Argument(help="Measured powder pattern: two-column .xy/.csv, 2θ (degrees) and intensity.")],
    composition: Annotated[Optional[str], typer.Option("--composition", help="Cell contents, e.g. SrTiO3 (structure prediction).")] = None,  # noqa: UP045
    chemsys: Annotated[Optional[str], typer.Option("--chemsys", help="Allowed elements, e.g. Sr-Ti-O (de novo).")] = None,  # noqa: UP045
    n: Annotated[int, typer.Option("-n", "--num", min=1, max=256, help="Posterior samples.")] = 8,
    out: Annotated[Path, typer.Option("--out", help="Solutions, best first: .cif, .xyz/.extxyz or .json; a .png plot and a .summary.json go beside it.")] = Path("solutions.cif"),
    model: Annotated[str, typer.Option("--model", help="Generator checkpoint or shipped name (a teacher: posterior sampling needs the diffusion sampler).")] = "perov_5",
    steps: Annotated[int, typer.Option("--steps", min=2, help="Reverse steps of the guided sampler.")] = 100,
    lattice_step: Annotated[float, typer.Option("--lattice-step", min=0.0, help="DPS step size ζ on the lattice (0: no guidance).")] = 0.05,
    frac_step: Annotated[float, typer.Option("--frac-step", min=0.0, help="DPS step size ζ on fractional coordinates.")] = 0.002,
    refine_iterations: Annotated[int, typer.Option("--refine-iterations", min=0, help="Adam steps per profile width when refining each sample (0: no refinement).")] = 40,
    early_t: Annotated[int, typer.Option("--early-t", min=0, help="Diffusion time t of the early-stopping check (nearest step of the grid; 0: no check).")] = 200,
    wavelength: Annotated[Optional[float], typer.Option("--wavelength", help="Radiation of the pattern in Å (default Cu Kα).")] = None,  # noqa: UP045
    seed: Annotated[int, typer.Option("--seed")] = 0,
    fmt: FormatOption = OutputFormat.TABLE,
) -> None:
    """Solve a structure from its powder pattern: guided posterior samples ranked by Rwp, with a KL score."""
    from crystaloop.commands.files import write_candidates as write_structures  # noqa: I001 - after the library imports
    from crystaloop.data.xrd_grid import DEFAULT_GRID
    from crystaloop.data.xrd_refine import RefineConfig
    from crystaloop.generator.config import SamplerConfig
    from crystaloop.generator.diffusion.generator import DiffusionGenerator
    from crystaloop.generator.posterior.sampler import PosteriorConfig
    from crystaloop.generator.posterior.solution_checks import check_solutions
    from crystaloop.generator.posterior.xrd import snapshot_solutions, solve_pattern
    from crystaloop.generator.shipped import resolve_generator_checkpoint
    from crystaloop.multimodal.xrd_io import read_pattern

    if (composition is None) == (chemsys is None):
        raise fail("give exactly one of --composition (e.g. SrTiO3) and --chemsys (e.g. Sr-Ti-O)")
    if out.suffix.lower() not in (".cif", ".xyz", ".extxyz", ".json"):
        raise fail(f"--out {out}: unknown extension {out.suffix!r}; allowed: .cif, .xyz, .extxyz, .json")
    with Output(fmt) as output:
        with exit_on_error():
            comp = parse_composition(composition) if composition else None
            system = tuple(s.strip() for s in chemsys.split("-")) if chemsys else None
            measured = read_pattern(pattern, DEFAULT_GRID, wavelength=wavelength)
            generator = DiffusionGenerator.from_checkpoint(resolve_generator_checkpoint(model), SamplerConfig(method="pc", steps=steps))
            guidance = PosteriorConfig(lattice_step=lattice_step, frac_step=frac_step,
                                       snapshot_step=_snapshot_step(generator.model.schedule.timesteps, steps, early_t))
            refine = RefineConfig(iterations=refine_iterations) if refine_iterations else None
            with progress_bar() as bar:
                task = bar.add_task(f"posterior sampling ({n} samples, {steps} steps)", total=steps)
                solutions, samples = solve_pattern(generator, measured, composition=comp, chemical_system=system, num_samples=n,
                                                   guidance=guidance, refine=refine, seed=seed,
                                                   on_step=lambda done, total: bar.update(task, completed=done, total=total))
        if not solutions:
            raise fail(f"all {n} samples collapsed; try more --steps or a smaller --lattice-step")
        with exit_on_error():
            checks = check_solutions(solutions, samples.kl, early=snapshot_solutions(samples, measured, refine=refine))
        _report(output, out, pattern, measured, solutions, samples, write_structures, checks)
        _report_checks(output, checks)


def _snapshot_step(timesteps: int, steps: int, early_t: int) -> int:
    """The step of the sampler's grid nearest to diffusion time ``early_t`` (0: none)."""
    from crystaloop.generator.diffusion.sampling import step_grid

    inner = step_grid(timesteps, steps)[1:-1]
    return min(inner, key=lambda t: abs(t - early_t)) if early_t and inner else 0


_MODE_COLUMNS = (
    Column("mode", "mode", justify="right"),
    Column("formula", "best member"),
    Column("weight", "share of chains", "{:.2f}", justify="right"),
    Column("rwp", "best Rwp", "{:.3f}", justify="right"),
)


def _report_checks(output: Output, checks) -> None:  # noqa: ANN001 - SolutionChecks
    """The checks on the best solution: the distinct structures found and the flags raised."""
    from crystaloop.generator.posterior.solution_checks import FLAGS

    rows = [{"mode": i, "formula": m.formula, "weight": m.weight, "rwp": m.rwp} for i, m in enumerate(checks.modes, start=1)]
    output.table("modes", _MODE_COLUMNS, rows, title="distinct structures among the solutions")
    if checks.trusted:
        console.print("checks: no flag raised. The checks are weak signals; how often they miss a wrong answer is in "
                      "benchmarks/RESULTS.md (bench_xrd_checks)")
    else:
        console.print(f"checks: {len(checks.flags)} flag(s) on the best solution; look closer (compare the other modes' Rwp):")
        for name in checks.flags:
            console.print(f"  {name}: {FLAGS[name]}")
    output.add(flags=list(checks.flags))


_SOLUTION_COLUMNS = (
    Column("rank", "rank", justify="right"),
    Column("formula", "formula"),
    Column("rwp", "Rwp", "{:.3f}", justify="right"),
    Column("kl", "KL score (nats)", "{:.1f}", justify="right"),
    Column("volume_per_atom", "volume/atom (Å³)", "{:.2f}", justify="right", priority=1),
    Column("space_group", "space group", justify="right"),
)


def _report(output: Output, out: Path, pattern: Path, measured: np.ndarray, solutions: list, samples, write_structures, checks) -> None:  # noqa: ANN001
    import numpy as np

    from crystaloop.data.records import Candidate, Provenance
    from crystaloop.data.xrd_grid import DEFAULT_GRID

    provenance = Provenance(component="generator.posterior_xrd", seed=solutions[0].seed)
    write_structures(out, Candidate.from_crystals([s.crystal for s in solutions], provenance, None))
    rows = []
    for rank, solution in enumerate(solutions, start=1):
        crystal = solution.crystal
        try:
            group = crystal.to_pymatgen().get_space_group_info(symprec=0.1)[0]
        except Exception:  # noqa: BLE001 - spglib fails on odd cells; the table just shows '?'
            group = "?"
        rows.append({"rank": rank, "formula": crystal.reduced_formula, "rwp": solution.rwp, "kl": solution.kl,
                     "volume_per_atom": crystal.volume / crystal.n_sites, "space_group": group})
    output.table("solutions", _SOLUTION_COLUMNS, rows, title=f"solutions for {pattern.name} (best Rwp first)")
    summary = {"pattern": str(pattern), "out": str(out), "mean_kl": float(np.mean(samples.kl)), "solutions": rows, "checks": checks.as_dict()}
    summary_path = out.with_suffix(".summary.json")
    summary_path.write_text(json.dumps(summary, indent=1))
    plot = plot_solutions(out.with_suffix(".png"), DEFAULT_GRID.two_theta(), measured, solutions)
    console.print(f"wrote {len(solutions)} structures to [bold]{out}[/], plot {plot}, summary {summary_path}")
    output.add(structures=str(out), plot=str(plot), summary=str(summary_path), mean_kl=summary["mean_kl"])
    console.print(f"OOD score (mean KL over samples): {summary['mean_kl']:.1f} nats. Near zero: the pattern gave the model "
                  "nothing to pull on, so no structure of its domain explains it; compare with the in-domain figures in "
                  "benchmarks/RESULTS.md (inverse XRD section), and with the best Rwp above")
