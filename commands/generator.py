"""``crystaloop generator train|eval|list`` and ``crystaloop generate``."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated, Optional

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
    parse_chemical_system,
    parse_composition,
    progress_bar,
    read_yaml_mapping,
)
from crystaloop.commands.distill import distill
from crystaloop.commands.files import write_candidates
from crystaloop.commands.generator_eval import evaluate

__all__ = ["generator_app"]

generator_app = typer.Typer(help="Train, evaluate, distil and list crystal diffusion generators.", no_args_is_help=True)
generator_app.command("distill")(distill)
generator_app.command("eval")(evaluate)
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
    embeddings: Annotated[Optional[Path], typer.Option("--embeddings", help=".npy (n × d) conditioning vectors, one row per training structure (network.embedding_dim defaults to d); see `crystaloop multimodal embed-training`.")] = None,  # noqa: UP045
    init: Annotated[Optional[str], typer.Option("--init", help="Warm-start a fresh run from this generator (shipped name or checkpoint): same sizes, its normalisation, starts at its outputs.")] = None,  # noqa: UP045
    properties: Annotated[Optional[str], typer.Option("--properties", help="Conditioning properties, comma-separated, or 'none' (default: the preset's).")] = None,  # noqa: UP045
) -> None:
    """Train a crystal diffusion model with EMA, clipping, periodic checkpoints and resume."""
    from crystaloop.data.datasets import SHIPPED_DATASETS, load_dataset
    from crystaloop.generator.diffusion.training import train_generator
    from crystaloop.generator.presets import build_config
    from crystaloop.generator.shipped import resolve_generator_checkpoint

    spec = _dataset_spec(dataset, "train")
    overrides = read_yaml_mapping(config, "generator config")
    train_overrides = {**overrides.get("train", {}), "device": device, "threads": threads, "seed": seed}
    if epochs is not None:
        train_overrides["epochs"] = epochs
    overrides["train"] = train_overrides
    if properties is not None:
        names = [] if properties.strip().lower() == "none" else [p.strip() for p in properties.split(",") if p.strip()]
        overrides["network"] = {**overrides.get("network", {}), "properties": names}
    if validation is None and dataset in SHIPPED_DATASETS:
        validation = f"{dataset}/val"
    with exit_on_error(invalid="bad generator config: "):
        vectors = _read_embeddings(embeddings) if embeddings is not None else None
        if vectors is not None and "embedding_dim" not in overrides.get("network", {}):
            overrides["network"] = {**overrides.get("network", {}), "embedding_dim": int(vectors.shape[1])}
        settings = build_config(spec, overrides)
        teacher = resolve_generator_checkpoint(init) if init is not None else None
        train_set = load_dataset(spec)
        val_set = load_dataset(validation) if validation else None
    with progress_bar() as bar:
        task = bar.add_task("epochs", total=settings.train.epochs)

        def on_epoch(epoch: int, losses: dict[str, float]) -> None:
            parts = " ".join(f"{k} {v:.3f}" for k, v in losses.items() if k != "epoch")
            bar.update(task, completed=epoch, description=f"epoch {epoch} {parts}")

        with exit_on_error():
            metrics = train_generator(settings, train_set.crystals, train_set.properties, out,
                                      validation=val_set.crystals if val_set else None,
                                      validation_properties=val_set.properties if val_set else None,
                                      embeddings=vectors, init_from=teacher, resume=resume, on_epoch=on_epoch)
    last = metrics["history"][-1] if metrics["history"] else {}
    console.print(f"trained {metrics['epochs']} epochs; last: {last}")
    console.print(f"checkpoint: [bold]{out}[/]")


def _read_embeddings(path: Path):  # noqa: ANN202 - numpy array
    """A 2-D float .npy of conditioning vectors (one row per training structure)."""
    import numpy as np

    from crystaloop.data.errors import CrystaloopError

    try:
        vectors = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise CrystaloopError(f"--embeddings {path}: not a readable .npy array ({exc})") from None
    if vectors.ndim != 2 or not np.issubdtype(vectors.dtype, np.floating):
        raise CrystaloopError(f"--embeddings {path}: expected a 2-D float array (structures × width), got shape "
                              f"{vectors.shape} of {vectors.dtype}")
    return vectors


def _load_generator(checkpoint: str, steps: int | None, method: str | None):  # noqa: ANN202 - DiffusionGenerator
    """Load a teacher or distilled checkpoint with its own default sampler, then apply the
    user's --steps/--method (a distilled model defaults to 2 consistency steps, a teacher to
    1000 predictor-corrector steps)."""
    from crystaloop.generator.config import SamplerConfig
    from crystaloop.generator.diffusion.generator import DiffusionGenerator
    from crystaloop.generator.shipped import resolve_generator_checkpoint

    generator = DiffusionGenerator.from_checkpoint(resolve_generator_checkpoint(checkpoint))
    given = {k: v for k, v in {"steps": steps, "method": method}.items() if v is not None}
    if not given:
        return generator
    sampler = SamplerConfig.model_validate({**generator.sampler.model_dump(), **given})
    return DiffusionGenerator(generator.model, sampler, checkpoint_hash=generator.checkpoint_hash)


_LIST_COLUMNS = (
    Column("name", "name"),
    Column("file", "file", lambda path: Path(path).name if path else "missing", priority=2),
    Column("species", "species", justify="right"),
    Column("conditions", "conditions", lambda props: ", ".join(props) or "-"),
    Column("epochs", "epochs", justify="right"),
    Column("reproduce", "reproduce", priority=1),
)


@generator_app.command("list")
def list_generators(fmt: FormatOption = OutputFormat.TABLE) -> None:
    """Shipped generator checkpoints: vocabulary, conditioning, training epochs."""
    import torch

    from crystaloop.generator.shipped import _ROOT, SHIPPED_GENERATORS

    rows = []
    with Output(fmt) as out:
        for name, command in SHIPPED_GENERATORS.items():
            path = _ROOT / f"{name}.pt"
            if not path.exists():
                rows.append({"name": name, "file": None, "species": None, "conditions": [], "epochs": None, "reproduce": command})
                continue
            payload = torch.load(path, map_location="cpu", weights_only=True)  # teacher or distilled format
            epochs = payload["metrics"].get("epochs")
            rows.append({
                "name": name, "file": str(path), "species": len(payload["normalisation"]["species"]),
                "conditions": list(payload["config"]["network"]["properties"]), "epochs": epochs,
                "reproduce": command.format(epochs="?" if epochs is None else epochs),
            })  # fmt: skip
        out.table("generators", _LIST_COLUMNS, rows, title="shipped generators")


def _parse_targets(targets: list[str]) -> dict[str, float]:
    parsed = {}
    for item in targets:
        name, sep, value = item.partition("=")
        try:
            parsed[name.strip()] = float(value)
        except ValueError:
            raise fail(f"--target {item!r} must look like name=value, e.g. dir_gap=2.0") from None
        if not sep or not name.strip():
            raise fail(f"--target {item!r} must look like name=value, e.g. dir_gap=2.0")
    return parsed


_CONSISTENCY_STEPS = (1, 2, 4)


def _default_model(composition: dict[str, int] | None, system: tuple[str, ...] | None, *, embedding: bool = False,
                   steps: int | None = None, method: str | None = None) -> str:
    """The shipped generator for a request: the distilled few-step ``<dataset>_consistency`` model
    unless the user asks for a teacher sampler (``--method pc|ddim`` or ``--steps`` beyond 1, 2, 4)
    or for conditioning only the multimodal teacher reads (``<dataset>_multimodal``: a pure-carbon
    request gets ``carbon_24_multimodal``, any other ``perov_5_multimodal``)."""
    from crystaloop.generator.shipped import _ROOT, SHIPPED_GENERATORS

    elements = set(composition or {}) | set(system or ())
    teacher = "carbon_24" if elements == {"C"} else "perov_5"
    if embedding:  # the shipped generators that read the multimodal latent
        return f"{teacher}_multimodal"
    distilled = f"{teacher}_consistency"
    wants_teacher = method not in (None, "consistency") or (steps is not None and steps not in _CONSISTENCY_STEPS)
    if not wants_teacher and distilled in SHIPPED_GENERATORS and (_ROOT / f"{distilled}.pt").exists():
        return distilled
    return teacher


def _auto_kind(composition: str | None, chemsys: str | None, *, conditioned: bool, targets: bool, guidance: float,
               num_atoms: int | None, model: str | None, steps: int | None, method: str | None,
               store_library: list[str] | None) -> str:
    """``--generator auto``: the template generator for a plain structure-prediction (``--composition``)
    or de novo (``--chemsys``) request, since on the held-out splits it has two to three times the
    strict fit of the free-coordinate model at k=1 (``benchmarks/RESULTS.md``, bench_template);
    the diffusion model for what only it reads (a pattern or text latent, property targets,
    guidance, a fixed number of sites, a model or sampler asked for) and for unconditional
    sampling. The choice is printed with how to take the other one."""
    reasons = [flag for flag, given in (("--xrd/--text", conditioned), ("--target", targets), ("--guidance", guidance != 1.0),
                                        ("--num-atoms", num_atoms is not None), ("--model", model is not None),
                                        ("--steps", steps is not None), ("--method", method is not None)) if given]
    if (composition or chemsys) and not reasons:
        console.print("generator: template (space group + Wyckoff templates; --generator diffusion for the free-coordinate model)")
        return "template"
    if store_library:
        raise fail("--library feeds --generator substitution or template; with --generator auto this request "
                   f"uses the diffusion model ({', '.join(reasons) or 'no --composition or --chemsys'}); name the generator")
    return "diffusion"


def _embedding_width(model: str) -> int:
    """``network.embedding_dim`` of a teacher or distilled checkpoint, read without building the model."""
    import torch

    from crystaloop.data.errors import CrystaloopError
    from crystaloop.generator.shipped import resolve_generator_checkpoint

    path = resolve_generator_checkpoint(model)
    try:
        return int(torch.load(path, map_location="cpu", weights_only=True)["config"]["network"]["embedding_dim"])
    except Exception as exc:  # torch raises several types for corrupt files; a foreign dict lacks the keys
        raise CrystaloopError(f"{path} is not a readable generator checkpoint: {exc}") from None


def _resolve_query(model: str, xrd: Path | None, text: str | None, wavelength: float | None, fusion: Path | None,
                   route: str, prior: Path | None, prior_guidance: float):  # noqa: ANN202 - loop.query.QueryRoute
    """The --xrd or --text query on its route, after checking that ``model`` reads a latent that wide."""
    from crystaloop.data.errors import CrystaloopError
    from crystaloop.loop.query import resolve_query

    width = _embedding_width(model)
    if width == 0:
        raise CrystaloopError(f"model {model!r} takes no embedding, so it cannot be conditioned on --xrd/--text; use "
                              "--model perov_5_multimodal (the default for them) or a checkpoint trained with --embeddings")
    query = resolve_query(text=text, xrd=xrd, wavelength=wavelength, route=route, fusion=fusion, prior=prior,
                          prior_guidance=prior_guidance, width=width)
    if route == "prior":
        console.print(f"route: prior (one structure latent drawn from the latent prior per sample, given the {query.modality} latent)")
    return query


def generate(
    out: Annotated[Path, typer.Option("--out", help="Output file: .cif, .xyz/.extxyz or .json.")],
    n: Annotated[int, typer.Option("-n", "--num", min=1, help="Structures to generate.")] = 8,
    composition: Annotated[Optional[str], typer.Option("--composition", help="Structure prediction for this formula (cell contents), e.g. SrTiO3.")] = None,  # noqa: UP045
    chemsys: Annotated[Optional[str], typer.Option("--chemsys", help="De novo within these elements, e.g. Ba-Ti-O.")] = None,  # noqa: UP045
    target: Annotated[Optional[list[str]], typer.Option("--target", help="Property target name=value (repeatable), e.g. dir_gap=2.0.")] = None,  # noqa: UP045
    guidance: Annotated[float, typer.Option("--guidance", min=0.0, help="Classifier-free guidance scale (1 = plain conditional).")] = 1.0,
    num_atoms: Annotated[Optional[int], typer.Option("--num-atoms", min=1, help="Sites per cell for de novo (default: drawn from the training data).")] = None,  # noqa: UP045
    model: Annotated[Optional[str], typer.Option("--model", help="Checkpoint file or shipped name (default: the distilled perov_5_consistency, carbon_24_consistency for pure carbon; their teachers perov_5 / carbon_24 when --method pc|ddim or --steps other than 1, 2, 4 is given).")] = None,  # noqa: UP045
    steps: Annotated[Optional[int], typer.Option("--steps", min=1, help="Reverse steps (default: 2 for a distilled model, 1000 for a teacher).")] = None,  # noqa: UP045
    method: Annotated[Optional[str], typer.Option("--method", help="pc, ddim, or consistency (distilled checkpoints).")] = None,  # noqa: UP045
    seed: Annotated[int, typer.Option("--seed")] = 0,
    store: Annotated[Optional[str], typer.Option("--store", help="Also add the candidates to this store URL (plausible ones only).")] = None,  # noqa: UP045
    keep_invalid: Annotated[bool, typer.Option("--keep-invalid", help="Write implausible samples too (status rejected, the reason in the file); they are never stored.")] = False,
    xrd: Annotated[Optional[Path], typer.Option("--xrd", help="Condition on a measured powder pattern: two-column .xy/.csv, 2θ (degrees) and intensity.")] = None,  # noqa: UP045
    text: Annotated[Optional[str], typer.Option("--text", help="Condition on a description in words; elements, formulas, oxidation states, crystal systems and space groups it names are enforced (see --no-prompt-constraints).")] = None,  # noqa: UP045
    prompt_constraints: Annotated[bool, typer.Option("--prompt-constraints/--no-prompt-constraints", help="Keep only samples that satisfy what --text names explicitly (drawing more when needed).")] = True,
    wavelength: Annotated[Optional[float], typer.Option("--wavelength", help="Radiation of --xrd in Å (default Cu Kα).")] = None,  # noqa: UP045
    fusion: Annotated[Optional[Path], typer.Option("--fusion", help="Multimodal fusion checkpoint embedding --xrd/--text (default: the shipped one).")] = None,  # noqa: UP045
    route: Annotated[Optional[str], typer.Option("--route", help="--xrd/--text: direct (the query's latent conditions every sample; default) or prior (the latent prior draws one structure latent per sample from the query's latent).")] = None,  # noqa: UP045
    prior: Annotated[Optional[Path], typer.Option("--prior", help="Latent prior checkpoint for --route prior (default: the shipped multimodal/shipped/prior.pt).")] = None,  # noqa: UP045
    prior_guidance: Annotated[float, typer.Option("--prior-guidance", min=0.0, help="--route prior: classifier-free guidance of the prior (1 = plain conditional).")] = 1.0,
    kind: Annotated[str, typer.Option("--generator", help="auto (default: template for a plain --composition or --chemsys request, diffusion for everything else), template (space group + Wyckoff templates learned from --library; structure prediction and de novo), diffusion (the free-coordinate trained model), substitution (ion exchange into --library and the prototypes) or random_search (random symmetric crystals).")] = "auto",
    library: Annotated[Optional[list[str]], typer.Option("--library", help="substitution: dataset spec or store:<URL> to substitute into (repeatable; default: the prototypes alone); template: the one dataset its prior learns from (default perov_5/train, carbon_24/train for carbon).")] = None,  # noqa: UP045
    exclude: Annotated[Optional[str], typer.Option("--exclude", help="substitution, random_search: elements never used, e.g. Pb-Cd.")] = None,  # noqa: UP045
    max_atoms: Annotated[Optional[int], typer.Option("--max-atoms", min=1, help="substitution, random_search: most sites per cell.")] = None,  # noqa: UP045
    plot: Annotated[Optional[Path], typer.Option("--plot", help="Folder for a picture of each written structure's unit cell (PNG, one per structure).")] = None,  # noqa: UP045
) -> None:
    """Generate crystals: structure prediction (--composition) or de novo (--chemsys), optionally guided or
    conditioned on a measured pattern (--xrd) or a description (--text); --generator substitution|random_search
    needs no trained model."""
    from crystaloop.data.records import Condition

    if out.suffix.lower() not in (".cif", ".xyz", ".extxyz", ".json"):
        raise fail(f"--out {out}: unknown extension {out.suffix!r}; allowed: .cif, .xyz, .extxyz, .json")
    if xrd is not None and text is not None:
        raise fail("give at most one of --xrd and --text (each is embedded into the same latent)")
    if wavelength is not None and xrd is None:
        raise fail("--wavelength describes the radiation of an --xrd pattern; give --xrd too")
    if route is not None and route not in ("prior", "direct"):
        raise fail(f"--route {route!r} is not known; allowed: prior, direct")
    if (route is not None or prior is not None) and xrd is None and text is None:
        raise fail("--route and --prior choose how an --xrd or --text query conditions generation; give one of them")
    if prior is not None and route != "prior":
        raise fail("--prior is the latent prior of --route prior; add --route prior")
    if kind == "auto":
        kind = _auto_kind(composition, chemsys, conditioned=xrd is not None or text is not None, targets=bool(target),
                          guidance=guidance, num_atoms=num_atoms, model=model, steps=steps, method=method, store_library=library)
    if route == "prior" and kind != "diffusion":
        raise fail(f"--route prior decodes the prior's latents with a latent-reading diffusion model; --generator is {kind!r}")
    with exit_on_error(invalid=""):
        comp = parse_composition(composition) if composition is not None else None
        system = parse_chemical_system(chemsys, option="--chemsys") if chemsys is not None else None
        constraints = _read_prompt(text, comp, system) if text is not None and prompt_constraints else None
        if constraints is not None and constraints.formula is not None and comp is None and system is None:
            comp = dict(constraints.formula)  # a formula the prompt names is the structure-prediction target
            console.print(f"structure prediction for the prompt's formula {constraints.formula_text} (give --composition or --chemsys to choose otherwise)")
        conditioned = xrd is not None or text is not None
        name = model or _default_model(comp, system, embedding=conditioned, steps=steps, method=method)
        query = _resolve_query(name, xrd, text, wavelength, fusion, route or "direct", prior, prior_guidance) if conditioned else None
        embedding = tuple(float(v) for v in query.latent) if query is not None else None
        condition = Condition(composition=comp, chemical_system=system, properties=_parse_targets(target or []),
                              guidance_scale=guidance, num_atoms=num_atoms, embedding=embedding)
        if kind == "diffusion":
            generator = _load_generator(name, steps, method)
            if query is not None:
                from crystaloop.loop.query import QueryGenerator

                generator = QueryGenerator(generator, query)  # the route's latents; constraints are enforced below

            def draw(count: int, draw_seed: int) -> list:
                batches = -(-count // generator.sampler.batch_size)
                with progress_bar(remaining=False) as bar:
                    task = bar.add_task(f"sampling {count} ({Path(name).stem}, {generator.sampler.steps} {generator.sampler.method} steps)",
                                        total=batches * generator.sampler.steps)
                    done = [0]

                    def on_step(step: int, total: int) -> None:  # once per sampler step of each batch
                        done[0] += 1
                        bar.update(task, completed=done[0], total=max(batches * total, done[0]))

                    drawn = generator.sample(count, condition, seed=draw_seed, on_step=on_step)
                    bar.update(task, completed=done[0], total=done[0])
                return drawn
        else:
            from crystaloop.commands.untrained import untrained_generator

            training = "carbon_24/train" if set(comp or system or ()) == {"C"} else "perov_5/train"
            generator = untrained_generator(kind, library=library, exclude=exclude, max_atoms=max_atoms, default_training=training)

            def draw(count: int, draw_seed: int) -> list:
                return generator.sample(count, condition, seed=draw_seed)
        candidates = draw(n, seed) if constraints is None else _sample_satisfying(draw, n, constraints, seed)
    plausible, implausible = screen_generated(candidates)
    _report_screen(len(candidates), implausible, keep_invalid)
    written = plausible + implausible if keep_invalid else plausible
    if not written:
        raise fail(f"none of the {len(candidates)} samples is plausible; nothing written to {out} "
                   "(--keep-invalid writes them anyway)")
    write_candidates(out, written)
    formulas = ", ".join(sorted({c.crystal.reduced_formula for c in written}))
    console.print(f"wrote {len(written)} structures ({formulas}) to [bold]{out}[/]"
                  + (f"; {generator.last_dropped} collapsed samples dropped" if generator.last_dropped else ""))
    if plot is not None:
        with exit_on_error():
            pictures = write_pictures(plot, written)
        console.print(f"pictures: {len(pictures)} unit cells in [bold]{plot}[/]")
    if store and plausible:
        from crystaloop.data.store import CandidateStore

        with CandidateStore(store) as candidate_store:
            report = candidate_store.add_many(plausible)
        skipped = f"; {len(implausible)} implausible not stored" if implausible else ""
        console.print(f"store: added {report.added}, already stored {report.existing}{skipped}")


def write_pictures(folder: Path, candidates: list) -> list[Path]:
    """One unit-cell PNG per candidate in ``folder``, ``<index>-<formula>.png`` in file order
    (see data.pictures), captioned with the candidate's id and, when rejected, that it is."""
    from crystaloop.data.errors import CrystaloopError
    from crystaloop.data.pictures import write_structure_png

    paths = []
    for index, candidate in enumerate(candidates):
        path = folder / f"{index:03d}-{candidate.crystal.reduced_formula}.png"
        caption = f"structure {index} · id {candidate.id[:12]}" + (" · implausible (kept)" if candidate.status.value == "rejected" else "")
        try:
            write_structure_png(candidate.crystal, path, caption=caption)
        except OSError as exc:
            raise CrystaloopError(f"--plot {folder}: cannot write {path.name}: {exc}") from None
        paths.append(path)
    return paths


