"""A small invariant message-passing network that maps a crystal to the shared latent.

Built on data-level featurisation only: periodic radius graphs from
:func:`crystaloop.data.graphs.crystals_to_batch` and per-element descriptors from
:func:`crystaloop.data.elements.element_feature_table`. It sees interatomic distances (Å) and
species, never coordinates or the lattice basis, so its output is invariant under rotation,
translation, site permutation and change of lattice basis; mean pooling over sites (and the
tie-inclusive neighbour cap of the graph) makes it the same for a supercell.

Per layer, for an edge ``j → i`` with distance ``r``: ``m = σ(W_g z) ⊙ softplus(W_m z)`` with
``z = [h_i, h_j, rbf(r) · envelope(r)]`` (a CGCNN-style gated message), messages summed into
``i`` and scaled by ``1/√max_neighbors`` (a constant, so a crystal's output never depends on its batch), then ``h_i ← LayerNorm(h_i + MLP(sum))``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from crystaloop.data.crystal import Crystal
from crystaloop.data.elements import element_feature_table, n_element_features
from crystaloop.data.graphs import GraphConfig, crystals_to_batch

__all__ = ["StructureEncoderConfig", "StructureEncoder", "featurise"]


class StructureEncoderConfig(BaseModel):
    """Width and graph of the structure encoder (travels in the checkpoint)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    hidden: int = Field(64, ge=2)
    n_layers: int = Field(3, ge=1, le=8)
    n_rbf: int = Field(32, ge=2)
    cutoff: float = Field(5.0, gt=0.0, description="radius-graph cutoff, Å")
    max_neighbors: int | None = Field(16, ge=1, description="nearest neighbours kept per site (ties kept)")

    def graph(self) -> GraphConfig:
        return GraphConfig(kind="radius", cutoff=self.cutoff, max_neighbors=self.max_neighbors)


def featurise(crystals: Sequence[Crystal], config: StructureEncoderConfig):  # noqa: ANN201 - a PyG Batch
    """The PyG ``Batch`` the encoder reads (``atomic_numbers``, ``edge_index``, ``edge_vec`` Å, ``batch``)."""
    return crystals_to_batch(crystals, config.graph(), dtype=torch.get_default_dtype())


class _GatedLayer(nn.Module):
    def __init__(self, hidden: int, n_rbf: int) -> None:
        super().__init__()
        self.message = nn.Linear(2 * hidden + n_rbf, 2 * hidden)
        self.update = nn.Sequential(nn.Linear(hidden, hidden), nn.SiLU(), nn.Linear(hidden, hidden))
        self.norm = nn.LayerNorm(hidden)

    def forward(
        self, h: torch.Tensor, src: torch.Tensor, dst: torch.Tensor, edge: torch.Tensor, scale: torch.Tensor
    ) -> torch.Tensor:
        gate, value = self.message(torch.cat([h[dst], h[src], edge], dim=-1)).chunk(2, dim=-1)
        messages = torch.sigmoid(gate) * nn.functional.softplus(value)
        total = torch.zeros_like(h).index_add_(0, dst, messages) * scale
        return self.norm(h + self.update(total))


class StructureEncoder(nn.Module):
    """Crystal graph → (B, out_dim) latent (not normalised); invariant by construction.

    Args:
        out_dim: latent width.
        config: widths and graph settings.
    """

    def __init__(self, *, out_dim: int, config: StructureEncoderConfig | None = None) -> None:
        super().__init__()
        self.config = config or StructureEncoderConfig()
        c = self.config
        self.register_buffer("element_table", torch.from_numpy(element_feature_table().copy()), persistent=False)
        self.species = nn.Embedding(self.element_table.shape[0], c.hidden)
        self.descriptors = nn.Linear(n_element_features(), c.hidden)
        self.register_buffer("rbf_centres", torch.linspace(0.0, c.cutoff, c.n_rbf), persistent=False)
        self.layers = nn.ModuleList(_GatedLayer(c.hidden, c.n_rbf) for _ in range(c.n_layers))
        self.readout = nn.Sequential(nn.Linear(c.hidden, c.hidden), nn.SiLU(), nn.Linear(c.hidden, out_dim))

    def _edge_features(self, distance: torch.Tensor) -> torch.Tensor:
        """(E, n_rbf) Gaussian radial basis times a cosine envelope that reaches 0 at the cutoff."""
        width = self.config.cutoff / self.config.n_rbf
        rbf = torch.exp(-(((distance[:, None] - self.rbf_centres) / width) ** 2))
        envelope = 0.5 * (torch.cos(math.pi * distance.clamp(max=self.config.cutoff) / self.config.cutoff) + 1.0)
        return rbf * envelope[:, None]

    def forward(self, batch) -> torch.Tensor:  # noqa: ANN001 - a PyG Batch from featurise()
        numbers = batch.atomic_numbers
        dtype = self.descriptors.weight.dtype
        h = self.species(numbers) + self.descriptors(self.element_table[numbers].to(dtype))
        src, dst = batch.edge_index
        distance = batch.edge_vec.to(dtype).norm(dim=-1)
        edge = self._edge_features(distance)
        scale = torch.tensor(1.0 / math.sqrt(self.config.max_neighbors or 16), dtype=dtype)
        for layer in self.layers:
            h = layer(h, src, dst, edge, scale)
        n_crystals = int(batch.num_atoms.shape[0])
        pooled = torch.zeros(n_crystals, h.shape[1], dtype=dtype).index_add_(0, batch.batch, h)
        pooled = pooled / batch.num_atoms.to(dtype)[:, None]
        return self.readout(pooled)
