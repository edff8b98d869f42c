"""``crystaloop generator eval``: CSP at k=1 and k (the model and both no-learning baselines on the
same rows, in one run; :mod:`crystaloop.generator.csp`), or de novo validity, coverage and distances."""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Annotated, Any, Optional

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
    progress_bar,
    read_yaml_mapping,
    task_callback,
)

__all__ = ["evaluate"]

logger = logging.getLogger(__name__)

_MODEL_HELP = ("The generator: a shipped diffusion name (perov_5, perov_5_consistency …) or checkpoint file; a kind that "
               "needs no checkpoint (substitution, random_search, template: fitted on --train); or a .yaml generator "
               "config as in a campaign (kind: …, or a campaign file's generator: section).")


def evaluate(
    model: Annotated[str, typer.Option("--model", "--generator", help=_MODEL_HELP)],
    data: Annotated[str, typer.Option("--data", help="Test rows: shipped name/split (perov_5/val), CDVAE CSV, folder or extxyz.")],
    out: Annotated[Path, typer.Option("--out", help="Folder for results.json, results.csv, results.md (and, for csp, cifs/).")],
    mode: Annotated[str, typer.Option("--mode", help="csp (composition given) or dng (de novo, diffusion models).")] = "csp",
    train: Annotated[Optional[str], typer.Option("--train", help="csp: training split of the baselines (and of substitution/template): default the shipped dataset's train split, else the generator's training data.")] = None,  # noqa: UP045
    k: Annotated[int, typer.Option("--k", help="csp: structures per composition for the k columns (k=1 is always reported).")] = 20,
    rows: Annotated[Optional[int], typer.Option("--rows", "--limit", help="Use the first N test rows (csp) / draw N samples (dng).")] = None,  # noqa: UP045
    k_rows: Annotated[Optional[int], typer.Option("--k-rows", help="csp: score k structures on the first N rows only (default: every row).")] = None,  # noqa: UP045
    steps: Annotated[Optional[int], typer.Option("--steps", min=1, help="Diffusion: reverse steps (default: 1000 for a teacher, 2 for a distilled model).")] = None,  # noqa: UP045
    method: Annotated[Optional[str], typer.Option("--method", help="Diffusion: pc, ddim, or consistency (distilled checkpoints).")] = None,  # noqa: UP045
    symprec: Annotated[float, typer.Option("--symprec", help="csp: spglib tolerance (Å) of the symmetrised k=1 CIFs.")] = 0.1,
    coverage_limit: Annotated[int, typer.Option("--coverage-limit", min=0, help="dng: structures used for COV-R/COV-P (fingerprints are slow; 0 skips).")] = 300,
    seed: Annotated[int, typer.Option("--seed")] = 0,
    threads: Annotated[int, typer.Option("--threads", min=1)] = 1,
    fmt: FormatOption = OutputFormat.TABLE,
) -> None:
    """Evaluate a generator: CSP match / strict fit at k=1 and k beside the two no-learning baselines
    (composition → training template, random same-size training structure), or de novo quality."""
    import torch

    if mode not in ("csp", "dng"):
        raise fail(f"--mode must be csp or dng, got {mode!r}")
    if k < 1:
        raise fail(f"--k must be at least 1 (structures per composition), got {k}")
    for option, value in (("--rows", rows), ("--k-rows", k_rows)):
        if value is not None and value < 1:
            raise fail(f"{option} must be at least 1, got {value}")
    if symprec <= 0:
        raise fail(f"--symprec must be > 0 Å, got {symprec}")
    if out.exists() and not out.is_dir():
        raise fail(f"--out {out} is a file, not a folder")
    torch.set_num_threads(threads)
    with Output(fmt) as output:
        if mode == "dng":
            _evaluate_dng(output, model, data, out, rows, steps, method, coverage_limit, seed, threads)
        else:
            _evaluate_csp(output, model, data, out, train=train, k=k, rows=rows, k_rows=k_rows, steps=steps,
                          method=method, symprec=symprec, seed=seed, threads=threads)


# -- CSP -------------------------------------------------------------------------------------------


