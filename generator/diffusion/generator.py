"""``DiffusionGenerator``: the trained diffusion model behind the :class:`Generator` port.

Turns a :class:`~crystaloop.data.records.Condition` into a sampling request (composition →
structure prediction with fixed species; chemical system → de novo restricted to those
elements; property targets and an embedding → classifier-free guided conditioning), checks it
against what the checkpoint supports, samples in batches and wraps the results as candidates
with full provenance. Samples whose lattice collapsed (volume ≤ 0.1 Å³) or whose numbers are
not finite are dropped and counted (see :attr:`DiffusionGenerator.last_dropped`).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from crystaloop.data.crystal import Crystal, atomic_number, element_symbol
from crystaloop.data.errors import CrystaloopError, InvalidStructureError
from crystaloop.data.records import Candidate, Condition, Provenance
from crystaloop.generator.config import SamplerConfig
from crystaloop.generator.consistency.checkpoint import load_any_model
from crystaloop.generator.consistency.model import ConsistencyModel
from crystaloop.generator.consistency.sampling import consistency_sample_batch
from crystaloop.generator.diffusion.checkpoint import file_hash
from crystaloop.generator.diffusion.model import CrystalDiffusion
from crystaloop.generator.diffusion.sampling import RawSamples, SampleRequest, sample_batch

__all__ = ["DiffusionGenerator", "crystal_from_sample", "VERSION"]

VERSION = "1"
logger = logging.getLogger(__name__)


def crystal_from_sample(lattice: np.ndarray, frac: np.ndarray, numbers: np.ndarray) -> Crystal | None:
    """A Crystal from raw sampler output, or ``None`` when the cell is degenerate or not finite.

    A left-handed basis is flipped (``L → −L``, ``F → −F``): the same structure, right-handed.
    """
    if not (np.isfinite(lattice).all() and np.isfinite(frac).all()):
        return None
    if np.linalg.det(lattice) < 0:
        lattice, frac = -lattice, np.remainder(-frac, 1.0)
    try:
        crystal = Crystal(lattice, frac, numbers.astype(np.int64))
    except InvalidStructureError:
        return None
    return crystal if crystal.volume > 0.1 else None


class DiffusionGenerator:
    """Samples crystals from a trained :class:`CrystalDiffusion` (implements ``Generator``).

    Args:
        model: the loaded model (eval mode); a distilled :class:`ConsistencyModel` samples with
            ``method="consistency"`` only (default for it: 2 steps), a teacher never does.
        sampler: reverse-process settings (steps, method, batch size).
        checkpoint_hash: sha256 prefix of the checkpoint file, for provenance.
    """

    name = "diffusion"

    def __init__(self, model: CrystalDiffusion, sampler: SamplerConfig | None = None, *, checkpoint_hash: str | None = None) -> None:
        self.model = model
        distilled = isinstance(model, ConsistencyModel)
        self.sampler = sampler or (SamplerConfig(method="consistency", steps=2) if distilled else SamplerConfig())
        if distilled != (self.sampler.method == "consistency"):
            raise CrystaloopError(
                f"sampler method {self.sampler.method!r} does not fit this checkpoint: "
                + ("a distilled consistency model samples with method 'consistency' (steps 1, 2 or 4)" if distilled
                   else "method 'consistency' needs a distilled checkpoint (`crystaloop generator distill`); allowed here: pc, ddim"))
        self.checkpoint_hash = checkpoint_hash
        self.last_dropped = 0

    @classmethod
    def from_checkpoint(cls, path: Path | str, sampler: SamplerConfig | None = None, device: str = "cpu") -> DiffusionGenerator:
        model = load_any_model(path, device=device)  # a teacher or a distilled student, by the file's format
        return cls(model, sampler, checkpoint_hash=file_hash(Path(path)))

    # -- what the checkpoint supports -------------------------------------------------------
    @property
    def species(self) -> list[str]:
        return [element_symbol(int(z)) for z in self.model.normalisation.species.tolist()]

    @property
    def max_atoms(self) -> int:
        return self.model.config.max_atoms

    @property
    def properties(self) -> list[str]:
        return list(self.model.config.network.properties)

    @property
    def embedding_dim(self) -> int:
        """Width of the conditioning latent this checkpoint reads (0: none)."""
        return int(self.model.config.network.embedding_dim)

    def _allowed_mask(self, system: tuple[str, ...] | None) -> torch.Tensor | None:
        if system is None:
            return None
        vocab = self.model.normalisation.species.tolist()
        outside = [s for s in system if atomic_number(s) not in vocab]
        if outside:
            raise CrystaloopError(f"chemical system elements {outside} are outside this model's vocabulary; allowed: {', '.join(self.species)}")
        allowed = {atomic_number(s) for s in system}
        return torch.tensor([z in allowed for z in vocab], dtype=torch.bool)

    def _property_row(self, condition: Condition) -> np.ndarray | None:
        if not condition.properties:
            return None
        unknown = sorted(set(condition.properties) - set(self.properties))
        if unknown:
            allowed = ", ".join(self.properties) or "none (this model is unconditional)"
            raise CrystaloopError(f"cannot condition on {unknown}; this model knows: {allowed}")
        return np.array([condition.properties.get(name, math.nan) for name in self.properties], dtype=np.float64)

    def _embedding_row(self, condition: Condition) -> np.ndarray | None:
        if condition.embedding is None:
            return None
        expected = self.model.config.network.embedding_dim
        if len(condition.embedding) != expected:
            raise CrystaloopError(f"condition embedding has length {len(condition.embedding)}; this model expects {expected}"
                                  + (" (it takes no embedding)" if expected == 0 else ""))
        return np.asarray(condition.embedding, dtype=np.float64)

    def atom_counts(self, n: int, condition: Condition | None, rng: np.random.Generator) -> np.ndarray:
        """Sites per crystal: from the composition, the condition, or the training distribution."""
        if condition is not None and condition.composition:
            total = sum(condition.composition.values())
            counts = np.full(n, total)
        elif condition is not None and condition.num_atoms:
            counts = np.full(n, condition.num_atoms)
        else:
            probs = self.model.normalisation.atom_count_probs.cpu().numpy().astype(np.float64)
            counts = rng.choice(len(probs), size=n, p=probs / probs.sum())
        if counts.max() > self.max_atoms:
            raise CrystaloopError(f"{int(counts.max())} atoms per cell exceed this model's maximum of {self.max_atoms}")
        return counts

    def request(self, n: int, condition: Condition | None, rng: np.random.Generator) -> SampleRequest:
        """Check ``condition`` against the checkpoint and build the sampling request."""
        condition = condition or Condition()
        counts = self.atom_counts(n, condition, rng)
        tokens = None
        if condition.composition:
            numbers = np.concatenate([[atomic_number(el)] * k for el, k in condition.composition.items()])
            tokens = self.model.normalisation.tokens(numbers, where=f"composition {condition.composition}").repeat(n)
        elif self.model.normalisation.num_species == 1:  # one-element model: species are known
            tokens = torch.zeros(int(counts.sum()), dtype=torch.long)
        allowed = self._allowed_mask(condition.chemical_system)
        props = self._property_row(condition)
        emb = self._embedding_row(condition)
        return SampleRequest(
            num_atoms=torch.as_tensor(counts, dtype=torch.long), tokens=tokens,
            allowed=None if allowed is None else allowed.expand(n, -1),
            properties=None if props is None else np.tile(props, (n, 1)),
            embeddings=None if emb is None else np.tile(emb, (n, 1)),
            guidance_scale=condition.guidance_scale,
        )

    def sample_raw(self, request: SampleRequest, *, seed: int, on_step: Callable[[int, int], None] | None = None) -> RawSamples:
        """Sample a request in batches of ``sampler.batch_size`` crystals (seed per batch)."""
        pieces: list[RawSamples] = []
        n = len(request.num_atoms)
        bounds = torch.cat([torch.zeros(1, dtype=torch.long), torch.cumsum(request.num_atoms, 0)])
        for number, first in enumerate(range(0, n, self.sampler.batch_size)):
            last = min(first + self.sampler.batch_size, n)
            part = SampleRequest(
                num_atoms=request.num_atoms[first:last],
                tokens=None if request.tokens is None else request.tokens[bounds[first]:bounds[last]],
                allowed=None if request.allowed is None else request.allowed[first:last],
                properties=None if request.properties is None else request.properties[first:last],
                embeddings=None if request.embeddings is None else request.embeddings[first:last],
                guidance_scale=request.guidance_scale,
            )
            sampler = consistency_sample_batch if self.sampler.method == "consistency" else sample_batch
            pieces.append(sampler(self.model, part, self.sampler, seed=seed * 100_003 + number, on_step=on_step))
        return RawSamples(
            lattice=np.concatenate([p.lattice for p in pieces]), frac=np.concatenate([p.frac for p in pieces]),
            numbers=np.concatenate([p.numbers for p in pieces]), num_atoms=np.concatenate([p.num_atoms for p in pieces]),
            seconds=sum(p.seconds for p in pieces),
        )

    def sample(self, n: int, condition: Condition | None = None, *, seed: int,
               on_step: Callable[[int, int], None] | None = None, embeddings: np.ndarray | None = None) -> list[Candidate]:
        """``n`` candidates (fewer when samples collapse; see ``last_dropped``), status ``generated``;
        ``on_step(step, steps)`` is called after each sampler step of each batch.

        ``embeddings`` (n, embedding_dim): one conditioning latent per sample (e.g. drawn from a
        latent prior), in place of ``condition.embedding``; each candidate's condition then
        records its own row."""
        if n <= 0:
            raise CrystaloopError(f"number of samples must be positive, got {n}")
        rng = np.random.default_rng(seed)
        request = self.request(n, condition, rng)
        rows: np.ndarray | None = None
        if embeddings is not None:
            rows = np.asarray(embeddings, dtype=np.float64)
            if rows.shape != (n, self.embedding_dim) or self.embedding_dim == 0 or not np.isfinite(rows).all():
                raise CrystaloopError(f"per-sample embeddings must be {n} finite rows of width {self.embedding_dim} "
                                      f"(this model's embedding_dim), got shape {rows.shape}")
            request.embeddings = rows
        raw = self.sample_raw(request, seed=seed, on_step=on_step)
        crystals = [crystal_from_sample(*parts) for parts in raw.split()]
        kept = [c for c in crystals if c is not None]
        self.last_dropped = len(crystals) - len(kept)
        if self.last_dropped:
            logger.warning("dropped %d of %d samples with a collapsed or non-finite cell", self.last_dropped, n)
        provenance = Provenance(component=f"generator.{self.name}", version=VERSION, checkpoint_hash=self.checkpoint_hash,
                                config_hash=self.model.config.hash(), seed=seed)
        if embeddings is None:
            return Candidate.from_crystals(kept, provenance, condition)
        base = condition or Condition()
        return [Candidate(crystal=c, provenance=provenance,
                          condition=base.model_copy(update={"embedding": tuple(float(v) for v in row)}))
                for c, row in zip(crystals, rows if rows is not None else [], strict=True) if c is not None]
