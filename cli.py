"""The `crystaloop` command line: ``crystaloop <group> <command>``.

Groups: ``data`` (import, info, split), ``db`` (ls) and ``demo``. Heavy libraries are imported
inside commands, so ``crystaloop --help`` answers at once. Store URLs are SQLAlchemy URLs, taken
from ``--store`` or ``CRYSTALOOP_DB_URL``.
"""

from __future__ import annotations

import json
import logging
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional  # noqa: UP035 - typer needs Optional on 3.11

import typer
from rich.logging import RichHandler
from rich.table import Table

from crystaloop.commands.campaign import campaign_app
from crystaloop.commands.common import (
    CommandGroup,
    check_out_path,
    console,
    err_console,
    fail_unreadable,
    read_structures,
    read_yaml_mapping,
    report_read,
)
from crystaloop.commands.common import fail as _fail
from crystaloop.commands.flows import deploy, flow_run, pause, resume, server_app, trigger
from crystaloop.commands.generator import generate, generator_app
from crystaloop.commands.hull import hull_app
from crystaloop.commands.multimodal import multimodal_app, search
from crystaloop.commands.solve_xrd import solve_xrd

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from crystaloop.data.importing import ImportReport

app = typer.Typer(help="crystaloop: closed-loop inverse materials design.", no_args_is_help=True, add_completion=False, cls=CommandGroup)
data_app = typer.Typer(help="Datasets: import into the store, inspect, split.", no_args_is_help=True)
db_app = typer.Typer(help="The candidate store: list and inspect candidates.", no_args_is_help=True)
surrogate_app = typer.Typer(help="Property surrogates: train, evaluate, predict.", no_args_is_help=True)
oracle_app = typer.Typer(help="MLIP oracles: relax structures, energies.", no_args_is_help=True)
app.add_typer(data_app, name="data")
app.add_typer(db_app, name="db")
app.add_typer(surrogate_app, name="surrogate")
app.add_typer(oracle_app, name="oracle")
app.add_typer(hull_app, name="hull")
app.add_typer(generator_app, name="generator")
app.command("generate")(generate)
app.add_typer(campaign_app, name="campaign")
app.add_typer(server_app, name="server")
app.add_typer(multimodal_app, name="multimodal")
app.command("search")(search)
app.command("solve-xrd")(solve_xrd)
campaign_app.command("deploy")(deploy)
campaign_app.command("pause")(pause)
campaign_app.command("resume")(resume)
campaign_app.command("trigger")(trigger)
campaign_app.command("flow")(flow_run)

logger = logging.getLogger("crystaloop.cli")

StoreOption = Annotated[
    Optional[str],  # noqa: UP045
    typer.Option("--store", help="SQLAlchemy URL of the store (sqlite:///path.db, postgresql://...); default $CRYSTALOOP_DB_URL or sqlite:///crystaloop.db"),
]


@app.callback()
def _configure(verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Show debug logs.")] = False) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.WARNING,
        format="%(message)s",
        handlers=[RichHandler(console=err_console, show_path=False)],
        force=True,
    )