def build_model(spec: str, *, train: str | None, steps: int | None, method: str | None, max_atoms: int):  # noqa: ANN201 - a Generator
    """The generator ``spec`` names (see ``--model``); ``train`` feeds substitution and template.

    Raises:
        CrystaloopError: an unknown name (naming the shipped ones and the kinds), an unreadable config,
            or --steps/--method for a generator that is not a diffusion model.
    """
    from pydantic import TypeAdapter

    from crystaloop.commands.generator import _load_generator
    from crystaloop.commands.untrained import UNTRAINED_KINDS, untrained_generator
    from crystaloop.data.errors import CrystaloopError
    from crystaloop.generator.registry import GENERATOR_CHOICES, GeneratorChoice

    path = Path(spec)
    if path.suffix.lower() in (".yaml", ".yml"):
        fields = read_yaml_mapping(path, "generator config")
        fields = fields["generator"] if isinstance(fields.get("generator"), dict) else fields
        choice = TypeAdapter(GeneratorChoice).validate_python(fields)
        if choice.kind != "diffusion" and (steps is not None or method is not None):
            raise CrystaloopError(f"--steps/--method set a diffusion sampler; {spec} configures kind {choice.kind!r}")
        if choice.kind == "diffusion" and (steps is not None or method is not None):
            choice = choice.model_copy(update={k: v for k, v in {"steps": steps, "method": method}.items() if v is not None})
        return choice.build()
    if spec in GENERATOR_CHOICES and spec not in UNTRAINED_KINDS:
        raise CrystaloopError(f"--model {spec}: kind {spec!r} needs its settings; give them in a .yaml generator config "
                              f"(kind: {spec}, …) or name one of {', '.join(UNTRAINED_KINDS)}, a shipped model or a checkpoint")
    if spec in UNTRAINED_KINDS:
        if steps is not None or method is not None:
            raise CrystaloopError(f"--steps/--method set a diffusion sampler; --model {spec} is not one")
        if spec != "random_search" and train is None:
            raise CrystaloopError(f"--model {spec} learns from a training split; give --train")
        library = [train] if spec != "random_search" and train is not None else None
        return untrained_generator(spec, library=library, exclude=None, max_atoms=max_atoms if spec == "random_search" else None,
                                   default_training=train or "perov_5/train")
    try:
        return _load_generator(spec, steps, method)
    except CrystaloopError as exc:
        raise CrystaloopError(f"--model {spec}: {exc}; or a kind needing no checkpoint ({', '.join(UNTRAINED_KINDS)}) "
                              "or a .yaml generator config") from None


def _shipped_train(data: str) -> str | None:
    """``perov_5/train`` for ``perov_5/val`` (or ``perov_5``); ``None`` for a user's file."""
    from crystaloop.data.datasets import SHIPPED_DATASETS

    name = data.split("/", 1)[0]
    return f"{name}/train" if name in SHIPPED_DATASETS and not Path(data).exists() else None


def _training_source(generator) -> str | None:  # noqa: ANN001
    """The dataset spec a generator records as its training data (a diffusion model's config, a
    substitution library's or template prior's ``training_dataset``), if any."""
    model = getattr(generator, "model", None)
    source = getattr(getattr(model, "config", None), "dataset", None)
    return source or getattr(generator, "training_dataset", None)


def _evaluate_csp(output: Output, spec: str, data: str, out: Path, *, train: str | None, k: int, rows: int | None,
                  k_rows: int | None, steps: int | None, method: str | None, symprec: float, seed: int, threads: int) -> None:
    import json

    from crystaloop.data.datasets import load_dataset
    from crystaloop.generator import csp
    from crystaloop.generator.diffusion.generator import DiffusionGenerator

    with exit_on_error(invalid=""):
        test = load_dataset(data, max_rows=rows)
        references = list(test.crystals)
        train_spec = train or _shipped_train(data)
        generator = build_model(spec, train=train_spec, steps=steps, method=method, max_atoms=max(c.n_sites for c in references))
        train_spec = train_spec or _training_source(generator)
        if train_spec is None:
            raise fail(f"--data {data} is not a shipped split and {spec} records no training data; give --train for the baselines")
        training = list(load_dataset(train_spec).crystals)
        baselines = {csp.BASELINE_RULE: csp.template_rule(training, training_dataset=train_spec),
                     csp.BASELINE_RANDOM: csp.SameSizeGenerator(training, training_dataset=train_spec)}
    scored_k = 0 if k == 1 else min(k_rows or len(references), len(references))
    model_arm = "model"
    results: list[csp.ArmResult] = []
    with progress_bar() as bar, exit_on_error():
        for arm, source in ((model_arm, generator), *baselines.items()):
            advance = _counter(bar, f"{arm} · sampling")
            if isinstance(source, DiffusionGenerator):
                sampler = csp.diffusion_sampler(source, seed=seed, on_step=advance)
            else:
                sampler = csp.from_generator(source, seed=seed, on_row=advance)
            results.append(csp.evaluate_arm(data, arm, sampler, references, scored_k, k, progress=task_callback(bar, f"{arm} · scoring")))
    table = [_table_row(r.row, k) for r in results]
    report: dict[str, Any] = {"mode": "csp", "data": data, "train": train_spec, "model": spec, "k": k, "rows": len(references),
                              "k_rows": scored_k, "seed": seed, "threads": threads, "symprec": symprec, "arms": [r.row for r in results]}
    if isinstance(generator, DiffusionGenerator):
        report.update({"steps": generator.sampler.steps, "method": generator.sampler.method})
    warnings_ = _overlap_warnings(report, references, results[0].k1, _training_source(generator), train_spec)
    out.mkdir(parents=True, exist_ok=True)
    cifs = _write_cifs(out / "cifs", results, references, symprec)
    (out / "results.json").write_text(json.dumps(report, indent=2))
    _write_csv(out / "results.csv", [r.row for r in results])
    title = f"CSP — {spec} vs no-learning baselines on {data} ({len(references)} rows; baselines from {train_spec})"
    (out / "results.md").write_text(_markdown(title, table, k, report))
    output.table("csp", _columns(k), table, title=title)
    for note in warnings_:
        err_console.print(f"[yellow]warning[/] {note}", highlight=False)
    console.print(f"results: [bold]{out}[/] (results.json, results.csv, results.md; {cifs} symmetrised k=1 CIFs in cifs/)")
    output.add(results=str(out / "results.json"))


