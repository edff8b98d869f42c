"""Periodic graphs of crystals, vectorised in torch (no pyg-lib or torch-cluster needed).

Two graph kinds serve the models in ``generator/``, ``surrogates/`` and ``multimodal/``:

* **radius graphs** (:func:`radius_graph_pbc`): every pair of sites, periodic images included,
  closer than a cutoff (Å), optionally capped to the nearest ``max_neighbors`` per site;
* **fully connected in-cell graphs** (:func:`fully_connected_graph`): every ordered pair of sites
  of one cell, with the fractional difference wrapped to [-0.5, 0.5) and the lattice image that
  achieves it, as periodic diffusion denoisers use.

Conventions for an edge ``e = (src, dst)`` with integer lattice image ``t`` (3,):
``edge_vec = (frac[dst] + t - frac[src]) @ lattice`` (Å), the vector from the source site to the
image of the destination site. Messages flow from ``src`` to ``dst`` in PyG's
``edge_index[0] → edge_index[1]`` order; both directions of every pair are present.

Work is chunked so that (pairs × images) per chunk stays under ``pair_budget``, which bounds
memory for any batch size.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Literal

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field

if TYPE_CHECKING:
    from torch_geometric.data import Batch, Data

    from crystaloop.data.crystal import Crystal

__all__ = [
    "GraphConfig",
    "radius_graph_pbc",
    "fully_connected_graph",
    "minimum_image_distances",
    "crystals_to_batch",
    "crystals_to_data_list",
    "stack_crystals",
]

_DEFAULT_PAIR_BUDGET = 2_000_000


class GraphConfig(BaseModel):
    """How to turn crystals into graphs; travels inside model checkpoints."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["radius", "fully_connected"] = "radius"
    cutoff: float = Field(5.0, gt=0, description="radius-graph cutoff, Å")
    max_neighbors: int | None = Field(None, gt=0, description="keep at most this many nearest neighbours per site")


def stack_crystals(crystals: Sequence[Crystal], dtype: torch.dtype = torch.float64) -> dict[str, torch.Tensor]:
    """Concatenate crystals into batch tensors.

    Returns:
        ``lattice`` (B, 3, 3) Å, ``frac_coords`` (N, 3), ``atomic_numbers`` (N,) int64,
        ``batch`` (N,) int64 crystal index per site, ``num_atoms`` (B,) int64.
    """
    if not crystals:
        raise ValueError("stack_crystals needs at least one crystal, got an empty sequence")
    num_atoms = torch.tensor([c.n_sites for c in crystals], dtype=torch.long)
    return {
        "lattice": torch.from_numpy(np.stack([c.lattice for c in crystals])).to(dtype),
        "frac_coords": torch.from_numpy(np.concatenate([c.frac_coords for c in crystals])).to(dtype),
        "atomic_numbers": torch.from_numpy(np.concatenate([c.numbers for c in crystals])),
        "batch": torch.repeat_interleave(torch.arange(len(crystals)), num_atoms),
        "num_atoms": num_atoms,
    }


def _plane_spacings(lattice: torch.Tensor) -> torch.Tensor:
    """(B, 3) distances between lattice planes (Å): 1 / |b_i| with b the reciprocal rows."""
    reciprocal = torch.linalg.inv(lattice).transpose(-1, -2)
    return 1.0 / torch.linalg.norm(reciprocal, dim=-1)


