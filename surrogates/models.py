"""Invariant periodic GNNs that predict crystal properties.

Two architectures, trained by the same code path (:mod:`crystaloop.surrogates.training`):

* ``mpnn``: crystaloop's property network. Atoms start from physical element descriptors plus a
  learned embedding; edges carry a Gaussian expansion of the interatomic distance times a smooth
  cosine cutoff; each interaction block forms messages from (sender, receiver, distance) with an
  MLP gated by a distance filter, sums them, and updates atoms through a residual MLP with layer
  normalisation. A mean over atoms gives the crystal embedding, and a head predicts each target's
  mean and log-variance (heteroscedastic, so each ensemble member has its own noise estimate).
* ``cgcnn``: the CGCNN baseline (Xie & Grossman, PRL 120, 145301, 2018): PyG's ``CGConv`` layers
  with batch normalisation on the same inputs, mean pooling and an MLP head with the same outputs.

Both see only interatomic distances and species, so their outputs are invariant to rotation,
translation, site permutation and choice of lattice basis; with mean pooling and
sum-over-neighbours messages, a supercell gives the same (intensive) prediction.

Shapes: a PyG batch of B crystals with N atoms and E edges; ``forward`` returns mean (B, T),
log_var (B, T) in normalised target units and the embedding (B, H).
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from torch import nn
from torch_geometric.utils import scatter

from crystaloop.data.elements import element_feature_table, n_element_features
from crystaloop.data.errors import UnknownComponentError

__all__ = ["GaussianDistances", "MPNNProperty", "CGCNNProperty", "ARCHITECTURES", "build_model"]


class GaussianDistances(nn.Module):
    """Expand distances (E,) in Å into (E, K) Gaussians on [0, cutoff], times a cosine envelope."""

    def __init__(self, cutoff: float, n_gaussians: int) -> None:
        super().__init__()
        self.cutoff = cutoff
        self.register_buffer("centres", torch.linspace(0.0, cutoff, n_gaussians))
        self.width = cutoff / max(n_gaussians - 1, 1)

    def forward(self, distance: torch.Tensor) -> torch.Tensor:
        gauss = torch.exp(-0.5 * ((distance[:, None] - self.centres[None, :]) / self.width) ** 2)
        envelope = 0.5 * (torch.cos(math.pi * distance.clamp(max=self.cutoff) / self.cutoff) + 1.0)
        return gauss * envelope[:, None]


class AtomEncoder(nn.Module):
    """Element descriptors (fixed table) plus a learned embedding, projected to ``hidden``."""

    def __init__(self, hidden: int) -> None:
        super().__init__()
        self.register_buffer("table", torch.from_numpy(element_feature_table().copy()))
        self.embedding = nn.Embedding(self.table.shape[0], hidden)
        nn.init.normal_(self.embedding.weight, std=0.1)
        self.project = nn.Linear(n_element_features(), hidden)

    def forward(self, atomic_numbers: torch.Tensor) -> torch.Tensor:
        return self.project(self.table[atomic_numbers]) + self.embedding(atomic_numbers)


class InteractionBlock(nn.Module):
    """Distance-gated messages, summed per receiver, residual update with layer norm."""

    def __init__(self, hidden: int, n_gaussians: int) -> None:
        super().__init__()
        self.message = nn.Sequential(nn.Linear(2 * hidden + n_gaussians, hidden), nn.SiLU(), nn.Linear(hidden, hidden))
        self.filter = nn.Linear(n_gaussians, hidden)
        self.update = nn.Sequential(nn.Linear(2 * hidden, hidden), nn.SiLU(), nn.Linear(hidden, hidden))
        self.norm = nn.LayerNorm(hidden)

    def forward(self, h: torch.Tensor, edge_index: torch.Tensor, rbf: torch.Tensor) -> torch.Tensor:
        src, dst = edge_index
        messages = self.message(torch.cat([h[src], h[dst], rbf], dim=-1)) * self.filter(rbf)
        aggregated = scatter(messages, dst, dim=0, dim_size=h.shape[0], reduce="sum")
        return self.norm(h + self.update(torch.cat([h, aggregated], dim=-1)))


class _PropertyHead(nn.Module):
    def __init__(self, hidden: int, n_targets: int) -> None:
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(hidden, hidden), nn.SiLU(), nn.Linear(hidden, 2 * n_targets))
        self.n_targets = n_targets

    def forward(self, embedding: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.mlp(embedding)
        mean, log_var = out[:, : self.n_targets], out[:, self.n_targets :]
        return mean, log_var.clamp(-10.0, 6.0)


def _edge_lengths(batch) -> torch.Tensor:  # noqa: ANN001 - a PyG Batch
    return batch.edge_vec.norm(dim=-1)


class _PropertyNetwork(nn.Module):
    """Shared output: ``forward(batch) -> (mean (B, T), log_var (B, T), embedding (B, H))``."""

    head: _PropertyHead

    def embed(self, batch) -> torch.Tensor:  # noqa: ANN001
        raise NotImplementedError

    def forward(self, batch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:  # noqa: ANN001
        embedding = self.embed(batch)
        mean, log_var = self.head(embedding)
        return mean, log_var, embedding


class MPNNProperty(_PropertyNetwork):
    """crystaloop's invariant property network (see the module docstring)."""

    def __init__(self, *, n_targets: int, hidden: int = 64, layers: int = 3, n_gaussians: int = 32, cutoff: float = 5.0) -> None:
        super().__init__()
        self.atoms = AtomEncoder(hidden)
        self.distances = GaussianDistances(cutoff, n_gaussians)
        self.blocks = nn.ModuleList(InteractionBlock(hidden, n_gaussians) for _ in range(layers))
        self.readout = nn.Sequential(nn.Linear(hidden, hidden), nn.SiLU())
        self.head = _PropertyHead(hidden, n_targets)

    def embed(self, batch) -> torch.Tensor:  # noqa: ANN001
        """(B, hidden) crystal embeddings (mean over atoms)."""
        h = self.atoms(batch.atomic_numbers)
        rbf = self.distances(_edge_lengths(batch))
        for block in self.blocks:
            h = block(h, batch.edge_index, rbf)
        return self.readout(scatter(h, batch.batch, dim=0, dim_size=batch.num_graphs, reduce="mean"))