def _read_prompt(text: str, composition: dict[str, int] | None, system: tuple[str, ...] | None):  # noqa: ANN202
    """The prompt's explicit constraints (shown to the user), or ``None`` when it names none."""
    from crystaloop.multimodal.prompt import parse_prompt

    constraints = parse_prompt(text)
    constraints.check_system(system, composition)
    console.print(f"prompt read as: {constraints.describe()}" + ("" if constraints.empty else " (enforced; --no-prompt-constraints turns this off)"))
    return None if constraints.empty else constraints


def _sample_satisfying(draw, n: int, constraints, seed: int) -> list:  # noqa: ANN001
    """``n`` samples that satisfy ``constraints`` (more drawn while too few do); fails when none does."""
    from crystaloop.multimodal.prompt import sample_satisfying

    kept, reasons = sample_satisfying(draw, n, constraints, seed=seed)
    symmetrised = reasons.pop("symmetrised", 0)
    if symmetrised:
        console.print(f"prompt constraints: {symmetrised} samples symmetrised onto the asked symmetry (spglib, ≤ 0.35 Å)")
    rejected = sum(reasons.values())
    common = ", ".join(f"{reason} ({count})" for reason, count in reasons.most_common(3))
    if not kept:
        raise fail(f"no sample satisfied the prompt's constraints ({constraints.describe()}); most common misses: {common}. "
                   "Change the prompt or the elements asked for, or pass --no-prompt-constraints")
    if reasons:
        console.print(f"prompt constraints: dropped samples for {common}" + (f"; only {len(kept)} of {n} satisfied them" if len(kept) < n else ""))
    logger.info("prompt constraints kept %d of %d wanted; %d violations among rejected samples", len(kept), n, rejected)
    return kept


