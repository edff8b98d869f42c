"""``crystaloop generator train|eval|list`` and ``crystaloop generate``."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated, Optional

import typer

from crystaloop.commands.common import console, err_console, fail, read_yaml_mapping

__all__ = ["generator_app"]

generator_app = typer.Typer(help="Train, evaluate and list crystal diffusion generators.", no_args_is_help=True)
logger = logging.getLogger(__name__)


def _dataset_spec(name: str, split: str) -> str:
    """``perov_5`` → ``perov_5/train`` for shipped names; paths and ``name/split`` pass through."""
    from crystaloop.data.datasets import SHIPPED_DATASETS

    return f"{name}/{split}" if name in SHIPPED_DATASETS else name


@generator_app.command("train")
def train(
    dataset: Annotated[str, typer.Option("--dataset", help="Shipped name (perov_5, carbon_24), name/split, or a CDVAE CSV / folder / extxyz.")],
    out: Annotated[Path, typer.Option("--out", help="Checkpoint to write; an interrupted run resumes from it.")],
    config: Annotated[Optional[Path], typer.Option("--config", help="YAML with GeneratorConfig fields overriding the dataset's preset.")] = None,  # noqa: UP045
    validation: Annotated[Optional[str], typer.Option("--validation", help="Held-out data for a validation loss (default: the shipped val split).")] = None,  # noqa: UP045
    epochs: Annotated[Optional[int], typer.Option("--epochs", min=1)] = None,  # noqa: UP045
    device: Annotated[str, typer.Option("--device", help="cpu, cuda, cuda:1 …")] = "cpu",
    threads: Annotated[int, typer.Option("--threads", min=1, help="torch CPU threads.")] = 1,
    seed: Annotated[int, typer.Option("--seed")] = 0,
    resume: Annotated[bool, typer.Option("--resume/--no-resume", help="Continue from --out when it holds this run's state.")] = True,
) -> None:
    """Train a crystal diffusion model with EMA, clipping, periodic checkpoints and resume."""
    from pydantic import ValidationError
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    from crystaloop.data.datasets import SHIPPED_DATASETS, load_dataset
    from crystaloop.data.errors import CrystaloopError, describe_validation_error
    from crystaloop.generator.presets import build_config
    from crystaloop.generator.training import train_generator

    spec = _dataset_spec(dataset, "train")
    overrides = read_yaml_mapping(config, "generator config")
    train_overrides = {**overrides.get("train", {}), "device": device, "threads": threads, "seed": seed}
    if epochs is not None:
        train_overrides["epochs"] = epochs
    overrides["train"] = train_overrides
    if validation is None and dataset in SHIPPED_DATASETS:
        validation = f"{dataset}/val"
    try:
        settings = build_config(spec, overrides)
        train_set = load_dataset(spec)
        val_set = load_dataset(validation) if validation else None
    except ValidationError as exc:
        raise fail(f"bad generator config: {describe_validation_error(exc)}") from None
    except CrystaloopError as exc:
        raise fail(str(exc)) from None
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), TimeRemainingColumn())
    with Progress(*columns, console=err_console) as bar:
        task = bar.add_task("epochs", total=settings.train.epochs)

        def on_epoch(epoch: int, losses: dict[str, float]) -> None:
            parts = " ".join(f"{k} {v:.3f}" for k, v in losses.items() if k != "epoch")
            bar.update(task, completed=epoch, description=f"epoch {epoch} {parts}")

        try:
            metrics = train_generator(settings, train_set.crystals, train_set.properties, out,
                                      validation=val_set.crystals if val_set else None,
                                      validation_properties=val_set.properties if val_set else None,
                                      resume=resume, on_epoch=on_epoch)
        except CrystaloopError as exc:
            raise fail(str(exc)) from None
    last = metrics["history"][-1] if metrics["history"] else {}
    console.print(f"trained {metrics['epochs']} epochs; last: {last}")
    console.print(f"checkpoint: [bold]{out}[/]")