class CGCNNProperty(_PropertyNetwork):
    """CGCNN baseline on the same inputs and outputs as :class:`MPNNProperty`."""

    def __init__(self, *, n_targets: int, hidden: int = 64, layers: int = 3, n_gaussians: int = 32, cutoff: float = 5.0) -> None:
        super().__init__()
        from torch_geometric.nn import CGConv

        self.atoms = AtomEncoder(hidden)
        self.distances = GaussianDistances(cutoff, n_gaussians)
        self.convs = nn.ModuleList(CGConv(hidden, dim=n_gaussians, aggr="mean", batch_norm=True) for _ in range(layers))
        self.readout = nn.Sequential(nn.Linear(hidden, hidden), nn.Softplus())
        self.head = _PropertyHead(hidden, n_targets)

    def embed(self, batch) -> torch.Tensor:  # noqa: ANN001
        h = self.atoms(batch.atomic_numbers)
        rbf = self.distances(_edge_lengths(batch))
        for conv in self.convs:
            h = conv(h, batch.edge_index, rbf)
        return self.readout(scatter(h, batch.batch, dim=0, dim_size=batch.num_graphs, reduce="mean"))


Architecture = Literal["mpnn", "cgcnn"]
ARCHITECTURES: dict[str, type[nn.Module]] = {"mpnn": MPNNProperty, "cgcnn": CGCNNProperty}


def build_model(architecture: str, **kwargs: int | float) -> nn.Module:
    """Instantiate a registered architecture; unknown names list the valid ones."""
    if architecture not in ARCHITECTURES:
        raise UnknownComponentError("surrogate architecture", architecture, ARCHITECTURES)
    return ARCHITECTURES[architecture](**kwargs)
