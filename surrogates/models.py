"""Invariant periodic GNNs that predict crystal properties.

Two architectures, trained by the same code path (:mod:`crystaloop.surrogates.training`):

* ``mpnn``: crystaloop's property network. Atoms start from physical element descriptors plus a
  learned embedding; edges carry a Gaussian expansion of the interatomic distance times a smooth
  cosine cutoff; each interaction block forms messages from (sender, receiver, distance) with an
  MLP gated by a distance filter, sums them, and updates atoms through a residual MLP with layer
  normalisation. With ``angular_degree = L > 0`` (the default) each block also gives every atom
  three-body information: the messages arriving at an atom, projected to a few channels, are
  spread on real spherical harmonics of the bond directions up to degree L (a neighbour
  density, as in ACE, Drautz, PRB 99, 014104, 2019, and MACE, Batatia et al., NeurIPS 2022), and
  the rotation-invariant contractions Σ_m A_lm·A'_lm of two such densities, which are sums over
  neighbour pairs weighted by Legendre polynomials of their bond angles, enter the atom update.
  This costs O(edges·channels·(L+1)²) instead of the O(edges × neighbours) of explicit triplets.
  ``angular_degree = 0`` is the distance-only network of the first release (checkpoints written
  before the option existed load as such). A mean over atoms gives the crystal embedding, and a
  head predicts each target's mean and log-variance (heteroscedastic, so each ensemble member has
  its own noise estimate).
* ``cgcnn``: the CGCNN baseline (Xie & Grossman, PRL 120, 145301, 2018): PyG's ``CGConv`` layers
  with batch normalisation on the same inputs, mean pooling and an MLP head with the same outputs.

Both see only interatomic distances, species and (mpnn) rotation-invariant contractions of bond
directions, so their outputs are invariant to rotation, translation, site permutation and choice
of lattice basis; with mean pooling and local messages, a supercell gives the same (intensive)
prediction.

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

__all__ = ["GaussianDistances", "real_spherical_harmonics", "MPNNProperty", "CGCNNProperty", "ARCHITECTURES", "build_model"]


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


def real_spherical_harmonics(unit: torch.Tensor, degree: int) -> torch.Tensor:
    """Real spherical harmonics of unit vectors (E, 3) for l = 0..degree (≤ 3): (E, (degree+1)²).

    Normalised so that, within each degree l, Σ_m Y_lm(u)·Y_lm(v) = P_l(u·v) (the Legendre
    polynomial): the per-degree contraction of two neighbour densities is rotation invariant.
    Columns are ordered l = 0, then l = 1 (3 columns), l = 2 (5), l = 3 (7).
    """
    if not 0 <= degree <= 3:
        raise ValueError(f"angular degree must be 0..3, got {degree}")
    x, y, z = unit.unbind(-1)
    columns = [torch.ones_like(x)]
    if degree >= 1:
        columns += [x, y, z]
    if degree >= 2:
        r3 = math.sqrt(3.0)
        columns += [r3 * x * y, r3 * y * z, 0.5 * (3 * z * z - 1), r3 * x * z, 0.5 * r3 * (x * x - y * y)]
    if degree >= 3:
        a, b, c = math.sqrt(5.0 / 8.0), math.sqrt(15.0), math.sqrt(3.0 / 8.0)
        five_z2 = 5 * z * z
        columns += [
            a * y * (3 * x * x - y * y),
            b * x * y * z,
            c * y * (five_z2 - 1),
            0.5 * z * (five_z2 - 3),
            c * x * (five_z2 - 1),
            0.5 * b * z * (x * x - y * y),
            a * x * (x * x - 3 * y * y),
        ]
    return torch.stack(columns, dim=-1)


class AngularDensity(nn.Module):
    """Per-atom three-body invariants from the messages arriving at each atom.

    Two linear projections of the messages (E, H) → (E, C) are spread on the spherical harmonics
    of the bond directions and averaged per receiving atom: A, A' (N, C, (L+1)²). Their
    per-degree contraction B[n, c, l] = Σ_m A[n, c, lm]·A'[n, c, lm] equals the neighbour-pair
    average of a_c(k)·a'_c(i)·P_l(cos θ_kni) over neighbours k, i of atom n (the diagonal k = i
    included, a two-body term), an angle-resolved three-body feature at the cost of one pass over
    edges. Returns (N, C·(L+1)), layer-normalised: products of two averaged
    projections are orders of magnitude smaller than the messages at initialisation.
    """

    def __init__(self, hidden: int, channels: int, degree: int) -> None:
        super().__init__()
        self.first = nn.Linear(hidden, channels, bias=False)
        self.second = nn.Linear(hidden, channels, bias=False)
        self.degree = degree
        self.norm = nn.LayerNorm(channels * (degree + 1))
        self.register_buffer("degree_of_column", torch.repeat_interleave(torch.arange(degree + 1), 2 * torch.arange(degree + 1) + 1))

    def forward(self, messages: torch.Tensor, dst: torch.Tensor, harmonics: torch.Tensor, n_atoms: int) -> torch.Tensor:
        channels = torch.cat([self.first(messages), self.second(messages)], dim=-1)  # (E, 2C)
        densities = scatter(channels[:, :, None] * harmonics[:, None, :], dst, dim=0, dim_size=n_atoms, reduce="mean")
        first, second = densities.chunk(2, dim=1)
        products = first * second  # (N, C, (L+1)²)
        per_degree = torch.zeros(n_atoms, products.shape[1], self.degree + 1, dtype=products.dtype, device=products.device)
        per_degree.index_add_(2, self.degree_of_column, products)
        return self.norm(per_degree.flatten(1))


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
    """Distance-gated messages, summed per receiver, residual update with layer norm.

    With ``angular_degree > 0`` the update also sees the :class:`AngularDensity` invariants of
    the same messages (``harmonics`` of the bond directions must then be given).
    """

    def __init__(self, hidden: int, n_gaussians: int, angular_degree: int = 0, angular_channels: int = 16) -> None:
        super().__init__()
        self.message = nn.Sequential(nn.Linear(2 * hidden + n_gaussians, hidden), nn.SiLU(), nn.Linear(hidden, hidden))
        self.filter = nn.Linear(n_gaussians, hidden)
        angular_width = angular_channels * (angular_degree + 1) if angular_degree else 0
        self.angular = AngularDensity(hidden, angular_channels, angular_degree) if angular_degree else None
        self.update = nn.Sequential(nn.Linear(2 * hidden + angular_width, hidden), nn.SiLU(), nn.Linear(hidden, hidden))
        self.norm = nn.LayerNorm(hidden)

    def forward(self, h: torch.Tensor, edge_index: torch.Tensor, rbf: torch.Tensor, harmonics: torch.Tensor | None = None) -> torch.Tensor:
        src, dst = edge_index
        messages = self.message(torch.cat([h[src], h[dst], rbf], dim=-1)) * self.filter(rbf)
        parts = [h, scatter(messages, dst, dim=0, dim_size=h.shape[0], reduce="sum")]
        if self.angular is not None:
            if harmonics is None:
                raise ValueError("an angular interaction block needs the spherical harmonics of the bond directions")
            parts.append(self.angular(messages, dst, harmonics, h.shape[0]))
        return self.norm(h + self.update(torch.cat(parts, dim=-1)))


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

    def __init__(
        self,
        *,
        n_targets: int,
        hidden: int = 64,
        layers: int = 3,
        n_gaussians: int = 32,
        cutoff: float = 5.0,
        angular_degree: int = 3,
        angular_channels: int = 16,
    ) -> None:
        super().__init__()
        self.atoms = AtomEncoder(hidden)
        self.distances = GaussianDistances(cutoff, n_gaussians)
        self.angular_degree = angular_degree
        self.blocks = nn.ModuleList(InteractionBlock(hidden, n_gaussians, angular_degree, angular_channels) for _ in range(layers))
        self.readout = nn.Sequential(nn.Linear(hidden, hidden), nn.SiLU())
        self.head = _PropertyHead(hidden, n_targets)

    def embed(self, batch) -> torch.Tensor:  # noqa: ANN001
        """(B, hidden) crystal embeddings (mean over atoms)."""
        h = self.atoms(batch.atomic_numbers)
        lengths = _edge_lengths(batch)
        rbf = self.distances(lengths)
        harmonics = None
        if self.angular_degree:
            harmonics = real_spherical_harmonics(batch.edge_vec / lengths.clamp_min(1e-9)[:, None], self.angular_degree)
        for block in self.blocks:
            h = block(h, batch.edge_index, rbf, harmonics)
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