def screen_generated(candidates: list) -> tuple[list, list]:
    """(plausible, implausible) by the campaign's validity guard with its default settings
    (:func:`~crystaloop.data.crystal.check_plausible`, density window, SMACT charge balance);
    each candidate carries the guard's verdict, implausible ones with status ``rejected``."""
    import dataclasses

    from crystaloop.data.records import CandidateStatus
    from crystaloop.loop.guards.base import GuardContext
    from crystaloop.loop.guards.validity import ValidityGuard

    guard, context = ValidityGuard(), GuardContext()
    plausible, implausible = [], []
    for candidate in candidates:
        verdict = guard.check(candidate, context)
        if verdict.ok:
            plausible.append(dataclasses.replace(candidate, verdicts=(*candidate.verdicts, verdict)))
        else:
            implausible.append(dataclasses.replace(candidate, verdicts=(*candidate.verdicts, verdict), status=CandidateStatus.REJECTED))
    return plausible, implausible


def _report_screen(total: int, implausible: list, keep_invalid: bool) -> None:
    """One line for the screen, then each implausible sample's formula and reason (the first ten)."""
    if not implausible:
        console.print(f"validity: all {total} samples plausible (distances, volume, density, SMACT charge balance)")
        return
    action = "kept with status rejected (--keep-invalid)" if keep_invalid else "dropped"
    err_console.print(f"[yellow]validity:[/] {len(implausible)} of {total} samples implausible, {action}:", highlight=False)
    for candidate in implausible[:10]:
        err_console.print(f"  {candidate.crystal.reduced_formula}: {candidate.verdicts[-1].reason}", highlight=False)
    if len(implausible) > 10:
        err_console.print(f"  ... and {len(implausible) - 10} more", highlight=False)