def _pair_index(num_atoms: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """All ordered in-cell pairs (i, j), including i == j, as global site indices.

    Pairs come crystal after crystal, ``i`` major, ``j`` minor; no Python loop over crystals.
    """
    num_atoms = num_atoms.long()
    pairs_per_crystal = num_atoms * num_atoms
    total = int(pairs_per_crystal.sum())
    n_of_pair = torch.repeat_interleave(num_atoms, pairs_per_crystal, output_size=total)
    first_pair = torch.cumsum(pairs_per_crystal, 0) - pairs_per_crystal
    first_site = torch.cumsum(num_atoms, 0) - num_atoms
    local = torch.arange(total, device=num_atoms.device) - torch.repeat_interleave(
        first_pair, pairs_per_crystal, output_size=total
    )
    start = torch.repeat_interleave(first_site, pairs_per_crystal, output_size=total)
    return start + local // n_of_pair, start + local % n_of_pair


def _runs(cost: torch.Tensor, budget: int) -> list[tuple[int, int]]:
    """Split items into consecutive [start, stop) runs whose summed ``cost`` stays under ``budget``.

    A single item dearer than the budget gets a run of its own. Vectorised: one ``searchsorted``
    per run, and there are few runs.
    """
    total = torch.cumsum(cost.long().cpu(), 0)
    n = int(total.numel())
    runs, start, spent = [], 0, 0
    while start < n:
        stop = int(torch.searchsorted(total, spent + budget, right=True))
        stop = max(stop, start + 1)
        runs.append((start, stop))
        spent = int(total[stop - 1])
        start = stop
    return runs


def _pair_candidates(
    wrapped: torch.Tensor, low: torch.Tensor, count: torch.Tensor, lattice_of_pair: torch.Tensor, reach_cart: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Lattice images of each pair that may lie within the cutoff, enumerated pair by pair.

    Args:
        wrapped: (P, 3) float64 wrapped fractional differences ``frac[dst] - frac[src]`` in
            [-0.5, 0.5] (detached).
        low: (P, 3) int64 first image per axis; ``count`` (P, 3) int64 images per axis, so pair
            ``p`` enumerates the box ``low[p] + [0, count[p])`` (lexicographic order).
        lattice_of_pair: (P, 3, 3) float64 lattice of each pair's crystal, Å.
        reach_cart: keep candidates at most this far (Å): the cutoff plus a rounding margin.

    Returns:
        pair (C,) int64 and image (C, 3) int64 (relative to ``wrapped``) of the candidates within
        ``reach_cart``, pair-major, images in lexicographic order within a pair.
    """
    per_pair = count.prod(dim=1)
    total = int(per_pair.sum())
    device = wrapped.device
    pair = torch.repeat_interleave(torch.arange(wrapped.shape[0], device=device), per_pair, output_size=total)
    k = torch.arange(total, device=device) - torch.repeat_interleave(
        torch.cumsum(per_pair, 0) - per_pair, per_pair, output_size=total
    )
    count_y, count_z = count[pair, 1], count[pair, 2]
    kz = k % count_z
    k = k // count_z
    image = low[pair] + torch.stack([k // count_y, k % count_y, kz], dim=1)
    lattice_c = lattice_of_pair[pair]
    base = torch.einsum("pj,pjl->pl", wrapped, lattice_of_pair)  # (P, 3) Å
    vec = base[pair] + torch.einsum("cj,cjl->cl", image.to(wrapped.dtype), lattice_c)
    keep = (vec * vec).sum(-1) <= reach_cart**2
    return pair[keep], image[keep]


def radius_graph_pbc(
    lattice: torch.Tensor,
    frac_coords: torch.Tensor,
    num_atoms: torch.Tensor,
    cutoff: float,
    *,
    max_neighbors: int | None = None,
    pair_budget: int = _DEFAULT_PAIR_BUDGET,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Periodic radius graph of a batch of crystals.

    Args:
        lattice: (B, 3, 3) row-vector lattices, Å.
        frac_coords: (N, 3) fractional coordinates of all sites, crystal after crystal.
        num_atoms: (B,) sites per crystal.
        cutoff: keep pairs with distance ≤ cutoff (Å); self-pairs only across a non-zero image.
        max_neighbors: if given, keep per destination site only the nearest ones (ties broken by
            edge order, deterministic).
        pair_budget: cap on the site pairs, and on the (pair, image) candidates, evaluated at
            once; bounds memory.

    Returns:
        edge_index (2, E) int64, edge_image (E, 3) int64 image of ``dst``, edge_vec (E, 3) Å.
        Edges come crystal after crystal, pair ``(src, dst)`` major (``src`` slowest), images in
        lexicographic order. ``edge_vec`` is differentiable with respect to ``lattice`` and
        ``frac_coords``.

    Search: for each pair only the images with ``|wrapped diff + image|_i ≤ cutoff / d_i`` per
    axis (``d_i`` the spacing of lattice planes) are enumerated, a box of side ``2 cutoff / d_i``
    around the wrapped difference; they are filtered in float64, then the kept edges are
    recomputed (differentiably, in the input dtype) and filtered exactly at ``cutoff``.
    """
    device = frac_coords.device
    num_atoms = num_atoms.to(device).long()
    lattice64 = lattice.detach().to(torch.float64)
    frac64 = frac_coords.detach().to(torch.float64)
    # Margin so that rounding never drops an image whose computed distance is the cutoff itself.
    reach_cart = cutoff + 1e-9 + 64 * torch.finfo(frac_coords.dtype).eps * cutoff
    reach = reach_cart / _plane_spacings(lattice64)  # (B, 3) in fractions of each axis
    first_site = torch.cumsum(num_atoms, 0) - num_atoms
    edge_index, edge_image, edge_vec = [], [], []
    for start, stop in _runs(num_atoms * num_atoms, pair_budget):
        src, dst = _pair_index(num_atoms[start:stop])
        src, dst = src + first_site[start], dst + first_site[start]
        crystal_of_pair = torch.repeat_interleave(
            torch.arange(start, stop, device=device), num_atoms[start:stop] ** 2, output_size=src.numel()
        )
        diff = frac64[dst] - frac64[src]
        wrap = torch.round(diff)
        wrapped = diff - wrap
        reach_of_pair = reach[crystal_of_pair]
        low = torch.ceil(-reach_of_pair - wrapped).long()
        count = (torch.floor(reach_of_pair - wrapped).long() - low + 1).clamp(min=0)
        for p0, p1 in _runs(count.prod(dim=1), pair_budget):
            pair, image = _pair_candidates(
                wrapped[p0:p1], low[p0:p1], count[p0:p1], lattice64[crystal_of_pair[p0:p1]], reach_cart
            )
            pair = pair + p0
            image = image - wrap[pair].long()  # image of dst for the unwrapped difference
            s, d = src[pair], dst[pair]
            shifted = frac_coords[d] - frac_coords[s] + image.to(frac_coords.dtype)
            vec = torch.einsum("ej,ejl->el", shifted, lattice[crystal_of_pair[pair]])
            keep = ((vec.detach() ** 2).sum(-1) <= cutoff**2) & ~((s == d) & (image == 0).all(-1))
            edge_index.append(torch.stack([s[keep], d[keep]]))
            edge_image.append(image[keep])
            edge_vec.append(vec[keep])
    if not edge_index:  # an empty batch
        return (
            torch.zeros((2, 0), dtype=torch.long, device=device),
            torch.zeros((0, 3), dtype=torch.long, device=device),
            frac_coords.new_zeros((0, 3)),
        )
    index = torch.cat(edge_index, dim=1)
    image = torch.cat(edge_image)
    vectors = torch.cat(edge_vec)
    if max_neighbors is not None and index.shape[1]:
        keep = _nearest_per_destination(index[1], vectors.detach().norm(dim=-1), max_neighbors)
        index, image, vectors = index[:, keep], image[keep], vectors[keep]
    return index, image, vectors


def _nearest_per_destination(dst: torch.Tensor, length: torch.Tensor, k: int) -> torch.Tensor:
    """Indices of the ``k`` shortest edges into each destination, in the original order."""
    order = torch.argsort(length, stable=True)
    order = order[torch.argsort(dst[order], stable=True)]
    sorted_dst = dst[order]
    group_start = torch.searchsorted(sorted_dst, sorted_dst, right=False)
    rank = torch.arange(sorted_dst.numel(), device=dst.device) - group_start
    return torch.sort(order[rank < k]).values


def fully_connected_graph(
    lattice: torch.Tensor, frac_coords: torch.Tensor, num_atoms: torch.Tensor, *, self_loops: bool = False
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """All ordered site pairs within each cell, with minimum-image fractional differences.

    Returns:
        edge_index (2, E), edge_image (E, 3) int64 chosen so that
        ``frac[dst] + image - frac[src]`` lies in [-0.5, 0.5) per axis, and that wrapped
        fractional difference (E, 3) (not Cartesian: denoisers on the torus want fractions).
    """
    src, dst = _pair_index(num_atoms.cpu())
    src, dst = src.to(frac_coords.device), dst.to(frac_coords.device)
    if not self_loops:
        keep = src != dst
        src, dst = src[keep], dst[keep]
    diff = frac_coords[dst] - frac_coords[src]
    image = -torch.floor(diff.detach() + 0.5)
    wrapped = diff + image
    return torch.stack([src, dst]), image.long(), wrapped


def minimum_image_distances(crystal: Crystal) -> np.ndarray:
    """(N, N) shortest distances in Å between sites i and j over all periodic images.

    The diagonal holds each site's distance to its own nearest image (the shortest lattice
    vector). Works on the Minkowski-reduced basis, where after wrapping the fractional
    difference into [-0.5, 0.5) the nearest image lies within two cells in every direction.
    """
    from crystaloop.data.canonical import reduced_basis

    reduced = reduced_basis(crystal.lattice)
    frac = np.linalg.solve(reduced.T, crystal.cart_coords.T).T
    diff = frac[None, :, :] - frac[:, None, :]
    diff -= np.round(diff)
    images = _IMAGES_5x5x5
    cart = (diff[:, :, None, :] + images[None, None, :, :]) @ reduced  # (N, N, 125, 3)
    dist = np.sqrt((cart**2).sum(-1))
    n = crystal.n_sites
    dist[np.arange(n), np.arange(n), _ZERO_IMAGE] = np.inf
    return dist.min(axis=-1)


_IMAGES_5x5x5 = np.array(np.meshgrid(*[np.arange(-2, 3)] * 3, indexing="ij"), dtype=np.float64).reshape(3, -1).T
_ZERO_IMAGE = int(np.flatnonzero((_IMAGES_5x5x5 == 0).all(axis=1))[0])


def _to_data(crystal_tensors: dict[str, torch.Tensor], edges: tuple[torch.Tensor, ...], kind: str) -> Data:
    from torch_geometric.data import Data

    edge_index, edge_image, edge_attr = edges
    data = Data(
        lattice=crystal_tensors["lattice"],
        frac_coords=crystal_tensors["frac_coords"],
        atomic_numbers=crystal_tensors["atomic_numbers"],
        num_atoms=crystal_tensors["num_atoms"],
        edge_index=edge_index,
        edge_image=edge_image,
        num_nodes=int(crystal_tensors["num_atoms"].sum()),
    )
    if kind == "radius":
        data.edge_vec = edge_attr
    else:
        data.edge_frac_diff = edge_attr
    return data


def _graph_edges(tensors: dict[str, torch.Tensor], config: GraphConfig) -> tuple[torch.Tensor, ...]:
    if config.kind == "radius":
        return radius_graph_pbc(
            tensors["lattice"],
            tensors["frac_coords"],
            tensors["num_atoms"],
            config.cutoff,
            max_neighbors=config.max_neighbors,
        )
    return fully_connected_graph(tensors["lattice"], tensors["frac_coords"], tensors["num_atoms"])


def crystals_to_batch(
    crystals: Sequence[Crystal], config: GraphConfig | None = None, dtype: torch.dtype = torch.float32
) -> Batch:
    """One PyG ``Batch`` for many crystals (edges computed in one vectorised pass).

    Fields: ``lattice`` (B, 3, 3) Å, ``frac_coords`` (N, 3), ``atomic_numbers`` (N,),
    ``num_atoms`` (B,), ``batch`` (N,), ``edge_index`` (2, E), ``edge_image`` (E, 3), and
    ``edge_vec`` (E, 3) Å for radius graphs or ``edge_frac_diff`` (E, 3) for fully connected ones.
    """
    from torch_geometric.data import Batch

    return Batch.from_data_list(crystals_to_data_list(crystals, config, dtype))


def crystals_to_data_list(
    crystals: Sequence[Crystal], config: GraphConfig | None = None, dtype: torch.dtype = torch.float32
) -> list[Data]:
    """One PyG ``Data`` per crystal (for datasets and DataLoaders), edges computed batched.

    ``Batch.from_data_list`` of the result equals :func:`crystals_to_batch` of the same crystals.
    """
    config = config or GraphConfig()
    tensors = stack_crystals(crystals, dtype=torch.float64)
    edge_index, edge_image, edge_attr = _graph_edges(tensors, config)
    site_start = torch.cumsum(tensors["num_atoms"], 0) - tensors["num_atoms"]
    edge_crystal = tensors["batch"][edge_index[0]]
    edge_counts = torch.bincount(edge_crystal, minlength=len(crystals)).tolist()
    order = torch.argsort(edge_crystal, stable=True)
    edge_index, edge_image, edge_attr = edge_index[:, order], edge_image[order], edge_attr[order]
    data_list = []
    edge_start = 0
    for b, n_edges in enumerate(edge_counts):
        sites = slice(int(site_start[b]), int(site_start[b] + tensors["num_atoms"][b]))
        edges = slice(edge_start, edge_start + n_edges)
        edge_start += n_edges
        per_crystal = {
            "lattice": tensors["lattice"][b : b + 1].to(dtype),
            "frac_coords": tensors["frac_coords"][sites].to(dtype),
            "atomic_numbers": tensors["atomic_numbers"][sites],
            "num_atoms": tensors["num_atoms"][b : b + 1],
        }
        local = (edge_index[:, edges] - site_start[b], edge_image[edges], edge_attr[edges].to(dtype))
        data_list.append(_to_data(per_crystal, local, config.kind))
    return data_list
