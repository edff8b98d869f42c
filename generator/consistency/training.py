"""Consistency distillation of a trained crystal diffusion model (Song et al. 2023, Algorithm 2).

Per training example (one crystal of the teacher's training set):

1. pick a grid index n uniformly from the discretisation grid ``0 = t_0 < t_1 < … < t_N = T``
   (N = ``grid_points`` teacher steps apart, evenly spaced: each teacher step is one DDIM
   stride of T/N, the stride whose quality the teacher's own DDIM sampler shows);
2. noise the clean crystal to ``t_{n+1}`` with the teacher's forward processes (species masked
   only for the de novo share ``csp_fraction`` of examples, conditions dropped with the teacher's
   ``condition_dropout``, exactly as the teacher was trained);
3. take one teacher step to ``t_n`` (:func:`~crystaloop.generator.consistency.model.teacher_step`);
4. loss = distance between the student's clean estimate at ``t_{n+1}`` and the target
   network's at ``t_n``: mean squared lattice difference over the six entries of S, mean squared
   *wrapped* coordinate difference (:func:`~crystaloop.generator.consistency.model.torus_difference`)
   and KL(target ‖ student) of the species distribution on the sites masked at ``t_{n+1}``. For
   a site the teacher step revealed, the target is the teacher's distribution rather than the
   drawn token (its expectation: same expected gradient, lower variance, KL minimum 0).

The target network is an EMA of the student with decay μ = ``target_decay`` (Song et al. 2023
use μ = 0.95 for distillation); a second EMA (``ema_decay``) gives the sampling weights. The
fixed grid, the EMA target and the teacher initialisation keep training stable (no curriculum
over N; the continuous-time alternative is discussed in :mod:`~crystaloop.generator.consistency.model`).
At the end the 2-step sampler's intermediate step is chosen by CSP match rate on validation
data (:func:`choose_midpoint`) and stored in the checkpoint.
"""

from __future__ import annotations

import copy
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field

from crystaloop.data.crystal import Crystal
from crystaloop.data.errors import CrystaloopError
from crystaloop.data.seeding import restores_torch_rng, restores_torch_threads
from crystaloop.generator.config import SamplerConfig
from crystaloop.generator.consistency.checkpoint import (
    consistency_from_payload,
    load_consistency_checkpoint,
    save_consistency,
)
from crystaloop.generator.consistency.model import (
    ConsistencyModel,
    LatticeOutput,
    clean_estimate,
    teacher_step,
    torus_difference,
)
from crystaloop.generator.consistency.sampling import consistency_sample_batch
from crystaloop.generator.diffusion.denoiser import NoisyBatch
from crystaloop.generator.diffusion.model import CrystalDiffusion, symmetric_noise
from crystaloop.generator.diffusion.sampling import SampleRequest
from crystaloop.generator.diffusion.training import (  # shared private helpers
    EncodedData,
    _property_matrix,
    _to,
    data_hash,
)

__all__ = ["DistillConfig", "distill_grid", "consistency_loss", "evaluation_loss", "distill_model", "choose_midpoint"]

logger = logging.getLogger(__name__)

# fields that may change between a run and its resumption
_RESUMABLE_CHANGES = ("epochs", "checkpoint_every", "threads", "device", "validation_limit", "midpoint_candidates")


class DistillConfig(BaseModel):
    """Consistency distillation settings (stored in the distilled checkpoint).

    Attributes:
        grid_points: N, intervals of the discretisation grid over the teacher's T steps (≤ T).
        lattice_output: how the student's lattice head is read (``epsilon``: starts as the
            teacher's denoiser; ``velocity``: TrigFlow); see :mod:`~crystaloop.generator.consistency.model`.
        lattice_cap: δ, the cap of 1/cos τ of the ``epsilon`` reading (error amplification ≤ 1/δ).
        epochs, batch_size, learning_rate, grad_clip: optimisation (Adam, constant rate).
        target_decay: μ, EMA decay of the target network.
        ema_decay: EMA decay of the sampling weights.
        lattice_weight, coord_weight, species_weight: weights of the three distances.
        checkpoint_every: epochs between resumable checkpoints.
        midpoint_candidates: intermediate steps tried for 2-step sampling, as fractions of T.
        validation_limit: validation crystals used to choose the midpoint (CSP match rate).
        seed, device, threads: reproducibility and hardware.
    """

    model_config = ConfigDict(extra="forbid")

    grid_points: int = Field(50, gt=1)
    lattice_output: LatticeOutput = "epsilon"
    lattice_cap: float = Field(0.25, gt=0.0, le=1.0)
    epochs: int = Field(100, gt=0)
    batch_size: int = Field(128, gt=0)
    learning_rate: float = Field(2e-4, gt=0)
    grad_clip: float = Field(1.0, gt=0)
    target_decay: float = Field(0.95, ge=0.0, lt=1.0)
    ema_decay: float = Field(0.999, ge=0.0, lt=1.0)
    lattice_weight: float = Field(1.0, ge=0)
    coord_weight: float = Field(1.0, ge=0)
    species_weight: float = Field(0.1, ge=0)
    checkpoint_every: int = Field(5, gt=0)
    midpoint_candidates: list[float] = Field(default_factory=lambda: [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9])
    validation_limit: int = Field(200, gt=0)
    seed: int = 0
    device: str = "cpu"
    threads: int = Field(1, gt=0)

    def identity(self) -> dict[str, Any]:
        """The fields a resumed run must share with the run it continues."""
        return {k: v for k, v in self.model_dump(mode="json").items() if k not in _RESUMABLE_CHANGES}


