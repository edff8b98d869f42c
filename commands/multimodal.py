"""``crystaloop multimodal train|eval|index|embed-training|robocrys-cache`` and ``crystaloop search``
(registered at the top level by ``cli.py``).

``search`` ranks the candidates of the store against a text, a measured powder pattern or a
structure file, through the fusion model's shared latent; candidates the model has not embedded
yet are embedded first (stored with the candidates, keyed by the checkpoint's hash).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Optional  # noqa: UP035 - typer needs Optional on 3.11

import typer

from crystaloop.commands.common import (
    Column,
    FormatOption,
    Output,
    OutputFormat,
    StoreOption,
    console,
    err_console,
    exit_on_error,
    fail,
    fail_unreadable,
    read_structures,
    read_yaml_mapping,
)

if TYPE_CHECKING:
    import numpy as np

    from crystaloop.multimodal.fusion import FusionModel

__all__ = ["multimodal_app", "search", "train", "evaluate", "index", "embed_training", "robocrys_cache"]

multimodal_app = typer.Typer(
    help="Structure / XRD / text encoders in one latent: train, evaluate, index.", no_args_is_help=True
)
logger = logging.getLogger(__name__)

ModelOption = Annotated[
    Optional[Path],  # noqa: UP045
    typer.Option("--model", help="Fusion checkpoint (.pt); default: the shipped one (multimodal/shipped/fusion.pt)."),
]


def _load_model(path: Path | None) -> tuple[FusionModel, dict[str, Any]]:
    from crystaloop.multimodal.fusion import load_checkpoint
    from crystaloop.multimodal.pretrained import shipped_checkpoint

    with exit_on_error():
        return load_checkpoint(path or shipped_checkpoint())


@multimodal_app.command("train")
def train(
    out: Annotated[
        Path, typer.Option("--out", help="Checkpoint to write; an interrupted run resumes from <out>.resume.pt.")
    ],
    config: Annotated[Optional[Path], typer.Option("--config", help="YAML of TrainConfig fields.")] = None,  # noqa: UP045
    data: Annotated[
        list[str] | None,
        typer.Option("--data", help="Training data (repeatable); default perov_5/train and carbon_24/train."),
    ] = None,  # noqa: UP045
    val: Annotated[
        list[str] | None, typer.Option("--val", help="Validation data (repeatable); default the shipped val splits.")
    ] = None,  # noqa: UP045
    epochs: Annotated[Optional[int], typer.Option("--epochs", min=1)] = None,  # noqa: UP045
    latent_dim: Annotated[Optional[int], typer.Option("--dim", min=2, help="Width of the shared latent.")] = None,  # noqa: UP045
    max_minutes: Annotated[
        float | None, typer.Option("--max-minutes", help="Stop after the epoch that passes this wall time.")
    ] = None,  # noqa: UP045
    seed: Annotated[int, typer.Option("--seed")] = 0,
    threads: Annotated[int, typer.Option("--threads", min=1, help="torch CPU threads.")] = 1,
    resume: Annotated[bool, typer.Option("--resume/--no-resume")] = True,
    fmt: FormatOption = OutputFormat.TABLE,
) -> None:
    """Contrastive training of the structure, XRD and text encoders; prints validation recall@k."""
    from crystaloop.multimodal.training import TrainConfig
    from crystaloop.multimodal.training import train as run_training

    fields = read_yaml_mapping(config, "training config")
    fields.update({"seed": seed, "threads": threads})
    overrides = {
        "train": tuple(data) if data else None,
        "val": tuple(val) if val else None,
        "epochs": epochs,
        "max_minutes": max_minutes,
    }
    fields.update({k: v for k, v in overrides.items() if v is not None})
    if latent_dim is not None:
        fields["model"] = {**fields.get("model", {}), "latent_dim": latent_dim}
    with Output(fmt) as output:
        with exit_on_error(invalid="bad training config: "):
            settings = TrainConfig(**fields)
            _, report = run_training(settings, out, resume=resume)
        console.print(
            f"checkpoint: {out} ({report['epochs_run']} epochs, {report['minutes']:.1f} min, final loss {report['losses'][-1]:.3f})"
        )
        output.add(checkpoint=str(out), epochs_run=report["epochs_run"], minutes=report["minutes"], final_loss=report["losses"][-1])
        for split, metrics in report["val"].items():
            _print_metrics(output, split, metrics)


_RETRIEVAL_ROWS = ("text_to_structure", "xrd_to_structure", "augmented_xrd_to_structure", "composition_only", "random")
_RETRIEVAL_COLUMNS = (
    Column("query", "query → structure", lambda q: q.replace("_", " ")),
    *(Column(f"recall@{k}", f"recall@{k}", "{:.3f}", justify="right") for k in (1, 5, 10)),
)


def _print_metrics(output: Output, name: str, metrics: dict[str, Any]) -> None:
    """Recall@1/5/10 of each query kind and baseline on the split ``name`` (one table per split)."""
    rows = [{"query": row, **{f"recall@{k}": metrics[row][f"recall@{k}"] for k in (1, 5, 10)}} for row in _RETRIEVAL_ROWS]
    output.table(name, _RETRIEVAL_COLUMNS, rows, title=f"{name}: retrieval among {metrics['n']} structures")


@multimodal_app.command("eval")
def evaluate(
    data: Annotated[str, typer.Option("--data", help="Any CDVAE CSV (or folder / extxyz / shipped split).")],
    out: Annotated[Path, typer.Option("--out", help="metrics.json to write.")] = Path("metrics.json"),
    model: ModelOption = None,
    fmt: FormatOption = OutputFormat.TABLE,
) -> None:
    """Recall@1/5/10 of text→structure and XRD→structure among all structures of a file, with baselines."""
    from crystaloop.multimodal.training import evaluate as run_evaluation

    with Output(fmt) as output:
        fusion, info = _load_model(model)
        with exit_on_error():
            metrics = run_evaluation(fusion, data)
        metrics.update({"data": data, "model": str(model or "shipped"), "checkpoint_hash": info["checkpoint_hash"]})
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(metrics, indent=2))
        _print_metrics(output, "retrieval", metrics)
        console.print(f"metrics: {out}")
        output.add(metrics=str(out), structures=metrics["n"])


@multimodal_app.command("index")
def index(model: ModelOption = None, store: StoreOption = None) -> None:
    """Embed every stored candidate the model has not embedded yet."""
    from crystaloop.data.store import CandidateStore
    from crystaloop.multimodal.store_index import embedding_name, index_store

    fusion, info = _load_model(model)
    with exit_on_error(), CandidateStore(store) as candidates:
        added = index_store(candidates, fusion, embedding_name(info), progress=True)
    console.print(f"embedded {added} candidates as {embedding_name(info)}")


@multimodal_app.command("embed-training")
def embed_training(
    dataset: Annotated[
        str,
        typer.Option("--dataset", help="Shipped name (its train split), name/split, or a CDVAE CSV / folder / extxyz."),
    ],
    out: Annotated[
        Path, typer.Option("--out", help=".npy to write (structures × latent width), with a .json summary beside it.")
    ],
    views: Annotated[
        str, typer.Option("--views", help="Views drawn at random per structure, comma-separated.")
    ] = "structure,xrd,text",
    seed: Annotated[int, typer.Option("--seed")] = 0,
    model: ModelOption = None,
    threads: Annotated[int, typer.Option("--threads", min=1, help="torch CPU threads.")] = 1,
) -> None:
    """Latents of the training structures for `crystaloop generator train --embeddings` (one random view per row)."""
    import hashlib

    import numpy as np
    import torch

    from crystaloop.data.datasets import SHIPPED_DATASETS, load_dataset
    from crystaloop.multimodal.training_embeddings import check_views, training_embeddings

    torch.set_num_threads(threads)
    spec = f"{dataset}/train" if dataset in SHIPPED_DATASETS else dataset
    if out.suffix != ".npy":
        raise fail(f"--out {out}: must end in .npy")
    with exit_on_error():
        chosen = check_views([v.strip() for v in views.split(",") if v.strip()])
        data = load_dataset(spec)
        fusion, info = _load_model(model)
        result = training_embeddings(fusion, data.crystals, views=chosen, seed=seed, progress=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    np.save(out, result.vectors)
    summary = {
        "dataset": spec,
        "n": len(data),
        "width": int(result.vectors.shape[1]),
        "views": list(chosen),
        "seed": seed,
        "rows_per_view": result.counts(),
        "fusion_checkpoint_sha256": info["checkpoint_hash"],
        "view_of_row_sha256": hashlib.sha256(",".join(result.views).encode()).hexdigest()[:16],
    }
    out.with_suffix(".json").write_text(json.dumps(summary, indent=2))
    console.print(f"wrote {len(data)} × {summary['width']} latents ({summary['rows_per_view']}) to {out}")


@multimodal_app.command("robocrys-cache")
def robocrys_cache(
    dataset: Annotated[
        str, typer.Option("--dataset", help="Shipped split (perov_5/val) or a CDVAE CSV / folder / extxyz.")
    ],
    out: Annotated[Path, typer.Option("--out", help="Cache to write or extend (.jsonl.gz).")],
    limit: Annotated[
        Optional[int], typer.Option("--limit", min=1, help="Only the first N structures of the dataset.")  # noqa: UP045
    ] = None,
    time_budget: Annotated[
        Optional[float], typer.Option("--time-budget", min=0.1, help="Minutes; start no new structure after them.")  # noqa: UP045
    ] = None,
    resume: Annotated[bool, typer.Option("--resume/--no-resume", help="Skip structures already in --out.")] = True,
) -> None:
    """Precompute robocrys descriptions (needs the optional extra `crystaloop[robocrys]`; 4–25 s per structure)."""
    from crystaloop.data.datasets import load_dataset
    from crystaloop.multimodal.robocrys_cache import build_cache, robocrys_available

    if not robocrys_available():
        raise fail("robocrys is not installed; install the optional extra: pip install 'crystaloop[robocrys]'")
    if not out.name.endswith(".jsonl.gz"):
        raise fail(f"--out {out}: must end in .jsonl.gz")
    with exit_on_error():
        crystals = load_dataset(dataset).crystals
        crystals = crystals[:limit] if limit is not None else crystals
        report = build_cache(
            crystals, out, resume=resume, time_budget_s=None if time_budget is None else time_budget * 60
        )
    console.print(
        f"{out}: {report.described} described, {report.failed} failed, {report.already_cached} already cached, "
        f"{report.remaining} left for a later run; {report.mean_seconds:.1f} s per structure"
    )


def _query_embedding(
    fusion: FusionModel, text: str | None, xrd: Path | None, like: Path | None, wavelength: float | None
) -> np.ndarray:
    from crystaloop.multimodal.xrd_io import read_pattern

    if text is not None:
        return fusion.embed("text", [text])[0]
    if xrd is not None:
        return fusion.embed("xrd", read_pattern(xrd, fusion.config.grid, wavelength=wavelength)[None])[0]
    if like is None or not like.is_file():
        raise fail(f"no structure file at {like}")
    _, crystals, errors = read_structures(str(like))
    if not crystals:
        raise fail_unreadable(str(like), errors)
    return fusion.embed("structure", crystals[:1])[0]


def search(
    text: Annotated[Optional[str], typer.Option("--text", help="Describe the crystal in words.")] = None,  # noqa: UP045
    xrd: Annotated[
        Path | None,
        typer.Option("--xrd", help="Measured powder pattern: two-column .xy/.csv, 2θ (degrees) and intensity."),
    ] = None,  # noqa: UP045
    like: Annotated[
        Path | None, typer.Option("--like", help="A structure file (CIF or POSCAR) to find neighbours of.")
    ] = None,  # noqa: UP045
    top: Annotated[int, typer.Option("--top", min=1, help="How many candidates to list.")] = 10,
    wavelength: Annotated[
        float | None, typer.Option("--wavelength", help="Radiation of --xrd in Å (default Cu Kα 1.54184).")
    ] = None,  # noqa: UP045
    model: ModelOption = None,
    store: StoreOption = None,
    fmt: FormatOption = OutputFormat.TABLE,
    as_json: Annotated[bool, typer.Option("--json", hidden=True, help="The same as --format json.")] = False,
) -> None:
    """Rank the store's candidates by similarity to a text, an XRD pattern or a structure.

    Elements, formulas and symmetry words a --text names outright are a filter: only candidates
    that satisfy them are listed (the rest rank by similarity)."""
    from crystaloop.data.records import CandidateStatus
    from crystaloop.data.store import CandidateStore
    from crystaloop.multimodal.store_index import embedding_name, index_store, search_store

    given = [name for name, value in (("--text", text), ("--xrd", xrd), ("--like", like)) if value is not None]
    if len(given) != 1:
        raise fail(f"give exactly one of --text, --xrd, --like (got {', '.join(given) or 'none'})")
    with Output(OutputFormat.JSON if as_json else fmt) as output:
        fusion, info = _load_model(model)
        name = embedding_name(info)
        with exit_on_error():
            query = _query_embedding(fusion, text, xrd, like, wavelength)
            with CandidateStore(store) as candidates:
                added = index_store(candidates, fusion, name, progress=True)
                if added:
                    err_console.print(f"embedded {added} new candidates", highlight=False)
                stated = _stated_constraints(text)
                hits = search_store(candidates, name, query, top=top if stated is None else top * STATED_OVERFETCH)
                found = [(hit, candidates.get(hit.key)) for hit in hits]
                if stated is not None:  # what the words state outright is a filter, the latent ranks what passes
                    found = [(hit, c) for hit, c in found if not stated.violations(c.crystal)][:top]
                rows = [
                    {"rank": rank + 1, "score": h.score, "formula": c.crystal.reduced_formula, "sites": c.crystal.n_sites,
                     "status": CandidateStatus(c.status).value, "id": h.key}
                    for rank, (h, c) in enumerate(found)
                ]  # fmt: skip
        output.table("hits", _HIT_COLUMNS, rows, title=f"top {len(rows)} by cosine similarity ({' '.join(given)})")


STATED_OVERFETCH = 50
"""With stated constraints, ``--top`` × this many nearest candidates are fetched before filtering."""


def _stated_constraints(text: str | None):  # noqa: ANN202 - PromptConstraints or None
    """The constraints a ``--text`` query states outright (shown on stderr), or ``None``."""
    if text is None:
        return None
    from crystaloop.multimodal.prompt import parse_prompt

    constraints = parse_prompt(text)
    if constraints.empty:
        return None
    err_console.print(f"the text was read to require: {constraints.describe()}; only candidates that satisfy it are listed",
                      highlight=False)
    return constraints


_HIT_COLUMNS = (
    Column("rank", "rank", justify="right"),
    Column("score", "score", "{:.3f}", justify="right"),
    Column("formula", "formula"),
    Column("sites", "sites", justify="right", priority=1),
    Column("status", "status"),
    Column("id", "id", "{:.12}"),
)
