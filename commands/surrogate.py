"""``crystaloop surrogate train|eval|predict``: deep-ensemble property models with uncertainty."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional  # noqa: UP035 - typer needs Optional on 3.11

import typer

from crystaloop.commands.common import (
    Column,
    FormatOption,
    Output,
    OutputFormat,
    console,
    err_console,
    exit_on_error,
    fail,
    fail_unreadable,
    progress_bar,
    read_structures,
    read_yaml_mapping,
    report_read,
)

__all__ = ["surrogate_app"]

surrogate_app = typer.Typer(help="Property surrogates: train, evaluate, predict.", no_args_is_help=True)


@surrogate_app.command("train")
def surrogate_train(
    data: Annotated[str, typer.Option("--data", help="Training data: a CDVAE CSV, folder, extxyz or shipped name (perov_5/train).")],
    target: Annotated[list[str], typer.Option("--target", help="Column(s) to predict (repeatable).")],
    out_file: Annotated[Path, typer.Option("--out", help="Checkpoint to write (.pt).")],
    test: Annotated[Optional[str], typer.Option("--test", help="Held-out data evaluated after training (never used for fitting, early stopping or calibration).")] = None,  # noqa: UP045
    architecture: Annotated[str, typer.Option("--architecture", help="mpnn | cgcnn")] = "mpnn",
    ensemble: Annotated[Optional[int], typer.Option("--ensemble", min=1, help="Ensemble members.")] = None,  # noqa: UP045
    epochs: Annotated[Optional[int], typer.Option("--epochs", min=1)] = None,  # noqa: UP045
    angular_degree: Annotated[Optional[int], typer.Option("--angular-degree", min=0, max=3, help="mpnn bond-angle features: highest spherical-harmonic degree, 0 = distances only (default 3).")] = None,  # noqa: UP045
    seed: Annotated[int, typer.Option("--seed")] = 0,
    config: Annotated[Optional[Path], typer.Option("--config", help="YAML file of SurrogateConfig fields.")] = None,  # noqa: UP045
    threads: Annotated[Optional[int], typer.Option("--threads", min=1, help="torch CPU threads (default: torch's choice).")] = None,  # noqa: UP045
    fmt: FormatOption = OutputFormat.TABLE,
) -> None:
    """Train a deep-ensemble property model; resumes if an interrupted run left its state."""
    if threads is not None:
        import torch

        torch.set_num_threads(threads)
    from crystaloop.data.datasets import load_dataset
    from crystaloop.surrogates.config import SurrogateConfig
    from crystaloop.surrogates.training import train_ensemble

    fields = {**read_yaml_mapping(config, "surrogate config"), "architecture": architecture, "targets": tuple(target), "seed": seed}
    fields.update({k: v for k, v in {"ensemble_size": ensemble, "epochs": epochs, "angular_degree": angular_degree}.items() if v is not None})
    with exit_on_error(invalid="bad surrogate config: "):
        settings = SurrogateConfig(**fields)
        train_set = load_dataset(data)
        test_set = load_dataset(test) if test else None
    with Output(fmt) as out, progress_bar(remaining=False) as bar:
        tasks: dict[int, object] = {}

        def on_epoch(member: int, epoch: int, total: int, val_mae: float) -> None:
            if member not in tasks:
                tasks[member] = bar.add_task(f"member {member + 1}/{settings.ensemble_size}", total=total)
            bar.update(tasks[member], completed=epoch, description=f"member {member + 1}/{settings.ensemble_size} calibration-split MAE {val_mae:.3f} (normalised)")

        with exit_on_error():
            result = train_ensemble(settings, train_set, test_set, checkpoint=out_file, on_epoch=on_epoch)
        bar.stop()
        _print_metrics(out, "calibration_split", result.metrics["calibration_split"],
                       title=f"calibration split carved from --data ({result.metrics['n_calibration']} structures)")
        if "held_out" in result.metrics:
            _print_metrics(out, "held_out", result.metrics["held_out"], title=f"held-out {test} ({result.metrics['n_held_out']} structures)")
        console.print(f"checkpoint: [bold]{out_file}[/]")
        out.add(checkpoint=str(out_file))


_METRIC_COLUMNS = (
    Column("target", "target"),
    Column("units", "units", priority=2),
    Column("n", "n", justify="right"),
    Column("mae", "MAE", "{:.4f}", justify="right"),
    Column("rmse", "RMSE", "{:.4f}", justify="right"),
    Column("miscalibration_area", "miscal. area", "{:.3f}", justify="right", priority=1),
    Column("spearman_abs_error_std", "Spearman |err|~std", "{:.3f}", justify="right", priority=1),
    Column("member_mae", "member MAEs", lambda maes: ", ".join(f"{m:.3f}" for m in maes), priority=3),
)


def _print_metrics(out: Output, name: str, report: dict, title: str) -> None:
    """One row per target of an evaluation ``report`` (MAE and RMSE in the target's units)."""
    rows = [
        {"target": target, **{c.key: entry.get(c.key) for c in _METRIC_COLUMNS[1:]}}
        for target, entry in report.items()
        if isinstance(entry, dict) and "units" in entry
    ]
    out.table(name, _METRIC_COLUMNS, rows, title=title)


def _resolve_surrogate(model: str | None, target: str | None) -> Path:
    from crystaloop.surrogates.shipped import default_surrogate_for, shipped_surrogate_path

    if model:
        path = Path(model)
        return path if path.exists() else shipped_surrogate_path(model)
    if target:
        return shipped_surrogate_path(default_surrogate_for(target))
    raise fail("give --model (a checkpoint or shipped name) or --target to pick a shipped surrogate")


@surrogate_app.command("eval")
def surrogate_eval(
    data: Annotated[str, typer.Option("--data", help="Any CDVAE CSV (or folder/extxyz) with the target column.")],
    target: Annotated[Optional[str], typer.Option("--target", help="Column to evaluate; picks the shipped model when --model is omitted.")] = None,  # noqa: UP045
    model: Annotated[Optional[str], typer.Option("--model", help="Checkpoint path or shipped name.")] = None,  # noqa: UP045
    out: Annotated[Path, typer.Option("--out", help="metrics.json to write; a parity/calibration PNG goes beside it.")] = Path("metrics.json"),
    fmt: FormatOption = OutputFormat.TABLE,
) -> None:
    """Evaluate a surrogate: MAE, RMSE, calibration, per-member MAE, OOD scores, and a plot."""
    from crystaloop.data.datasets import load_dataset
    from crystaloop.data.datasets.overlap import TRAIN_HASHES_KEY, training_overlap
    from crystaloop.surrogates.ensemble import PropertyEnsemble
    from crystaloop.surrogates.plots import parity_and_calibration_plot
    from crystaloop.surrogates.training import evaluate_ensemble, target_matrix

    with Output(fmt) as output:
        with exit_on_error():
            ensemble = PropertyEnsemble.load(_resolve_surrogate(model, target))
            dataset = load_dataset(data)
            outputs = ensemble.member_outputs(dataset.crystals)
            report = evaluate_ensemble(ensemble, dataset, outputs=outputs)
            meta = ensemble.metadata
            overlap = training_overlap(dataset, recorded=meta.get(TRAIN_HASHES_KEY), source=meta.get("train_data"),
                                       source_hash=meta.get("train_data_hash"))
            held_out = _held_out_report(ensemble, dataset, outputs, overlap, evaluate_ensemble)
        report["model"] = ensemble.name
        report["data"] = data
        report["training_overlap"] = {"rows_in_training": None if overlap.seen is None else overlap.count,
                                      "rows": len(dataset), "basis": overlap.basis}
        if held_out is not None:
            report["held_out_rows"] = held_out
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(report, indent=2))
        mean, std = ensemble.combine(outputs)
        y = target_matrix(dataset, ensemble.config.targets)
        plots = []
        for t, name in enumerate(ensemble.config.targets):
            plot = out.with_name(f"{out.stem}-{name}.png")
            plots.append(str(plot))
            parity_and_calibration_plot(y[:, t], mean[:, t], std[:, t], target=name, units=ensemble.units[t], out=plot, title=f"{ensemble.name} on {data}")
            console.print(f"plot: {plot}")
        _print_metrics(output, "all_rows", report, title=f"{ensemble.name} on {data} ({len(dataset)} structures)")
        if overlap.seen is None:
            err_console.print(f"[yellow]warning[/] cannot check for training data in {data}: {overlap.basis}", highlight=False)
        elif overlap.count:
            share = overlap.count / max(len(dataset), 1)
            err_console.print(f"[yellow]warning[/] {overlap.count} of {len(dataset)} rows ({share:.0%}) of {data} trained this model "
                              f"(canonical hash; {overlap.basis}): the figures above are optimistic", highlight=False)
            if held_out is not None:
                _print_metrics(output, "held_out", held_out, title=f"held out: the {len(dataset) - overlap.count} rows not in training")
            else:
                err_console.print("  no held-out figure: fewer than 2 rows are outside the training data", highlight=False)
        console.print(f"metrics: [bold]{out}[/]")
        output.add(metrics=str(out), plots=plots, training_overlap=report["training_overlap"])