def distill_grid(timesteps: int, grid_points: int) -> torch.Tensor:
    """Ascending teacher steps ``0 = t_0 < … < t_N = T`` (N = grid_points), as a long tensor."""
    if grid_points > timesteps:
        raise CrystaloopError(f"grid_points={grid_points} exceeds the teacher's {timesteps} steps; allowed: 2..{timesteps}")
    return torch.as_tensor(np.round(np.linspace(0, timesteps, grid_points + 1)).astype(np.int64))


def _noised(teacher: CrystalDiffusion, clean: NoisyBatch, t: torch.Tensor, generator: torch.Generator) -> NoisyBatch:
    """The teacher's forward processes at steps t (B,): lattice, wrapped coordinates, masks, dropout."""
    device, dtype = clean.lattice.device, clean.lattice.dtype
    schedule, diffusion = teacher.schedule, teacher.config.diffusion
    b = len(clean.num_atoms)
    t_site = t[clean.batch]
    alpha_bar = schedule.alpha_bar[t].to(dtype).view(-1, 1, 1)
    lattice = alpha_bar.sqrt() * clean.lattice + (1 - alpha_bar).sqrt() * symmetric_noise(b, generator).to(device=device, dtype=dtype)
    sigma = schedule.sigma[t_site].to(dtype).unsqueeze(-1)
    frac = torch.remainder(clean.frac + sigma * torch.randn(clean.frac.shape, generator=generator).to(device=device, dtype=dtype), 1.0)
    denovo = (torch.rand(b, generator=generator) >= diffusion.csp_fraction).to(device)
    masked = (torch.rand(len(clean.tokens), generator=generator).to(device) < schedule.mask_rate[t_site]) & denovo[clean.batch]
    tokens = torch.where(masked, torch.full_like(clean.tokens, teacher.mask_token), clean.tokens)
    keep = (torch.rand(b, generator=generator) >= diffusion.condition_dropout).to(device)
    return clean.replace(lattice=lattice, frac=frac, tokens=tokens, t=t,
                         property_present=clean.property_present & keep.unsqueeze(-1),
                         embedding_present=clean.embedding_present & keep)


def consistency_loss(student: ConsistencyModel, target: ConsistencyModel, teacher: CrystalDiffusion, clean: NoisyBatch,
                     config: DistillConfig, generator: torch.Generator) -> dict[str, torch.Tensor]:
    """Consistency-distillation loss of a clean batch; ``loss`` (weighted) and its parts (scalars).

    Parts: ``lattice`` mean squared difference of S (dimensionless), ``coords`` mean squared
    wrapped difference (torus units²), ``species`` mean KL (nats) over sites masked at t_{n+1}.
    """
    device = clean.lattice.device
    grid = distill_grid(teacher.schedule.timesteps, config.grid_points).to(device)
    index = torch.randint(0, len(grid) - 1, (len(clean.num_atoms),), generator=generator).to(device)
    noisy = _noised(teacher, clean, grid[index + 1], generator)
    with torch.no_grad():
        taught = teacher.denoiser(noisy)
        earlier = teacher_step(teacher, taught, noisy, grid[index], generator)
        goal = clean_estimate(target, earlier)
        # a site the step revealed: its expected one-hot is the teacher's distribution (same
        # expected gradient as the drawn token, less variance, and a KL whose minimum is 0)
        revealed = (noisy.tokens == teacher.mask_token) & (earlier.tokens != teacher.mask_token)
        goal.species_probs = torch.where(revealed.unsqueeze(-1), torch.softmax(taught.species_logits, -1), goal.species_probs)
    estimate = clean_estimate(student, noisy)
    upper = torch.triu_indices(3, 3, device=device)
    lattice = ((estimate.lattice - goal.lattice)[:, upper[0], upper[1]] ** 2).mean()
    coords = (torus_difference(estimate.frac, goal.frac) ** 2).mean()
    masked = noisy.tokens == student.mask_token
    if masked.any():
        log_student = torch.log_softmax(estimate.species_logits[masked], -1)
        p = goal.species_probs[masked]
        species = (torch.special.xlogy(p, p) - p * log_student).sum(-1).mean()
    else:
        species = torch.zeros((), device=device, dtype=lattice.dtype)
    total = config.lattice_weight * lattice + config.coord_weight * coords + config.species_weight * species
    return {"loss": total, "lattice": lattice.detach(), "coords": coords.detach(), "species": species.detach()}


