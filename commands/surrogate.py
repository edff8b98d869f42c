"""``crystaloop surrogate train|eval|predict``: deep-ensemble property models with uncertainty."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional  # noqa: UP035 - typer needs Optional on 3.11

import typer

from crystaloop.commands.common import (
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
    out: Annotated[Path, typer.Option("--out", help="Checkpoint to write (.pt).")],
    test: Annotated[Optional[str], typer.Option("--test", help="Held-out data evaluated after training (never used for fitting, early stopping or calibration).")] = None,  # noqa: UP045
    architecture: Annotated[str, typer.Option("--architecture", help="mpnn | cgcnn")] = "mpnn",
    ensemble: Annotated[Optional[int], typer.Option("--ensemble", min=1, help="Ensemble members.")] = None,  # noqa: UP045
    epochs: Annotated[Optional[int], typer.Option("--epochs", min=1)] = None,  # noqa: UP045
    angular_degree: Annotated[Optional[int], typer.Option("--angular-degree", min=0, max=3, help="mpnn bond-angle features: highest spherical-harmonic degree, 0 = distances only (default 3).")] = None,  # noqa: UP045
    seed: Annotated[int, typer.Option("--seed")] = 0,
    config: Annotated[Optional[Path], typer.Option("--config", help="YAML file of SurrogateConfig fields.")] = None,  # noqa: UP045
    threads: Annotated[Optional[int], typer.Option("--threads", min=1, help="torch CPU threads (default: torch's choice).")] = None,  # noqa: UP045
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
    with progress_bar(remaining=False) as bar:
        tasks: dict[int, object] = {}

        def on_epoch(member: int, epoch: int, total: int, val_mae: float) -> None:
            if member not in tasks:
                tasks[member] = bar.add_task(f"member {member + 1}/{settings.ensemble_size}", total=total)
            bar.update(tasks[member], completed=epoch, description=f"member {member + 1}/{settings.ensemble_size} calibration-split MAE {val_mae:.3f} (normalised)")

        with exit_on_error():
            result = train_ensemble(settings, train_set, test_set, checkpoint=out, on_epoch=on_epoch)
    _print_metrics(result.metrics["calibration_split"], title=f"calibration split carved from --data ({result.metrics['n_calibration']} structures)")
    if "held_out" in result.metrics:
        _print_metrics(result.metrics["held_out"], title=f"held-out {test} ({result.metrics['n_held_out']} structures)")
    console.print(f"checkpoint: [bold]{out}[/]")


def _print_metrics(report: dict, title: str) -> None:
    from rich.table import Table

    table = Table("target", "units", "n", "MAE", "RMSE", "miscal. area", "Spearman |err|~std", "member MAEs", title=title)
    for name, entry in report.items():
        if not isinstance(entry, dict) or "units" not in entry:
            continue
        members = ", ".join(f"{m:.3f}" for m in entry.get("member_mae", []))
        table.add_row(name, entry["units"], str(entry["n"]), f"{entry['mae']:.4f}", f"{entry['rmse']:.4f}", f"{entry['miscalibration_area']:.3f}", f"{entry['spearman_abs_error_std']:.3f}", members)
    console.print(table)


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
) -> None:
    """Evaluate a surrogate: MAE, RMSE, calibration, per-member MAE, OOD scores, and a plot."""
    from crystaloop.data.datasets import load_dataset
    from crystaloop.data.datasets.overlap import TRAIN_HASHES_KEY, training_overlap
    from crystaloop.surrogates.ensemble import PropertyEnsemble
    from crystaloop.surrogates.plots import parity_and_calibration_plot
    from crystaloop.surrogates.training import evaluate_ensemble, target_matrix

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
    for t, name in enumerate(ensemble.config.targets):
        plot = out.with_name(f"{out.stem}-{name}.png")
        parity_and_calibration_plot(y[:, t], mean[:, t], std[:, t], target=name, units=ensemble.units[t], out=plot, title=f"{ensemble.name} on {data}")
        console.print(f"plot: {plot}")
    _print_metrics(report, title=f"{ensemble.name} on {data} ({len(dataset)} structures)")
    if overlap.seen is None:
        err_console.print(f"[yellow]warning[/] cannot check for training data in {data}: {overlap.basis}", highlight=False)
    elif overlap.count:
        share = overlap.count / max(len(dataset), 1)
        err_console.print(f"[yellow]warning[/] {overlap.count} of {len(dataset)} rows ({share:.0%}) of {data} trained this model "
                          f"(canonical hash; {overlap.basis}): the figures above are optimistic", highlight=False)
        if held_out is not None:
            _print_metrics(held_out, title=f"held out: the {len(dataset) - overlap.count} rows not in training")
        else:
            err_console.print("  no held-out figure: fewer than 2 rows are outside the training data", highlight=False)
    console.print(f"metrics: [bold]{out}[/]")


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
    limit: Annotated[int, typer.Option("--limit", min=1, help="Show at most this many rows.")] = 50,
) -> None:
    """Predict properties with uncertainty (mean ± std) and an out-of-distribution score."""
    from rich.table import Table

    from crystaloop.surrogates.ensemble import PropertyEnsemble

    with exit_on_error():
        ensemble = PropertyEnsemble.load(_resolve_surrogate(model, target))
        ids, crystals, errors = read_structures(path)
        report_read(path, crystals, errors)
        if not crystals:
            raise fail_unreadable(path, errors)
        prediction = ensemble.predict(crystals)
        ood = ensemble.ood_score(crystals)
    table = Table("structure", "formula", *[f"{p} ({u})" for p, u in zip(prediction.properties, prediction.units, strict=True)], "OOD score", title=ensemble.name)
    for i in range(min(len(crystals), limit)):
        cells = [f"{prediction.mean[i, j]:.3f} ± {prediction.std[i, j]:.3f}" for j in range(len(prediction.properties))]
        table.add_row(ids[i], crystals[i].reduced_formula, *cells, f"{ood[i]:.2f}")
    console.print(table)
    for error in errors:
        err_console.print(f"  [yellow]bad row[/] {error}", highlight=False)