def _counter(bar, description: str):  # noqa: ANN001, ANN202 - a rich Progress; a progress(done, total) callback
    """A task of ``bar`` advanced by one per call (sampled rows, or reverse steps of a batch)."""
    task = bar.add_task(description, total=None)
    return lambda _done, _total: bar.advance(task)


def _table_row(row: dict[str, Any], k: int) -> dict[str, Any]:
    return {"arm": row["arm"], "n": row["n"], "match_k1_%": row["match_k1_%"], "fit_k1_%": row["fit_k1_%"],
            "rmse_k1": row["rmse_k1"], f"match_k{k}_%": row.get(f"match_k{k}_%", row["match_k1_%"]),
            f"fit_k{k}_%": row.get(f"fit_k{k}_%", row["fit_k1_%"]), "structures_per_s": row["structures_per_s"],
            "no_output_k1": row["no_output_k1"]}


def _columns(k: int) -> tuple[Column, ...]:
    pct = "{:.1f}"
    return (Column("arm", "arm"), Column("n", "rows", justify="right"),
            Column("match_k1_%", "match k=1 %", pct, justify="right"), Column("fit_k1_%", "fit k=1 %", pct, justify="right"),
            Column("rmse_k1", "RMSE k=1", "{:.4f}", justify="right"),
            Column(f"match_k{k}_%", f"match k={k} %", pct, justify="right"), Column(f"fit_k{k}_%", f"fit k={k} %", pct, justify="right"),
            Column("structures_per_s", "structures/s", "{:.3g}", justify="right"),
            Column("no_output_k1", "no output k=1", justify="right", priority=1))


def _markdown(title: str, table: list[dict[str, Any]], k: int, report: dict[str, Any]) -> str:
    columns = _columns(k)
    lines = [f"### {title}", "", "| " + " | ".join(c.header for c in columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(c.cell(row) or "–" for c in columns) + " |" for row in table]
    held = {key: value for key, value in report.items() if key.startswith("held_out_") or key == "n_held_out"}
    if held:
        lines += ["", "Model on the test rows it did not train on: " + ", ".join(f"{key} {value:.4g}" if isinstance(value, float)
                                                                             else f"{key} {value}" for key, value in held.items())]
    return "\n".join(lines) + "\n"


def _write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    import csv

    keys = list(dict.fromkeys(key for row in rows for key in row))
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=keys)
        writer.writeheader()
        writer.writerows(rows)


def _write_cifs(folder: Path, results: list, references: list, symprec: float) -> int:
    """One CIF per arm, one block per k=1 structure: its refined cell (:func:`~crystaloop.generator.csp.refined`,
    exactly symmetric at ``symprec``) with the space group's symbol, number and operations."""
    from crystaloop.data.datasets.files import write_structure_file
    from crystaloop.generator.csp import refined

    folder.mkdir(parents=True, exist_ok=True)
    written = 0
    for result in results:
        kept = [(i, c) for i, c in enumerate(result.k1) if c is not None]
        if not kept:
            continue
        slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", result.row["arm"]).strip("_")
        write_structure_file(folder / f"{slug}.cif", [refined(c, symprec) for _, c in kept],
                             ids=[f"row{i:05d}_{references[i].reduced_formula}" for i, _ in kept],
                             info=[{"arm": result.row["arm"], "test_row": i, "test_formula": references[i].reduced_formula}
                                   for i, _ in kept], symprec=symprec)
        written += len(kept)
    return written