@torch.no_grad()
def evaluation_loss(student: ConsistencyModel, teacher: CrystalDiffusion, clean: NoisyBatch, config: DistillConfig, seed: int) -> float:
    """Self-consistency of ``student`` along teacher steps (target = the student itself), fixed noise.

    Comparable across training: the same ``seed`` draws the same grid points, noise and reveals.
    """
    return float(consistency_loss(student, student, teacher, clean, config, torch.Generator().manual_seed(seed))["loss"])


@restores_torch_rng
@restores_torch_threads
def distill_model(
    teacher: CrystalDiffusion,
    crystals: Sequence[Crystal],
    properties: Mapping[str, np.ndarray],
    out: Path,
    config: DistillConfig,
    *,
    teacher_hash: str,
    validation: Sequence[Crystal] | None = None,
    resume: bool = True,
    on_epoch: Callable[[int, dict[str, float]], None] | None = None,
) -> dict[str, Any]:
    """Distil ``teacher`` into a consistency model written to ``out``; returns its metrics.

    Args:
        teacher: the trained diffusion model (its EMA weights).
        crystals, properties: the teacher's training data (name → (n,) values, NaN = unknown).
        out: checkpoint path, rewritten every ``checkpoint_every`` epochs (resumable).
        config: distillation settings.
        teacher_hash: sha256 prefix of the teacher file (recorded; resume requires the same).
        validation: crystals for choosing the 2-step midpoint (none: the default T/2 stays).
        resume: continue from ``out`` when it holds this run (same teacher, data and settings).
        on_epoch: callback(epoch, losses) after each epoch.
    """
    torch.set_num_threads(config.threads)
    device = torch.device(config.device)
    teacher = teacher.to(device).eval()
    for parameter in teacher.parameters():
        parameter.requires_grad_(False)
    hash_of_data = data_hash(crystals)
    student = ConsistencyModel.from_teacher(teacher, lattice_output=config.lattice_output, lattice_cap=config.lattice_cap)
    target = ConsistencyModel.from_teacher(teacher, lattice_output=config.lattice_output, lattice_cap=config.lattice_cap).eval()
    optimizer = torch.optim.Adam(student.denoiser.parameters(), lr=config.learning_rate)
    ema = copy.deepcopy(student.denoiser.state_dict())
    generator = torch.Generator().manual_seed(config.seed)
    start_epoch, history, out = 0, [], Path(out)
    if resume and out.is_file():
        payload = load_consistency_checkpoint(out)
        saved = payload.get("training")
        same = (payload["distill"] == config.identity() and payload["teacher_hash"] == teacher_hash
                and payload["data_hash"] == hash_of_data)
        if saved is not None and same:
            student = consistency_from_payload(payload, weights="raw").to(device)
            target.denoiser.load_state_dict(saved["target"])
            optimizer = torch.optim.Adam(student.denoiser.parameters(), lr=config.learning_rate)
            optimizer.load_state_dict(saved["optimizer"])
            ema = payload["weights"]
            start_epoch, history = int(saved["epoch"]), list(payload["metrics"].get("history", []))
            generator.set_state(saved["rng"])
            logger.info("resuming distillation %s at epoch %d", out, start_epoch)
        elif saved is not None:
            raise CrystaloopError(f"{out} holds a distillation of another teacher, dataset or settings; pass a new --out or --no-resume")
    ema = {k: v.to(device) for k, v in ema.items()}
    data = EncodedData(teacher, crystals, _property_matrix(teacher.config, properties, len(crystals)))
    probe = _to(data.batch(torch.arange(min(data.size, 256))), device)
    target_state = target.denoiser.state_dict()  # tensors share storage with the target's parameters
    started = time.perf_counter()

    def save(epoch: int, midpoint_search: list[dict[str, Any]] | None = None) -> None:
        metrics = {"history": history, "epochs": epoch, "train_seconds_this_run": time.perf_counter() - started,
                   "train_size": data.size}
        if midpoint_search is not None:
            metrics["midpoint_search"] = midpoint_search
        training = {"raw": {k: v.detach().cpu() for k, v in student.denoiser.state_dict().items()},
                    "target": {k: v.detach().cpu() for k, v in target.denoiser.state_dict().items()},
                    "optimizer": optimizer.state_dict(), "epoch": epoch, "rng": generator.get_state()}
        save_consistency(out, student, ema, distill=config.identity(), teacher_hash=teacher_hash, data_hash=hash_of_data,
                         metrics=metrics, training=training)

    for epoch in range(start_epoch, config.epochs):
        order = torch.randperm(data.size, generator=generator)
        sums: dict[str, float] = {}
        steps = 0
        for first in range(0, data.size, config.batch_size):
            losses = consistency_loss(student, target, teacher, _to(data.batch(order[first:first + config.batch_size]), device),
                                      config, generator)
            optimizer.zero_grad(set_to_none=True)
            losses["loss"].backward()
            torch.nn.utils.clip_grad_norm_(student.denoiser.parameters(), config.grad_clip)
            optimizer.step()
            with torch.no_grad():
                for name, value in student.denoiser.state_dict().items():
                    target_state[name].mul_(config.target_decay).add_(value, alpha=1 - config.target_decay)
                    ema[name].mul_(config.ema_decay).add_(value, alpha=1 - config.ema_decay)
            for name, value in losses.items():
                sums[name] = sums.get(name, 0.0) + float(value.detach())
            steps += 1
        epoch_losses = {name: value / steps for name, value in sums.items()}
        epoch_losses["epoch"] = epoch + 1
        if (epoch + 1) % config.checkpoint_every == 0 or epoch + 1 == config.epochs:
            epoch_losses["probe_loss"] = evaluation_loss(student, teacher, probe, config, config.seed + 1)
            history.append(epoch_losses)
            save(epoch + 1)
            logger.info("distillation epoch %d: %s (checkpoint %s)", epoch + 1, epoch_losses, out)
        if on_epoch is not None:
            on_epoch(epoch + 1, epoch_losses)
    if validation:
        sampler_model = ConsistencyModel.from_teacher(teacher, lattice_output=config.lattice_output, lattice_cap=config.lattice_cap)
        sampler_model.denoiser.load_state_dict(ema)
        candidates = sorted({max(1, min(teacher.schedule.timesteps - 1, round(f * teacher.schedule.timesteps)))
                             for f in config.midpoint_candidates})
        best, search = choose_midpoint(sampler_model.eval(), list(validation)[: config.validation_limit], candidates, seed=config.seed)
        student.midpoints = {2: [best]}
        save(max(start_epoch, config.epochs), search)
        logger.info("2-step midpoint: teacher step %d (%s)", best, search)
    return load_consistency_checkpoint(out)["metrics"]


