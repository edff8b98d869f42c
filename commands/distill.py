"""``crystaloop generator distill``: consistency distillation of a trained generator."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from crystaloop.commands.common import console, exit_on_error, progress_bar, read_yaml_mapping

__all__ = ["distill"]


def distill(
    teacher: Annotated[str, typer.Option("--teacher", help="Teacher checkpoint file or shipped name (perov_5, carbon_24).")],
    out: Annotated[Path, typer.Option("--out", help="Distilled checkpoint to write; an interrupted run resumes from it.")],
    epochs: Annotated[Optional[int], typer.Option("--epochs", min=1, help="Passes over the teacher's training data.")] = None,  # noqa: UP045
    config: Annotated[Optional[Path], typer.Option("--config", help="YAML with DistillConfig fields (grid_points, target_decay, …).")] = None,  # noqa: UP045
    data: Annotated[Optional[str], typer.Option("--data", help="Training data (default: the teacher's training set).")] = None,  # noqa: UP045
    validation: Annotated[Optional[str], typer.Option("--validation", help="Data for choosing the 2-step midpoint (default: the shipped val split).")] = None,  # noqa: UP045
    limit: Annotated[Optional[int], typer.Option("--limit", min=1, help="Use the first N training crystals (quick runs).")] = None,  # noqa: UP045
    device: Annotated[str, typer.Option("--device", help="cpu, cuda, cuda:1 …")] = "cpu",
    threads: Annotated[int, typer.Option("--threads", min=1, help="torch CPU threads.")] = 1,
    seed: Annotated[int, typer.Option("--seed")] = 0,
    resume: Annotated[bool, typer.Option("--resume/--no-resume", help="Continue from --out when it holds this run's state.")] = True,
) -> None:
    """Distil a generator into a consistency model for 1–2-step sampling (progress, checkpoints, resume)."""
    from crystaloop.data.datasets import SHIPPED_DATASETS, load_dataset
    from crystaloop.generator.consistency.training import DistillConfig, distill_model
    from crystaloop.generator.diffusion.checkpoint import file_hash, load_model
    from crystaloop.generator.shipped import resolve_generator_checkpoint

    fields = {**read_yaml_mapping(config, "distillation config"), "device": device, "threads": threads, "seed": seed}
    if epochs is not None:
        fields["epochs"] = epochs
    with exit_on_error(invalid="bad distillation config: "):
        settings = DistillConfig.model_validate(fields)
        teacher_path = resolve_generator_checkpoint(teacher)
        model, _ = load_model(teacher_path, device="cpu")
        spec = data or model.config.dataset
        name = spec.split("/")[0]
        if validation is None and name in SHIPPED_DATASETS:
            validation = f"{name}/val"
        train_set = load_dataset(spec, max_rows=limit)
        val_set = load_dataset(validation) if validation else None
    with progress_bar() as bar:
        task = bar.add_task("epochs", total=settings.epochs)

        def on_epoch(epoch: int, losses: dict[str, float]) -> None:
            parts = " ".join(f"{k} {v:.4f}" for k, v in losses.items() if k != "epoch")
            bar.update(task, completed=epoch, description=f"epoch {epoch} {parts}")

        with exit_on_error():
            metrics = distill_model(model, train_set.crystals, train_set.properties, out, settings, teacher_hash=file_hash(teacher_path),
                                    validation=val_set.crystals if val_set else None, resume=resume, on_epoch=on_epoch)
    last = metrics["history"][-1] if metrics["history"] else {}
    console.print(f"distilled {metrics['epochs']} epochs; last: {last}")
    if "midpoint_search" in metrics:
        console.print(f"2-step midpoint search (CSP match rate on {validation}): {metrics['midpoint_search']}")
    console.print(f"checkpoint: [bold]{out}[/]")