def _held_out_report(ensemble, dataset, outputs, overlap, evaluate) -> dict | None:  # noqa: ANN001
    """The evaluation on the rows outside the training data (reusing the computed outputs), or
    None when nothing overlaps or fewer than two rows are left."""
    import numpy as np

    from crystaloop.surrogates.ensemble import MemberOutputs

    if overlap.seen is None or not overlap.count:
        return None
    rows = np.flatnonzero(~overlap.seen)
    if rows.size < 2:
        return None
    sliced = MemberOutputs(means=outputs.means[:, rows], variances=outputs.variances[:, rows], embeddings=outputs.embeddings[:, rows])
    return evaluate(ensemble, dataset.subset(rows), outputs=sliced)


@surrogate_app.command("predict")
def surrogate_predict(
    path: Annotated[str, typer.Argument(help="CIF/POSCAR folder, CDVAE CSV, extxyz or a single CIF.")],
    model: Annotated[Optional[str], typer.Option("--model", help="Checkpoint path or shipped name.")] = None,  # noqa: UP045
    target: Annotated[Optional[str], typer.Option("--target", help="Pick the shipped surrogate for this property.")] = None,  # noqa: UP045
    limit: Annotated[int, typer.Option("--limit", min=1, help="Show at most this many rows (every row with --format json or csv).")] = 50,
    fmt: FormatOption = OutputFormat.TABLE,
) -> None:
    """Predict properties with uncertainty (mean ± std) and an out-of-distribution score."""
    from crystaloop.surrogates.ensemble import PropertyEnsemble

    with Output(fmt) as out:
        with exit_on_error():
            ensemble = PropertyEnsemble.load(_resolve_surrogate(model, target))
            ids, crystals, errors = read_structures(path)
            report_read(path, crystals, errors)
            if not crystals:
                raise fail_unreadable(path, errors)
            prediction = ensemble.predict(crystals)
            ood = ensemble.ood_score(crystals)
        columns = [Column("structure", "structure", max_width=20), Column("formula", "formula")]
        for p, u in zip(prediction.properties, prediction.units, strict=True):
            columns += [Column(p, f"{p} ({u})", "{:.3f}", justify="right"), Column(f"{p}_std", "±", "{:.3f}", justify="right")]
        columns.append(Column("ood_score", "OOD score", "{:.2f}", justify="right", priority=1))
        shown = len(crystals) if out.machine else min(len(crystals), limit)
        rows = [
            {"structure": ids[i], "formula": crystals[i].reduced_formula,
             **{k: v for j, p in enumerate(prediction.properties) for k, v in ((p, prediction.mean[i, j]), (f"{p}_std", prediction.std[i, j]))},
             "ood_score": ood[i]}
            for i in range(shown)
        ]  # fmt: skip
        out.table("predictions", columns, rows, title=ensemble.name)
        if shown < len(crystals):
            err_console.print(f"first {shown} of {len(crystals)} rows shown (--limit)", highlight=False)
    for error in errors:
        err_console.print(f"  [yellow]bad row[/] {error}", highlight=False)