def choose_midpoint(model: ConsistencyModel, references: Sequence[Crystal], candidates: Sequence[int], *, seed: int = 0,
                    batch_size: int = 512) -> tuple[int, list[dict[str, Any]]]:
    """The intermediate teacher step with the best 2-step CSP match rate on ``references``.

    Ties go to the lower RMSE. Returns (best step, one row per candidate with ``step``,
    ``match_rate`` (%) and ``rmse``).
    """
    from crystaloop.generator.diffusion.generator import crystal_from_sample
    from crystaloop.generator.evaluation import csp_metrics

    if not candidates:
        raise CrystaloopError("choose_midpoint needs at least one candidate step")
    vocabulary = set(model.normalisation.species.tolist())
    usable = [c for c in references if set(c.numbers.tolist()) <= vocabulary]
    if len(usable) < len(references):
        logger.warning("midpoint validation skips %d of %d crystals with elements outside the model's vocabulary",
                       len(references) - len(usable), len(references))
    if not usable:
        raise CrystaloopError("no validation crystal lies inside the model's vocabulary; pass validation data of the teacher's elements")
    references = usable
    tokens = [model.normalisation.tokens(c.numbers, where=f"validation crystal {i}") for i, c in enumerate(references)]
    rows = []
    for step in candidates:
        sampler = SamplerConfig(method="consistency", steps=2, midpoints=[int(step)])
        samples: list[Crystal | None] = []
        for number, first in enumerate(range(0, len(references), batch_size)):
            part = references[first:first + batch_size]
            request = SampleRequest(num_atoms=torch.tensor([c.n_sites for c in part]),
                                    tokens=torch.cat(tokens[first:first + batch_size]))
            raw = consistency_sample_batch(model, request, sampler, seed=seed * 100_003 + number)
            samples.extend(crystal_from_sample(*parts) for parts in raw.split())
        metrics = csp_metrics(references, samples)
        rows.append({"step": int(step), "match_rate": metrics["match_rate"], "rmse": metrics["rmse"]})
    best = max(rows, key=lambda r: (r["match_rate"], -(r["rmse"] if r["rmse"] is not None else float("inf"))))
    return best["step"], rows