def _overlap_warnings(report: dict[str, Any], references: list, samples: list | None, model_source: str | None,
                      train_spec: str | None) -> list[str]:
    """Add ``training_overlap`` (the model's), for CSP ``n_held_out`` / ``held_out_*`` (its k=1 figures
    on the rows it did not train on) and ``baseline_overlap`` (the ``train_spec`` split's) to ``report``;
    return the warnings to print."""
    import numpy as np

    from crystaloop.data.datasets import CrystalDataset
    from crystaloop.data.datasets.overlap import training_overlap
    from crystaloop.generator.evaluation import csp_metrics

    test = CrystalDataset(name="test", crystals=list(references), ids=[str(i) for i in range(len(references))],
                          sources=[""] * len(references))
    notes = []
    overlap = training_overlap(test, source=model_source)
    report["training_overlap"] = {"items_in_training": None if overlap.seen is None else overlap.count,
                                  "items": len(references), "basis": overlap.basis}
    if overlap.seen is None:
        notes.append(f"cannot check the test data against the generator's training data: {overlap.basis}")
    elif overlap.count:
        note = (f"{overlap.count} of {len(references)} test structures ({overlap.count / len(references):.0%}) are in the "
                f"generator's training data ({overlap.basis})")
        if samples is None:
            notes.append(note + ": coverage and distances compare against structures it trained on")
        else:
            held = np.flatnonzero(~overlap.seen)
            report["n_held_out"] = int(held.size)
            if held.size:
                figures = csp_metrics([references[i] for i in held], [samples[i] for i in held])
                report.update({f"held_out_{key}": value for key, value in figures.items() if isinstance(value, int | float)})
            notes.append(note + f": the figures are optimistic; held_out_* use the other {held.size}")
    if train_spec is not None:
        base = overlap if model_source == train_spec else training_overlap(test, source=train_spec)
        report["baseline_overlap"] = {"items_in_training": None if base.seen is None else base.count, "basis": base.basis}
        if base.seen is not None and base.count:
            notes.append(f"{base.count} of {len(references)} test structures are in the baselines' training split "
                         f"{train_spec}: the baselines can copy them")
    return notes


# -- de novo ---------------------------------------------------------------------------------------


def _evaluate_dng(output: Output, model: str, data: str, out: Path, limit: int | None, steps: int | None, method: str | None,
                  coverage_limit: int, seed: int, threads: int) -> None:
    import json

    import numpy as np

    from crystaloop.commands.generator import _load_generator
    from crystaloop.data.datasets import load_dataset
    from crystaloop.generator.diffusion.generator import crystal_from_sample
    from crystaloop.generator.evaluation import dng_metrics, markdown_table

    with exit_on_error(invalid=""):
        generator = _load_generator(model, steps, method)
        test = load_dataset(data)
    sampler = generator.sampler
    references = test.crystals
    with exit_on_error():
        request = generator.request(limit or len(references), None, np.random.default_rng(seed))
    total_steps = sampler.steps * ((len(request.num_atoms) + sampler.batch_size - 1) // sampler.batch_size)
    with progress_bar(remaining=False) as bar:
        task = bar.add_task(f"sampling ({sampler.method}, {sampler.steps} steps)", total=total_steps)
        done = [0]

        def on_step(step: int, total: int) -> None:
            done[0] += 1
            bar.update(task, completed=done[0])

        with exit_on_error():
            raw = generator.sample_raw(request, seed=seed, on_step=on_step)
            samples = [crystal_from_sample(*parts) for parts in raw.split()]
            metrics = dng_metrics(samples, references, dataset=data, coverage_limit=coverage_limit, seed=seed,
                                  progress=task_callback(bar, "scoring"))
    metrics.update({"mode": "dng", "data": data, "model": model, "steps": sampler.steps, "method": sampler.method, "seed": seed,
                    "sampling_seconds": raw.seconds, "structures_per_second": len(samples) / raw.seconds, "threads": threads})
    notes = _overlap_warnings(metrics, references, None, getattr(generator.model.config, "dataset", None), None)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(metrics, indent=2))
    title = f"DNG — {model} on {data} ({sampler.steps} {sampler.method} steps)"
    (out / "results.md").write_text(markdown_table(metrics, title))
    table = [{"metric": key, "value": value} for key, value in metrics.items() if isinstance(value, int | float | str) or value is None]
    _write_csv(out / "results.csv", [{key: value for key, value in metrics.items() if not isinstance(value, dict)}])
    output.table("metrics", _METRIC_COLUMNS, table, title=title)
    for note in notes:
        err_console.print(f"[yellow]warning[/] {note}", highlight=False)
    console.print(f"results: [bold]{out}[/] (results.json, results.csv, results.md)")
    output.add(results=str(out / "results.json"))


_METRIC_COLUMNS = (Column("metric", "metric"), Column("value", "value", lambda v: f"{v:.4g}" if isinstance(v, float) else str(v), justify="right"))
