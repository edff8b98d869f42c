"""`PropertyEnsemble`: a deep ensemble of property networks behind the Surrogate port
(:class:`~crystaloop.surrogates.base.EmbeddingSurrogate`).

Prediction for n crystals and T targets (original units, e.g. eV):

* mean: average of the members' means;
* variance: mean of the members' predicted (aleatoric) variances plus the variance of their
  means (epistemic), the usual deep-ensemble mixture (Lakshminarayanan et al., NeurIPS 2017);
* std: the square root, times a per-target factor fitted on a validation split
  (:func:`~crystaloop.surrogates.calibration.fit_std_scale`).

An out-of-distribution score compares a crystal's embedding (the members' embeddings
concatenated) with the training set's: the mean distance to its k nearest training embeddings
divided by the median of the same quantity within the training set (≈ 1 in distribution, larger
away from it).

Checkpoints are self-describing (config, normalisation, calibration, training-data hash, metrics,
reference embeddings, member weights) and load with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from crystaloop import __version__
from crystaloop.data.crystal import Crystal
from crystaloop.data.datasets import PROPERTY_UNITS
from crystaloop.data.errors import CrystaloopError
from crystaloop.data.graphs import crystals_to_batch
from crystaloop.data.records import Prediction
from crystaloop.surrogates.config import SurrogateConfig
from crystaloop.surrogates.models import build_model

__all__ = ["PropertyEnsemble", "CHECKPOINT_FORMAT", "MemberOutputs"]

logger = logging.getLogger(__name__)

CHECKPOINT_FORMAT = "crystaloop.surrogate/1"
_OOD_NEIGHBOURS = 5


@dataclass
class MemberOutputs:
    """Raw per-member outputs in original units: means and variances (M, n, T), embeddings (M, n, H)."""

    means: np.ndarray
    variances: np.ndarray
    embeddings: np.ndarray


@dataclass
class PropertyEnsemble:
    """A trained deep ensemble; see the module docstring for what it predicts."""

    config: SurrogateConfig
    members: list[nn.Module]
    target_mean: np.ndarray  # (T,) normalisation, original units
    target_std: np.ndarray  # (T,)
    std_scale: np.ndarray = field(default_factory=lambda: np.ones(1))  # (T,) recalibration
    reference_embeddings: np.ndarray | None = None  # (R, M*H) training embeddings for OOD
    ood_reference_distance: float = 1.0
    metadata: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.std_scale.shape != (len(self.config.targets),):
            self.std_scale = np.ones(len(self.config.targets))
        for member in self.members:
            member.eval()

    # ------------------------------------------------------------------ identity
    @property
    def name(self) -> str:
        return f"{self.config.architecture}:{'+'.join(self.config.targets)}"

    @property
    def properties(self) -> tuple[str, ...]:
        return self.config.targets

    @property
    def units(self) -> tuple[str, ...]:
        return tuple(PROPERTY_UNITS.get(t, "") for t in self.config.targets)

    # ------------------------------------------------------------------ inference
    def _batches(self, crystals: Sequence[Crystal], batch_size: int) -> Iterator[Any]:
        for start in range(0, len(crystals), batch_size):
            yield crystals_to_batch(crystals[start : start + batch_size], self.config.graph).to(self.config.device)

    @torch.no_grad()
    def member_outputs(self, crystals: Sequence[Crystal], batch_size: int = 256) -> MemberOutputs:
        """Every member's mean, variance (original units) and embedding for each crystal."""
        if not crystals:
            raise CrystaloopError("predict needs at least one crystal, got none")
        means, log_vars, embeddings = [], [], []
        for batch in self._batches(list(crystals), batch_size):
            outs = [member(batch) for member in self.members]
            means.append(torch.stack([o[0] for o in outs]))
            log_vars.append(torch.stack([o[1] for o in outs]))
            embeddings.append(torch.stack([o[2] for o in outs]))
        scale = self.target_std[None, None, :]
        mean = torch.cat(means, dim=1).cpu().numpy() * scale + self.target_mean[None, None, :]
        variance = np.exp(torch.cat(log_vars, dim=1).cpu().numpy()) * scale**2
        return MemberOutputs(mean, variance, torch.cat(embeddings, dim=1).cpu().numpy())

    def predict(self, crystals: Sequence[Crystal]) -> Prediction:
        """Calibrated mean and std (n, T) in the targets' units."""
        outputs = self.member_outputs(crystals)
        mean, std = self.combine(outputs)
        return Prediction(mean=mean, std=std, properties=self.properties, units=self.units, model=self.name)

    def combine(self, outputs: MemberOutputs, *, calibrated: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """Ensemble mean and std (n, T) from member outputs."""
        mean = outputs.means.mean(axis=0)
        variance = outputs.variances.mean(axis=0) + outputs.means.var(axis=0)
        std = np.sqrt(variance)
        return mean, std * self.std_scale[None, :] if calibrated else std

    def embed(self, crystals: Sequence[Crystal]) -> np.ndarray:
        """(n, M·H) embeddings: the members' crystal embeddings side by side."""
        return _concat_members(self.member_outputs(crystals).embeddings)

    def ood_score(self, crystals: Sequence[Crystal] | None = None, *, embeddings: np.ndarray | None = None) -> np.ndarray:
        """(n,) embedding-distance out-of-distribution score (≈ 1 in distribution); all ones for
        a checkpoint saved without reference embeddings (retrain it to get OOD scores)."""
        if self.reference_embeddings is None:
            count = len(embeddings) if embeddings is not None else len(crystals or ())
            logger.info("surrogate %s has no reference embeddings: OOD scores are 1 (retrain to get them)", self.name)
            return np.ones(count)
        if embeddings is None:
            if crystals is None:
                raise ValueError("ood_score needs crystals or embeddings")
            embeddings = self.embed(crystals)
        distances = knn_distance(embeddings, self.reference_embeddings, _OOD_NEIGHBOURS)
        return distances / self.ood_reference_distance

    # ------------------------------------------------------------------ persistence
    def state(self) -> dict[str, Any]:
        """Everything needed to rebuild this ensemble, as tensors and plain Python types."""
        return {
            "format": CHECKPOINT_FORMAT,
            "crystaloop_version": __version__,
            "config": self.config.model_dump(mode="json"),
            "target_mean": torch.from_numpy(np.asarray(self.target_mean, dtype=np.float64)),
            "target_std": torch.from_numpy(np.asarray(self.target_std, dtype=np.float64)),
            "std_scale": torch.from_numpy(np.asarray(self.std_scale, dtype=np.float64)),
            "reference_embeddings": None
            if self.reference_embeddings is None
            else torch.from_numpy(self.reference_embeddings.astype(np.float16)),
            "ood_reference_distance": float(self.ood_reference_distance),
            "metadata": self.metadata,
            "members": [{k: v.detach().cpu() for k, v in m.state_dict().items()} for m in self.members],
        }

    def save(self, path: Path) -> Path:
        """Write the checkpoint atomically."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(path.suffix + ".tmp")
        torch.save(self.state(), tmp)
        tmp.replace(path)
        return path

    @classmethod
    def from_state(cls, state: dict[str, Any], *, device: str = "cpu") -> PropertyEnsemble:
        if state.get("format") != CHECKPOINT_FORMAT:
            raise CrystaloopError(f"not a crystaloop surrogate checkpoint (format {state.get('format')!r}, expected {CHECKPOINT_FORMAT!r})")
        saved = dict(state["config"])
        saved.setdefault("angular_degree", 0)  # checkpoints from before the angular features
        config = SurrogateConfig.model_validate({**saved, "device": device})
        members = []
        for weights in state["members"]:
            member = build_model(config.architecture, **config.model_kwargs())
            member.load_state_dict(weights)
            members.append(member.to(device))
        reference = state.get("reference_embeddings")
        return cls(
            config=config,
            members=members,
            target_mean=state["target_mean"].numpy(),
            target_std=state["target_std"].numpy(),
            std_scale=state["std_scale"].numpy(),
            reference_embeddings=None if reference is None else reference.float().numpy(),
            ood_reference_distance=float(state["ood_reference_distance"]),
            metadata=dict(state.get("metadata", {})),
        )

    @classmethod
    def load(cls, path: Path | str, *, device: str = "cpu") -> PropertyEnsemble:
        """Load a checkpoint written by :meth:`save` (weights-only unpickling)."""
        path = Path(path)
        if not path.exists():
            raise CrystaloopError(f"no surrogate checkpoint at {path}")
        return cls.from_state(torch.load(path, map_location=device, weights_only=True), device=device)


def _concat_members(embeddings: np.ndarray) -> np.ndarray:
    """(M, n, H) → (n, M·H)."""
    return np.concatenate(list(embeddings), axis=1)


def knn_distance(queries: np.ndarray, reference: np.ndarray, k: int, *, exclude_self: bool = False) -> np.ndarray:
    """Mean Euclidean distance from each query (n, D) to its k nearest rows of ``reference`` (R, D)."""
    out = np.empty(len(queries))
    k_eff = min(k + int(exclude_self), len(reference))
    for start in range(0, len(queries), 1024):
        chunk = queries[start : start + 1024]
        d2 = (chunk**2).sum(1)[:, None] + (reference**2).sum(1)[None, :] - 2.0 * chunk @ reference.T
        nearest = np.sqrt(np.maximum(np.partition(d2, k_eff - 1, axis=1)[:, :k_eff], 0.0))
        nearest.sort(axis=1)
        out[start : start + 1024] = nearest[:, int(exclude_self) :].mean(axis=1)
    return out