@contextmanager
def _progress() -> Iterator[Callable[[str], Callable[[int, int], None]]]:
    """One rich progress display; ``new_task(description)`` returns a ``callback(done, total)``."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=err_console, transient=True) as bar:

        def new_task(description: str) -> Callable[[int, int], None]:
            task = bar.add_task(description, total=None)

            def update(done: int, total: int) -> None:
                bar.update(task, completed=done, total=total)

            return update

        yield new_task




def _run_import(spec: str, store, fmt: str | None, max_rows: int | None) -> ImportReport:
    from crystaloop.data.importing import import_dataset

    with _progress() as new_task:
        return import_dataset(
            spec,
            store,
            fmt=fmt,  # type: ignore[arg-type]
            max_rows=max_rows,
            parse_progress=new_task(f"parsing {spec}"),
            insert_progress=new_task(f"storing {spec}"),
        )


def _print_import_report(report: ImportReport) -> None:
    console.print(
        f"[bold]{report.source}[/]: read {report.read}, added {report.added}, "
        f"already stored {report.existing}, bad rows {len(report.errors)}"
    )
    for error in report.errors:
        err_console.print(f"  [yellow]bad row[/] {error.source}: {error.problem}", highlight=False)
    if report.read == 0 and not report.errors:
        err_console.print(f"  [yellow]no structures[/] in {report.source}: the input is empty (or holds only a header)", highlight=False)


@data_app.command("import")
def data_import(
    paths: Annotated[list[str], typer.Argument(help="Files, folders or shipped datasets (perov_5/train) to import.")],
    store: StoreOption = None,
    fmt: Annotated[Optional[str], typer.Option("--format", help="cdvae-csv | structure-folder | extxyz; detected when omitted.")] = None,  # noqa: UP045
    strict: Annotated[bool, typer.Option("--strict", help="Exit with code 1 if any row was bad (good rows are still imported).")] = False,
    max_rows: Annotated[Optional[int], typer.Option("--max-rows", min=1, help="Read at most this many rows per CSV.")] = None,  # noqa: UP045
) -> None:
    """Import structures into the store; every bad row is reported with its reason."""
    from crystaloop.data.errors import CrystaloopError
    from crystaloop.data.store import CandidateStore, redact_url

    try:
        with CandidateStore(store) as candidate_store:
            reports = [_run_import(spec, candidate_store, fmt, max_rows) for spec in paths]
            console.print(f"store: {redact_url(candidate_store.url)}", highlight=False)
    except CrystaloopError as exc:
        raise _fail(str(exc)) from None
    for report in reports:
        _print_import_report(report)
    if strict and any(not r.ok for r in reports):
        raise typer.Exit(code=1)


@data_app.command("info")
def data_info(
    path: Annotated[str, typer.Argument(help="A file, folder or shipped dataset (perov_5/val).")],
    fmt: Annotated[Optional[str], typer.Option("--format", help="cdvae-csv | structure-folder | extxyz.")] = None,  # noqa: UP045
) -> None:
    """Summarise a dataset: structures, sizes, elements, properties and bad rows."""
    from crystaloop.data.datasets import load_dataset
    from crystaloop.data.errors import CrystaloopError

    try:
        with _progress() as new_task:
            dataset = load_dataset(path, fmt=fmt, progress=new_task(f"parsing {path}"))  # type: ignore[arg-type]
    except CrystaloopError as exc:
        raise _fail(str(exc)) from None
    if not dataset.crystals:
        raise fail_unreadable(path, dataset.errors)
    summary = dataset.summary()
    console.print(
        f"[bold]{path}[/]: {summary['structures']} structures, {summary['bad_rows']} bad rows, "
        f"{summary['sites_min']}–{summary['sites_max']} sites (mean {summary['sites_mean']:.1f}), "
        f"{len(summary['elements'])} elements"
    )
    if summary["properties"]:
        table = Table("property", "units", "count", "mean", "min", "max", title="numeric columns")
        for name, stats in summary["properties"].items():
            table.add_row(name, stats["units"], str(stats["count"]), f"{stats['mean']:.4g}", f"{stats['min']:.4g}", f"{stats['max']:.4g}")
        console.print(table)
    for error in dataset.errors:
        err_console.print(f"  [yellow]bad row[/] {error}", highlight=False)


@data_app.command("split")
def data_split(
    source: Annotated[Path, typer.Argument(help="A CDVAE-style CSV to split.", exists=True, dir_okay=False)],
    out: Annotated[Path, typer.Option("--out", help="Folder for <part>.csv.gz files.")],
    fractions: Annotated[str, typer.Option("--fractions", help="name=fraction pairs summing to 1.")] = "train=0.8,val=0.2",
    seed: Annotated[int, typer.Option("--seed", help="Random seed of the split.")] = 0,
) -> None:
    """Split a CSV into seeded parts, copying every row verbatim."""
    from crystaloop.data.datasets import parse_fractions, write_split_csv
    from crystaloop.data.errors import CrystaloopError

    try:
        written = write_split_csv(source, out, parse_fractions(fractions), seed=seed)
    except CrystaloopError as exc:
        raise _fail(str(exc)) from None
    for name, path in written.items():
        console.print(f"{name}: {path}")


@db_app.command("ls")
def db_ls(
    store: StoreOption = None,
    status: Annotated[Optional[list[str]], typer.Option("--status", help="Only these statuses (repeatable).")] = None,  # noqa: UP045
    elements: Annotated[Optional[str], typer.Option("--elements", help="Comma-separated elements that must all be present, e.g. Sr,Ti.")] = None,  # noqa: UP045
    campaign: Annotated[Optional[str], typer.Option("--campaign", help="Only this campaign's candidates.")] = None,  # noqa: UP045
    limit: Annotated[int, typer.Option("--limit", min=1, max=100000, help="Show at most this many rows.")] = 20,
) -> None:
    """List candidates in the store, newest first."""
    from pydantic import ValidationError

    from crystaloop.data.errors import CrystaloopError, describe_validation_error
    from crystaloop.data.store import CandidateFilter, CandidateStore, existing_store_url

    try:
        query = CandidateFilter(
            status=status or None,
            elements=[e.strip() for e in elements.split(",") if e.strip()] if elements else None,
            campaign=campaign,
            limit=limit,
        )
    except ValidationError as exc:
        raise _fail(f"bad filter: {describe_validation_error(exc)}") from None
    except CrystaloopError as exc:
        raise _fail(f"bad filter: {exc}") from None
    try:
        with CandidateStore(existing_store_url(store)) as candidate_store:  # read-only: never creates a store
            candidates = candidate_store.query(query)
            total = candidate_store.count(query.model_copy(update={"limit": 100000}))
    except CrystaloopError as exc:
        raise _fail(str(exc)) from None
    table = Table("id", "formula", "sites", "status", "source / campaign", "measurements", title=f"{len(candidates)} of {total} candidates")
    for candidate in candidates:
        where = candidate.provenance.campaign or candidate.provenance.source or candidate.provenance.component
        measured = ", ".join(f"{m.property}={m.value:.3g}" for m in candidate.measurements if m.value is not None)
        table.add_row(candidate.id[:12], candidate.crystal.reduced_formula, str(candidate.crystal.n_sites), candidate.status.value, where or "", measured)
    console.print(table)


@app.command("demo")
def demo(
    out: Annotated[Path, typer.Option("--out", help="Folder for the demo's store.")] = Path("runs/demo"),
    max_rows: Annotated[Optional[int], typer.Option("--max-rows", min=1, help="Rows per shipped file (all by default).")] = None,  # noqa: UP045
    campaign: Annotated[bool, typer.Option("--campaign/--no-campaign", help="Then run a short real 2-iteration campaign through Prefect.")] = True,
) -> None:
    """Import the shipped datasets into a fresh SQLite store, summarise it, and run a short campaign."""
    from crystaloop.data.datasets import SHIPPED_DATASETS
    from crystaloop.data.store import CandidateStore

    out.mkdir(parents=True, exist_ok=True)
    db_path = out / "store.db"
    for stale in out.glob("store.db*"):
        stale.unlink()
    url = f"sqlite:///{db_path}"
    with CandidateStore(url) as candidate_store:
        reports = [
            _run_import(f"{name}/{split}", candidate_store, None, max_rows)
            for name, splits in SHIPPED_DATASETS.items()
            for split in splits
        ]
        for report in reports:
            _print_import_report(report)
        summary = candidate_store.summary()
    _print_store_summary(summary)
    if campaign:
        _demo_campaign(url, out / "report")
    console.print(f"\nstore: [bold]{db_path}[/]  (try: crystaloop db ls --store {url} --elements Sr,Ti)")


def _demo_campaign(url: str, report_dir: Path) -> None:
    """A short real campaign, examples/perovskite-water-splitting.yaml cut to 2 iterations, through
    the Prefect flow: the shipped perov_5 generator, the shipped band-gap surrogate, BO, CHGNet
    relaxations and the hull. Prefect runs in its local mode (a temporary server) unless
    ``PREFECT_API_URL`` points at one, where the run then shows in the UI."""
    import os

    import torch

    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")  # a busy 2-core machine needs more than 20 s
    from crystaloop.commands.campaign import print_reports, print_stability
    from crystaloop.data.errors import CrystaloopError
    from crystaloop.flows.campaign import campaign_flow
    from crystaloop.flows.config import FlowSettings
    from crystaloop.flows.runtime import close_stores
    from crystaloop.loop.config import load_campaign_config

    torch.set_num_threads(1)
    config = load_campaign_config(Path(__file__).resolve().parent / "examples" / "perovskite-water-splitting.yaml")
    budget = config.budget.model_copy(update={"iterations": 2, "candidates_per_iteration": 24, "oracle_calls_per_iteration": 3})
    generator = config.generator.model_copy(update={"steps": 100, "method": "pc"})
    config = config.model_copy(update={"budget": budget, "generator": generator})
    console.print(f"\n[bold]demo campaign[/] {config.name}: 2 iterations through Prefect, 24 generated and 3 CHGNet "
                  "relaxations each")
    try:
        state = campaign_flow(config, store_url=url, settings=FlowSettings(report_dir=str(report_dir)), return_state=True)
        if not state.is_completed():
            raise CrystaloopError(f"the demo flow run ended {state.type.value}: {state.message}")
        reports = state.result()
    except CrystaloopError as exc:
        raise _fail(str(exc)) from None
    finally:
        close_stores()
    print_reports(config, reports)
    from crystaloop.data.records import CandidateStatus
    from crystaloop.data.store import CandidateStore
    from crystaloop.loop.campaign import iteration_candidates

    with CandidateStore(url) as db:
        print_stability(iteration_candidates(db, config.name, None, [CandidateStatus.EVALUATED]))
    figures = sorted(report_dir.glob("*.png"))
    console.print(f"report: [bold]{report_dir}[/] ({', '.join(p.name for p in figures) or 'no figures'})")


def _print_store_summary(summary: dict) -> None:
    table = Table("status", "candidates", title="candidate store")
    for status, count in summary.get("by_status", {}).items():
        table.add_row(str(status), str(count))
    console.print(table)
    formulas = summary.get("top_formulas", [])
    if formulas:
        top = Table("formula", "structures", title="most common formulas")
        for formula, count in formulas[:10]:
            top.add_row(formula, str(count))
        console.print(top)
    by_nelements = summary.get("by_nelements", {})
    if by_nelements:
        console.print("elements per structure: " + ", ".join(f"{k}: {v}" for k, v in sorted(by_nelements.items())))


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
    from pydantic import ValidationError

    from crystaloop.data.datasets import load_dataset
    from crystaloop.data.errors import CrystaloopError, describe_validation_error
    from crystaloop.surrogates.config import SurrogateConfig
    from crystaloop.surrogates.training import train_ensemble

    fields = {**read_yaml_mapping(config, "surrogate config"), "architecture": architecture, "targets": tuple(target), "seed": seed}
    fields.update({k: v for k, v in {"ensemble_size": ensemble, "epochs": epochs, "angular_degree": angular_degree}.items() if v is not None})
    try:
        settings = SurrogateConfig(**fields)
        train_set = load_dataset(data)
        test_set = load_dataset(test) if test else None
    except ValidationError as exc:
        raise _fail(f"bad surrogate config: {describe_validation_error(exc)}") from None
    except CrystaloopError as exc:
        raise _fail(str(exc)) from None
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    columns = (TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total} epochs"), TimeElapsedColumn())
    with Progress(*columns, console=err_console) as bar:
        tasks: dict[int, object] = {}

        def on_epoch(member: int, epoch: int, total: int, val_mae: float) -> None:
            if member not in tasks:
                tasks[member] = bar.add_task(f"member {member + 1}/{settings.ensemble_size}", total=total)
            bar.update(tasks[member], completed=epoch, description=f"member {member + 1}/{settings.ensemble_size} calibration-split MAE {val_mae:.3f} (normalised)")

        try:
            result = train_ensemble(settings, train_set, test_set, checkpoint=out, on_epoch=on_epoch)
        except CrystaloopError as exc:
            raise _fail(str(exc)) from None
    _print_metrics(result.metrics["calibration_split"], title=f"calibration split carved from --data ({result.metrics['n_calibration']} structures)")
    if "held_out" in result.metrics:
        _print_metrics(result.metrics["held_out"], title=f"held-out {test} ({result.metrics['n_held_out']} structures)")
    console.print(f"checkpoint: [bold]{out}[/]")


def _print_metrics(report: dict, title: str) -> None:
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
    raise _fail("give --model (a checkpoint or shipped name) or --target to pick a shipped surrogate")


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
    from crystaloop.data.errors import CrystaloopError
    from crystaloop.surrogates.ensemble import PropertyEnsemble
    from crystaloop.surrogates.plots import parity_and_calibration_plot
    from crystaloop.surrogates.training import evaluate_ensemble, target_matrix

    try:
        ensemble = PropertyEnsemble.load(_resolve_surrogate(model, target))
        dataset = load_dataset(data)
        outputs = ensemble.member_outputs(dataset.crystals)
        report = evaluate_ensemble(ensemble, dataset, outputs=outputs)
        meta = ensemble.metadata
        overlap = training_overlap(dataset, recorded=meta.get(TRAIN_HASHES_KEY), source=meta.get("train_data"),
                                   source_hash=meta.get("train_data_hash"))
        held_out = _held_out_report(ensemble, dataset, outputs, overlap, evaluate_ensemble)
    except CrystaloopError as exc:
        raise _fail(str(exc)) from None
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
    from crystaloop.data.errors import CrystaloopError
    from crystaloop.surrogates.ensemble import PropertyEnsemble

    try:
        ensemble = PropertyEnsemble.load(_resolve_surrogate(model, target))
        ids, crystals, errors = read_structures(path)
        report_read(path, crystals, errors)
        if not crystals:
            raise fail_unreadable(path, errors)
        prediction = ensemble.predict(crystals)
        ood = ensemble.ood_score(crystals)
    except CrystaloopError as exc:
        raise _fail(str(exc)) from None
    table = Table("structure", "formula", *[f"{p} ({u})" for p, u in zip(prediction.properties, prediction.units, strict=True)], "OOD score", title=ensemble.name)
    for i in range(min(len(crystals), limit)):
        cells = [f"{prediction.mean[i, j]:.3f} ± {prediction.std[i, j]:.3f}" for j in range(len(prediction.properties))]
        table.add_row(ids[i], crystals[i].reduced_formula, *cells, f"{ood[i]:.2f}")
    console.print(table)
    for error in errors:
        err_console.print(f"  [yellow]bad row[/] {error}", highlight=False)


@oracle_app.command("relax")
def oracle_relax(
    path: Annotated[str, typer.Argument(help="A CIF/POSCAR file, a folder, a CDVAE CSV or extxyz.")],
    oracle: Annotated[str, typer.Option("--oracle", help="chgnet | sevennet | emt (ASE EMT: instant, for tests and demos)")] = "chgnet",
    fmax: Annotated[float, typer.Option("--fmax", min=0.0, help="Force tolerance, eV/Å.")] = 0.1,
    steps: Annotated[int, typer.Option("--steps", min=1, help="Most optimiser steps.")] = 200,
    out: Annotated[Optional[Path], typer.Option("--out", help="Write relaxed structures here: .extxyz (energy, forces, stress, status per frame), .json or .cif.")] = None,  # noqa: UP045
) -> None:
    """Relax structures with an MLIP and report energy per atom and status."""
    from crystaloop.data.errors import CrystaloopError
    from crystaloop.surrogates.oracles import RelaxConfig, make_oracle

    check_out_path(out)
    from crystaloop.data.datasets.files import WRITE_SUFFIXES

    if out is not None and out.suffix.lower() not in WRITE_SUFFIXES:
        raise _fail(f"--out {out}: unknown extension {out.suffix!r}; allowed: {', '.join(WRITE_SUFFIXES)}")
    try:
        runner_oracle = make_oracle(oracle, relax=RelaxConfig(fmax=fmax, max_steps=steps))
        ids, crystals, errors = read_structures(path)
        report_read(path, crystals, errors)
        if not crystals:
            raise fail_unreadable(path, errors)
        relaxations = runner_oracle.relax(crystals)
    except CrystaloopError as exc:
        raise _fail(str(exc)) from None
    table = Table("structure", "formula", "status", "energy (eV/atom)", "steps", "fmax (eV/Å)", "reason", title=f"{oracle} relaxation")
    for ident, crystal, result in zip(ids, crystals, relaxations, strict=True):
        energy = "" if result.energy_per_atom is None else f"{result.energy_per_atom:.4f}"
        table.add_row(ident, crystal.reduced_formula, result.status, energy, str(result.steps), f"{result.fmax:.3f}" if result.fmax is not None else "", result.reason)
    console.print(table)
    if out is not None:
        from crystaloop.commands.files import write_relaxed

        try:
            written = write_relaxed(out, runner_oracle, ids, relaxations)
        except CrystaloopError as exc:
            raise _fail(str(exc)) from None
        if written:
            console.print(f"relaxed structures: [bold]{out}[/] ({written} with energy, forces, stress and status; failed ones left out)")
        else:
            err_console.print(f"[yellow]warning[/] every relaxation failed; nothing written to {out}", highlight=False)
    for error in errors:
        err_console.print(f"  [yellow]bad row[/] {error}", highlight=False)


# ---------------------------------------------------------------- OPTIMADE API: serve, db query
_QUERY_FORMATS = ("table", "json", "cif")
_CIF_FIELDS = ("lattice_vectors", "cartesian_site_positions", "species_at_sites")
_TABLE_FIELDS = ("chemical_formula_reduced", "nsites", "_crystaloop_status", "_crystaloop_e_above_hull", "_crystaloop_campaign")


@app.command("serve")
def serve(
    host: Annotated[str, typer.Option("--host", help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=1, max=65535, help="TCP port.")] = 5000,
    store: StoreOption = None,
    page_limit_max: Annotated[int, typer.Option("--page-limit-max", min=1, help="Largest page_limit accepted (403 beyond).")] = 1000,
    base_url: Annotated[Optional[str], typer.Option("--base-url", help="Public URL of the API when behind a proxy.")] = None,  # noqa: UP045
    workers: Annotated[int, typer.Option("--workers", min=1, max=64, help="Server processes (uvicorn workers).")] = 1,
) -> None:
    """Serve the store as a read-only OPTIMADE v1.2 API (/v1/info, /v1/structures …) with uvicorn."""
    import os

    import uvicorn
    from pydantic import ValidationError

    from crystaloop.data.errors import CrystaloopError, describe_validation_error
    from crystaloop.data.optimade.app import CONFIG_ENV_VAR, create_app
    from crystaloop.data.optimade.config import OptimadeConfig
    from crystaloop.data.store import ENV_VAR, existing_store_url, redact_url

    try:
        config = OptimadeConfig(page_limit_max=page_limit_max, page_limit=min(20, page_limit_max), base_url=base_url)
        url = existing_store_url(store)  # serves what exists; never creates a store
        api = create_app(url, config=config)  # opens (and migrates) the store once, before any worker
    except ValidationError as exc:
        raise _fail(f"bad server settings: {describe_validation_error(exc)}") from None
    except CrystaloopError as exc:
        raise _fail(str(exc)) from None
    err_console.print(f"OPTIMADE API for {redact_url(url)}: http://{host}:{port}/v1/info (Ctrl-C stops)", highlight=False)
    if workers == 1:
        uvicorn.run(api, host=host, port=port, log_level="warning", access_log=False)
        return
    os.environ[ENV_VAR] = url  # each worker process builds its own app from these
    os.environ[CONFIG_ENV_VAR] = config.model_dump_json()
    target = "crystaloop.data.optimade.app:app_from_environment"
    uvicorn.run(target, factory=True, workers=workers, host=host, port=port, log_level="warning", access_log=False)


@db_app.command("query")
def db_query(
    filter_text: Annotated[str, typer.Argument(metavar="FILTER", help='OPTIMADE filter, e.g. \'elements HAS ALL "Sr","Ti" AND nsites<=10\'.')],
    fmt: Annotated[str, typer.Option("--format", help="table | json | cif")] = "table",
    limit: Annotated[int, typer.Option("--limit", min=0, max=100000, help="Show at most this many structures.")] = 20,
    sort: Annotated[Optional[str], typer.Option("--sort", help="Sort fields, '-' for descending, e.g. _crystaloop_e_above_hull,-nsites.")] = None,  # noqa: UP045
    store: StoreOption = None,
) -> None:
    """Query the store with an OPTIMADE filter (the API's translator); bad filters exit with code 2."""
    import orjson

    from crystaloop.data.errors import CrystaloopError
    from crystaloop.data.optimade.entries import DEFAULT_FIELDS, document_to_cif
    from crystaloop.data.optimade.errors import OptimadeRequestError
    from crystaloop.data.optimade.search import StructureSearch, open_readonly_engine
    from crystaloop.data.store import CandidateStore, existing_store_url

    if fmt not in _QUERY_FORMATS:
        raise _fail(f"unknown --format {fmt!r}; allowed: {', '.join(_QUERY_FORMATS)}")
    fields = {"table": _TABLE_FIELDS, "cif": _CIF_FIELDS, "json": DEFAULT_FIELDS}[fmt]
    try:
        url = existing_store_url(store)  # read-only: a missing SQLite file is an error, never created
        CandidateStore(url).close()  # migrates an existing store's schema, like every db command
        engine = open_readonly_engine(url)
        try:
            page = StructureSearch(engine).search(filter_text, sort=sort, limit=limit, fields=fields)
        finally:
            engine.dispose()
    except OptimadeRequestError as exc:
        raise _fail(f"bad filter ({exc.title}): {exc}") from None
    except CrystaloopError as exc:
        raise _fail(str(exc)) from None
    for warning in page.warnings:
        err_console.print(f"[yellow]warning[/] {warning.title}: {warning.detail}", highlight=False)
    if fmt == "json":
        body = {"data": page.documents, "meta": {"data_returned": page.data_returned, "more_data_available": page.more_data_available}}
        typer.echo(orjson.dumps(body, option=orjson.OPT_INDENT_2).decode())
    elif fmt == "cif":
        for document in page.documents:
            typer.echo(document_to_cif(document))
    else:
        table = Table("id", "formula", "sites", "status", "e_above_hull (eV/atom)", "campaign", title=f"{len(page.documents)} of {page.data_returned} structures")
        for document in page.documents:
            a = document["attributes"]
            e_hull = a["_crystaloop_e_above_hull"]
            table.add_row(
                document["id"][:12], a["chemical_formula_reduced"] or "", str(a["nsites"]), a["_crystaloop_status"],
                "" if e_hull is None else f"{e_hull:.3f}", a["_crystaloop_campaign"] or "",
            )
        console.print(table)


def main() -> None:
    """Entry point of the ``crystaloop`` console script."""
    app()


if __name__ == "__main__":
    main()
