"""Free parameters of a template drawn by the trained diffusion model, the symmetry kept exactly.

:class:`TemplateDiffusion` takes templates with starting parameters (the template generator's
copy of a training crystal's) and runs the reverse process of a trained
:class:`~crystaloop.generator.diffusion.model.CrystalDiffusion` on their sites, projecting every
state onto the template's subspace (:class:`~crystaloop.generator.symmetry.subspace.SymmetricSubspace`):
fractional coordinates onto the Wyckoff orbits, the lattice onto the crystal system. The species
are the template's (structure prediction); the network is evaluated in the canonical reduced basis
(``canonical_frame``), since a template's primitive cell need not be the reduced one the model was
trained on.

``start`` sets how much of the starting parameters survives: the state at timestep
``start · T`` is the starting crystal noised by the forward process (lattice: DDPM noise on its
normalised symmetric polar factor; coordinates: wrapped Gaussian of width σ_t), then projected
(SDEdit, Meng et al., ICLR 2022); ``start = 1`` starts from the prior and forgets them. The last
state is read back as template parameters and rebuilt from them, so every output has exactly
the template's sites and symmetry (or a supergroup's, for special values).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Literal, cast

import numpy as np
import torch

from crystaloop.data.crystal import Crystal
from crystaloop.data.errors import CrystaloopError
from crystaloop.generator.config import SamplerConfig
from crystaloop.generator.diffusion.denoiser import NoisyBatch
from crystaloop.generator.diffusion.model import CrystalDiffusion, symmetric_lattice, symmetric_noise
from crystaloop.generator.diffusion.sampling import SampleRequest, sample_batch
from crystaloop.generator.symmetry.representation import SymmetricCrystal
from crystaloop.generator.symmetry.subspace import SymmetricSubspace

__all__ = ["TemplateDiffusion"]

logger = logging.getLogger(__name__)


class TemplateDiffusion:
    """Draws template free parameters with a trained diffusion model (see the module docstring).

    Args:
        model: the trained teacher (eval mode); its vocabulary limits the templates it can refine.
        steps: reverse steps over [start · T, 0].
        start: fraction of the schedule the reverse process starts from, in (0, 1].
        method: ``ddim`` (deterministic) or ``pc`` (ancestral with a Langevin corrector) for a
            teacher; ``consistency`` for a distilled student (``steps`` network calls, 1–4).
        name: what provenance calls this model (a shipped name or the checkpoint file).
    """

    def __init__(self, model: CrystalDiffusion, *, steps: int = 50, start: float = 0.5,
                 method: Literal["ddim", "pc", "consistency"] = "ddim", name: str = "diffusion", batch_size: int = 256) -> None:
        from crystaloop.generator.consistency.model import ConsistencyModel

        if not 0 < start <= 1:
            raise CrystaloopError(f"refine start must be in (0, 1] (a fraction of the noise schedule), got {start}")
        if steps < 1:
            raise CrystaloopError(f"refine steps must be ≥ 1, got {steps}")
        if method not in ("ddim", "pc", "consistency"):
            raise CrystaloopError(f"refine method {method!r} is unknown; allowed: ddim, pc, consistency")
        if (method == "consistency") != isinstance(model, ConsistencyModel):
            raise CrystaloopError(f"refine method {method!r} does not fit {name}: a distilled student refines with "
                                  "'consistency' (1–4 steps), a teacher with 'ddim' or 'pc'")
        self.model, self.steps, self.start, self.method, self.name = model, int(steps), float(start), method, name
        self.batch_size = int(batch_size)
        species = cast(torch.Tensor, model.normalisation.species)  # a registered buffer: (n_species,) atomic numbers
        self._vocabulary = {int(z) for z in species.tolist()}

    @property
    def description(self) -> str:
        return f"{self.name} diffusion, projected onto the template ({self.method}, {self.steps} steps from t = {self.start:g}·T)"

    def covers(self, symmetric: SymmetricCrystal) -> bool:
        """Whether every element of the template is in the model's vocabulary and its cell fits the model."""
        from crystaloop.data.crystal import atomic_number

        sites = symmetric.to_crystal().n_sites
        return all(atomic_number(o.element) in self._vocabulary for o in symmetric.orbits) and sites <= self.model.config.max_atoms

    def refine(self, templates: Sequence[tuple[SymmetricCrystal, bool]], *, seed: int,
               trace: list[list[tuple[np.ndarray, np.ndarray]]] | None = None) -> list[tuple[Crystal, SymmetricCrystal]]:
        """The refined crystal and its symmetric description for each (template, primitive cell?) pair.

        Args:
            templates: templates with their starting parameters, and whether to write each in its
                primitive cell (else the conventional one).
            seed: seeds the forward noise and the reverse process (one seed per batch: ``seed + batch``).
            trace: if given, receives per template the (lattice (3, 3) Å, frac (N, 3)) of every
                state of its trajectory (tests check the symmetry along it).

        Raises:
            CrystaloopError: a template has an element outside the model's vocabulary or too many sites.
        """
        for symmetric, _ in templates:
            if not self.covers(symmetric):
                raise CrystaloopError(f"template of space group {symmetric.space_group} with elements "
                                      f"{sorted({o.element for o in symmetric.orbits})} is outside diffusion model {self.name}'s "
                                      f"vocabulary or atom limit ({self.model.config.max_atoms})")
        out: list[tuple[Crystal, SymmetricCrystal]] = []
        for number, first in enumerate(range(0, len(templates), self.batch_size)):
            part = templates[first:first + self.batch_size]
            subspaces = [SymmetricSubspace(symmetric, primitive=primitive) for symmetric, primitive in part]
            traces: list[list[tuple[np.ndarray, np.ndarray]]] | None = [[] for _ in part] if trace is not None else None
            out += self._refine_batch(subspaces, seed=seed + number, traces=traces)
            if trace is not None and traces is not None:
                trace += traces
        return out

    def _refine_batch(self, subspaces: list[SymmetricSubspace], *, seed: int,
                      traces: list[list[tuple[np.ndarray, np.ndarray]]] | None) -> list[tuple[Crystal, SymmetricCrystal]]:
        model, schedule = self.model, self.model.schedule
        device, dtype = next(model.parameters()).device, next(model.parameters()).dtype
        crystals = [s.crystal for s in subspaces]
        num_atoms = torch.as_tensor([c.n_sites for c in crystals], dtype=torch.long)
        numbers = np.concatenate([c.numbers for c in crystals])
        tokens = model.normalisation.tokens(numbers, where="template")
        scale = model.normalisation.lattice_scale(num_atoms).double().numpy()  # (B,) Å per normalised unit
        bounds = np.concatenate([[0], np.cumsum(num_atoms.numpy())])
        t0 = max(1, round(self.start * schedule.timesteps))
        generator = torch.Generator().manual_seed(seed)
        clean = torch.as_tensor(np.stack([symmetric_lattice(c.lattice) / s for c, s in zip(crystals, scale, strict=True)]))
        ab = cast(torch.Tensor, schedule.alpha_bar)[t0].double()
        lattice0 = ab.sqrt() * clean + (1 - ab).sqrt() * symmetric_noise(len(crystals), generator).double()
        frac0 = torch.as_tensor(np.concatenate([c.frac_coords for c in crystals]))
        frac0 = torch.remainder(frac0 + float(cast(torch.Tensor, schedule.sigma)[t0]) * torch.randn(frac0.shape, generator=generator).double(), 1.0)

        def constrain(state: NoisyBatch) -> NoisyBatch:
            lattices = state.lattice.detach().double().cpu().numpy()
            frac = state.frac.detach().double().cpu().numpy()
            new_lattices, new_frac = np.empty_like(lattices), np.empty_like(frac)
            for i, subspace in enumerate(subspaces):
                lattice = subspace.project_lattice(lattices[i] * scale[i])
                sites = subspace.project_frac(frac[bounds[i]:bounds[i + 1]])
                new_lattices[i], new_frac[bounds[i]:bounds[i + 1]] = symmetric_lattice(lattice) / scale[i], sites
                if traces is not None:
                    traces[i].append((lattice, sites))
            return state.replace(lattice=torch.as_tensor(new_lattices, dtype=dtype, device=device),
                                 frac=torch.as_tensor(new_frac, dtype=dtype, device=device))

        request = SampleRequest(num_atoms=num_atoms, tokens=tokens)
        config = SamplerConfig(method=self.method, steps=self.steps, canonical_frame=True, batch_size=max(len(crystals), 1))
        initial = (lattice0.to(dtype), frac0.to(dtype))
        if self.method == "consistency":
            from crystaloop.generator.consistency.model import ConsistencyModel
            from crystaloop.generator.consistency.sampling import consistency_sample_batch

            assert isinstance(model, ConsistencyModel)
            raw = consistency_sample_batch(model, request, config, seed=seed, initial=initial, start=t0, constrain=constrain)
        else:
            raw = sample_batch(model, request, config, seed=seed, initial=initial, start=t0, constrain=constrain)
        out = []
        for subspace, (lattice, frac, _) in zip(subspaces, raw.split(), strict=True):
            symmetric = subspace.with_state(lattice, frac)
            out.append((symmetric.to_crystal(primitive=subspace.primitive), symmetric))
        return out
