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

Radius search: each pair's fractional difference is wrapped into [-0.5, 0.5] and tried against
a per-crystal table of the lattice images that can bring it within the cutoff (chosen in float64
with a margin, so no edge is missed however skewed the cell); crystals with tables of similar
size are processed together as dense (pairs × images) blocks of at most ``_CHUNK`` candidates,
one Cartesian axis at a time. ``pair_budget`` bounds the memory for any batch size; neither
changes the result.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
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
_CHUNK = 1 << 17  # candidates per vectorised step: small enough to stay in cache


class GraphConfig(BaseModel):
    """How to turn crystals into graphs; travels inside model checkpoints."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["radius", "fully_connected"] = "radius"
    cutoff: float = Field(5.0, gt=0, description="radius-graph cutoff, Å")
    max_neighbors: int | None = Field(None, gt=0, description="keep this many nearest neighbours per site, plus any tied with the last")


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


def _image_tables(lattice64: torch.Tensor, reach: torch.Tensor, reach_cart: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Per crystal, the lattice images a wrapped pair difference can reach within the cutoff.

    A pair's wrapped fractional difference ``w`` lies in [-0.5, 0.5]^3, so an image ``t`` can
    bring it within the cutoff only if ``|t_i| <= floor(reach_i + 0.5)`` on every axis and the
    image vector ``t @ L`` lies within ``reach_cart`` plus the longest half-diagonal of the
    cell (the farthest ``w @ L`` can be from the origin).

    Args:
        lattice64: (B, 3, 3) float64 lattices, Å.
        reach: (B, 3) ``reach_cart / plane spacing`` per axis.
        reach_cart: the cutoff plus a rounding margin, Å.

    Returns:
        ``grid`` (K, 3) int64 images in lexicographic order (the box of the largest extents)
        and ``inside`` (B, K) bool, which of them each crystal needs.
    """
    extent = torch.floor(reach + 0.5).long()  # (B, 3)
    top = extent.max(dim=0).values.tolist()
    axes = [torch.arange(-n, n + 1, device=lattice64.device) for n in top]
    grid = torch.cartesian_prod(*axes).reshape(-1, 3)
    corners = torch.cartesian_prod(*[torch.tensor([-0.5, 0.5], dtype=torch.float64, device=lattice64.device)] * 3)
    half_diagonal = torch.linalg.norm(corners @ lattice64, dim=-1).max(dim=1).values  # (B,)
    vec = torch.einsum("kj,bjl->bkl", grid.to(torch.float64), lattice64)  # (B, K, 3)
    inside = (grid.abs()[None] <= extent[:, None, :]).all(-1)
    inside &= torch.linalg.norm(vec, dim=-1) <= (reach_cart + half_diagonal)[:, None]
    return grid, inside


def _buckets(n_images: torch.Tensor, slack: float = 1.25) -> list[tuple[torch.Tensor, int]]:
    """Group crystals whose image tables have similar sizes (largest at most ``slack`` × smallest).

    Returns:
        (crystal indices in ascending order, padded table size) per bucket, smallest tables first.
    """
    values, inverse = torch.unique(n_images, return_inverse=True)  # sorted ascending
    bucket_of_value: list[int] = []
    lows: list[int] = []
    tops: list[int] = []
    for value in values.tolist():
        if not lows or value > slack * lows[-1]:
            lows.append(value)
            tops.append(value)
        tops[-1] = value
        bucket_of_value.append(len(tops) - 1)
    bucket_of_crystal = torch.tensor(bucket_of_value, device=n_images.device)[inverse]
    return [(_nonzero(bucket_of_crystal == g), top) for g, top in enumerate(tops)]


def _nonzero(mask: torch.Tensor) -> torch.Tensor:
    """Flat indices of the true entries of a mask, (M,) int64 (numpy's on CPU: several times faster)."""
    if mask.device.type == "cpu":
        return torch.from_numpy(np.flatnonzero(mask.numpy()))
    return mask.reshape(-1).nonzero(as_tuple=True)[0]


def _columns(x: torch.Tensor) -> list[torch.Tensor]:
    """The columns of an (M, 3) tensor as contiguous (M,) tensors (1-D gathers are much faster)."""
    return [x[:, axis].contiguous() for axis in range(x.shape[1])]


def _crystal_blocks_in_order(edge_crystal: torch.Tensor, n_crystals: int) -> torch.Tensor | None:
    """Permutation putting contiguous per-crystal blocks of edges in crystal order (None if they are)."""
    if edge_crystal.numel() < 2 or not bool((edge_crystal[1:] < edge_crystal[:-1]).any()):
        return None
    block_start = torch.cat(
        [edge_crystal.new_zeros(1), _nonzero(edge_crystal[1:] != edge_crystal[:-1]).to(edge_crystal.device) + 1]
    )
    counts = torch.bincount(edge_crystal, minlength=n_crystals)
    found_at = torch.zeros(n_crystals, dtype=torch.long, device=edge_crystal.device)
    found_at[edge_crystal[block_start]] = block_start
    wanted_at = torch.cumsum(counts, 0) - counts
    total = edge_crystal.numel()
    return torch.arange(total, device=edge_crystal.device) + torch.repeat_interleave(
        found_at - wanted_at, counts, output_size=total
    )


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
        max_neighbors: if given, keep per destination site the nearest ones plus every
            neighbour tied (within 1e-4 Å) with the last kept, so the graph does not depend on
            site order.
        pair_budget: cap on the site pairs, and on the (pair, image) candidates, evaluated at
            once; bounds memory.

    Returns:
        edge_index (2, E) int64, edge_image (E, 3) int64 image of ``dst``, edge_vec (E, 3) Å.
        Edges come crystal after crystal, pair ``(src, dst)`` major (``src`` slowest), images in
        lexicographic order. ``edge_vec`` is differentiable with respect to ``lattice`` and
        ``frac_coords``; it equals ``(frac[dst] + image - frac[src]) @ lattice`` up to rounding.
    """
    chunks = list(_radius_chunks(lattice, frac_coords, num_atoms, cutoff, pair_budget))
    if not chunks:  # an empty batch
        return (
            torch.zeros((2, 0), dtype=torch.long, device=frac_coords.device),
            torch.zeros((0, 3), dtype=torch.long, device=frac_coords.device),
            frac_coords.new_zeros((0, 3)),
        )
    crystal, src, dst, image, vectors = (torch.cat(column) for column in zip(*chunks, strict=True))
    index = torch.stack([src, dst])
    order = _crystal_blocks_in_order(crystal, int(num_atoms.numel()))
    if order is not None:
        index, image, vectors = index[:, order], image[order], vectors[order]
    if max_neighbors is not None and index.shape[1]:
        keep = _nearest_per_destination(index[1], vectors.detach().norm(dim=-1), max_neighbors)
        index, image, vectors = index[:, keep], image[keep], vectors[keep]
    return index, image, vectors


def _radius_chunks(
    lattice: torch.Tensor, frac_coords: torch.Tensor, num_atoms: torch.Tensor, cutoff: float, pair_budget: int
) -> Iterator[tuple[torch.Tensor, ...]]:
    """The edges of :func:`radius_graph_pbc` (no ``max_neighbors``), a chunk at a time.

    Each pair's fractional difference is wrapped to ``w`` in [-0.5, 0.5]^3 and tried against its
    crystal's table of reachable images ``t`` (:func:`_image_tables`, chosen in float64 with a
    margin); ``w @ L + t @ L`` is computed in the input dtype and kept when its length is at
    most ``cutoff``. Crystals with similar table sizes (:func:`_buckets`) are processed together
    as dense (pairs × images) blocks of at most ``_CHUNK`` candidates, one Cartesian axis at a
    time, so every array stays small.

    Yields:
        (crystal (E,), src (E,), dst (E,), image (E, 3), edge_vec (E, 3)) per chunk. Within a
        chunk edges come crystal after crystal (ascending), each crystal's in the final order; a
        crystal's edges may continue in the next chunk, and chunks of different buckets are not
        in crystal order.
    """
    device = frac_coords.device
    num_atoms = num_atoms.to(device).long()
    lattice64 = lattice.detach().to(torch.float64)
    # Margin so that rounding never drops an image whose computed distance is the cutoff itself.
    reach_cart = cutoff + 1e-9 + 64 * torch.finfo(frac_coords.dtype).eps * cutoff
    reach = reach_cart / _plane_spacings(lattice64)  # (B, 3) in fractions of each axis
    first_site = torch.cumsum(num_atoms, 0) - num_atoms
    pairs = num_atoms * num_atoms
    chunk = max(1, min(pair_budget, _CHUNK))
    for start, stop in _runs(pairs, pair_budget):
        grid, inside = _image_tables(lattice64[start:stop], reach[start:stop], reach_cart)
        n_images = inside.sum(dim=1)
        # Slot s of crystal b holds image grid[slot_to_grid[b, s]]: the crystal's images first, lex order.
        slot_to_grid = torch.argsort((~inside).to(torch.uint8), dim=1, stable=True)
        zero_slot = inside[:, : int(_nonzero((grid == 0).all(-1))[0])].sum(dim=1)
        image_vec = torch.einsum("kj,bjl->bkl", grid.to(lattice.dtype), lattice[start:stop])  # (b, K, 3) Å
        src, dst = _pair_index(num_atoms[start:stop])
        src, dst = src + first_site[start], dst + first_site[start]
        local_crystal = torch.repeat_interleave(
            torch.arange(stop - start, device=device), pairs[start:stop], output_size=src.numel()
        )
        first_pair = torch.cumsum(pairs[start:stop], 0) - pairs[start:stop]
        diff = frac_coords[dst] - frac_coords[src]
        wrap = torch.round(diff.detach())
        wrapped = _columns(torch.einsum("pj,pjl->pl", diff - wrap, lattice[start + local_crystal]))
        grid_columns, wrap_columns = _columns(grid), _columns(wrap.long())
        for crystals, width in _buckets(n_images):
            slots = slot_to_grid[crystals, :width]
            missing = torch.arange(width, device=device)[None, :] >= n_images[crystals, None]
            tables = [  # (bucket crystals, width) per axis, inf where a crystal has fewer images
                image_vec[crystals[:, None], slots, axis].masked_fill(missing, float("inf")) for axis in range(3)
            ]
            counts = pairs[start:stop][crystals]
            bucket_pairs = torch.arange(int(counts.sum()), device=device) + torch.repeat_interleave(
                first_pair[crystals] - (torch.cumsum(counts, 0) - counts), counts
            )
            row_of_pair = torch.repeat_interleave(torch.arange(crystals.numel(), device=device), counts)
            step = max(1, chunk // width)
            for p0 in range(0, bucket_pairs.numel(), step):
                pair, row = bucket_pairs[p0 : p0 + step], row_of_pair[p0 : p0 + step]
                components, dist2 = [], None
                for table, w in zip(tables, wrapped, strict=True):
                    # (pairs, width); in place: fresh allocations cost more than the arithmetic here
                    component = table.index_select(0, row).add_(w.index_select(0, pair).unsqueeze(1))
                    components.append(component)
                    c = component.detach()
                    dist2 = c.square() if dist2 is None else dist2.addcmul_(c, c)
                self_pair = _nonzero(src.index_select(0, pair) == dst.index_select(0, pair)).to(device)
                dist2[self_pair, zero_slot[crystals[row[self_pair]]]] = float("inf")
                keep = _nonzero(dist2 <= cutoff**2).to(device)
                kept_pair = pair.index_select(0, keep // width)
                kept_crystal = local_crystal.index_select(0, kept_pair)
                kept_grid = slot_to_grid.view(-1).index_select(0, kept_crystal * grid.shape[0] + keep % width)
                image = [
                    g.index_select(0, kept_grid) - k.index_select(0, kept_pair)
                    for g, k in zip(grid_columns, wrap_columns, strict=True)
                ]
                yield (
                    kept_crystal + start,
                    src.index_select(0, kept_pair),
                    dst.index_select(0, kept_pair),
                    torch.stack(image, dim=1),
                    torch.stack([c.view(-1).index_select(0, keep) for c in components], dim=1),
                )


def _nearest_per_destination(dst: torch.Tensor, length: torch.Tensor, k: int, tie_tol: float = 1e-4) -> torch.Tensor:
    """Indices of the ``k`` shortest edges into each destination, plus every edge tied with the
    k-th (within ``tie_tol`` Å), in the original order.

    Keeping the whole tied shell makes the graph independent of site order: symmetric
    neighbours at equal distance are all kept or all dropped, never picked by edge order.
    """
    order = torch.argsort(length, stable=True)
    order = order[torch.argsort(dst[order], stable=True)]
    sorted_dst = dst[order]
    group_start = torch.searchsorted(sorted_dst, sorted_dst, right=False)
    rank = torch.arange(sorted_dst.numel(), device=dst.device) - group_start
    threshold = torch.full((int(dst.max()) + 1,), float("inf"), dtype=length.dtype, device=dst.device)
    kth = rank == k - 1
    threshold[sorted_dst[kth]] = length[order[kth]] + tie_tol
    return torch.nonzero(length <= threshold[dst]).flatten()


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
    n = crystal.n_sites
    result = np.empty((n, n))
    rows = max(1, _MIN_IMAGE_BUDGET // (n * len(_IMAGES_5x5x5)))  # bounds memory for large cells
    for start in range(0, n, rows):
        diff = frac[None, :, :] - frac[start : start + rows, None, :]  # (rows, N, 3)
        diff -= np.round(diff)
        cart = (diff[:, :, None, :] + _IMAGES_5x5x5[None, None, :, :]) @ reduced  # (rows, N, 125, 3)
        dist = np.sqrt((cart**2).sum(-1))
        own = np.arange(start, min(start + rows, n))
        dist[own - start, own, _ZERO_IMAGE] = np.inf
        result[start : start + rows] = dist.min(axis=-1)
    return result


_MIN_IMAGE_BUDGET = 1 << 20  # (pairs × images) per step of minimum_image_distances
_IMAGES_5x5x5 = np.array(np.meshgrid(*[np.arange(-2, 3)] * 3, indexing="ij"), dtype=np.float64).reshape(3, -1).T
_ZERO_IMAGE = int(np.flatnonzero((_IMAGES_5x5x5 == 0).all(axis=1))[0])


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
    Fields per crystal as in :func:`crystals_to_batch` (``lattice`` (1, 3, 3), ``num_atoms``
    (1,), ``edge_index`` local to the crystal).
    """
    config = config or GraphConfig()
    tensors = stack_crystals(crystals, dtype=torch.float64)
    num_atoms = tensors["num_atoms"]
    site_start = torch.cumsum(num_atoms, 0) - num_atoms
    if config.kind == "radius" and config.max_neighbors is None:
        # Straight from the search's chunks to per-crystal pieces: no edge array of the whole
        # batch is ever built (big arrays cost page faults and cache misses, not arithmetic).
        pieces: list[list[tuple[torch.Tensor, ...]]] = [[] for _ in crystals]
        chunks = _radius_chunks(
            tensors["lattice"], tensors["frac_coords"], num_atoms, config.cutoff, _DEFAULT_PAIR_BUDGET
        )
        for crystal, src, dst, image, vec in chunks:
            ids, counts = torch.unique_consecutive(crystal, return_counts=True)
            local = torch.stack([src, dst]) - site_start.index_select(0, crystal)
            sizes = counts.tolist()
            parts = zip(
                ids.tolist(), local.split(sizes, dim=1), image.split(sizes), vec.to(dtype).split(sizes), strict=True
            )
            for b, *part in parts:
                pieces[b].append(tuple(part))
        edges = [_join_pieces(p, dtype) for p in pieces]
    else:
        edge_index, edge_image, edge_attr = _graph_edges(tensors, config)
        edge_crystal = tensors["batch"][edge_index[0]]
        sizes = torch.bincount(edge_crystal, minlength=len(crystals)).tolist()  # edges come crystal after crystal
        local = edge_index - site_start[edge_crystal]
        edges = list(
            zip(local.split(sizes, dim=1), edge_image.split(sizes), edge_attr.to(dtype).split(sizes), strict=True)
        )
    attr_name = "edge_vec" if config.kind == "radius" else "edge_frac_diff"
    sites = num_atoms.tolist()
    columns = zip(
        tensors["lattice"].to(dtype).split(1),
        tensors["frac_coords"].to(dtype).split(sites),
        tensors["atomic_numbers"].split(sites),
        num_atoms.split(1),
        edges,
        sites,
        strict=True,
    )
    return [
        _make_data(
            {  # the order Data(**fields) would store them in
                "edge_index": index,
                "lattice": lattice,
                "frac_coords": frac,
                "atomic_numbers": numbers,
                "num_atoms": count,
                "edge_image": image,
                "num_nodes": n_sites,
                attr_name: attr,
            }
        )
        for lattice, frac, numbers, count, (index, image, attr), n_sites in columns
    ]


def _join_pieces(pieces: list[tuple[torch.Tensor, ...]], dtype: torch.dtype) -> tuple[torch.Tensor, ...]:
    """One crystal's (edge_index, edge_image, edge_vec) from the chunks it was found in."""
    if len(pieces) == 1:
        return pieces[0]
    if not pieces:
        return (
            torch.zeros((2, 0), dtype=torch.long),
            torch.zeros((0, 3), dtype=torch.long),
            torch.zeros((0, 3), dtype=dtype),
        )
    return (
        torch.cat([p[0] for p in pieces], dim=1),
        torch.cat([p[1] for p in pieces]),
        torch.cat([p[2] for p in pieces]),
    )


def _make_data(fields: dict[str, torch.Tensor | int]) -> Data:
    """``Data(**fields)``, built without PyG's per-attribute ``__setattr__``.

    ``Data(**fields)`` routes every attribute through ``Data.__setattr__`` and the storage's
    cache bookkeeping (~60 µs per crystal, more than the edge search of a small crystal). A new
    ``Data`` has an empty storage, so filling its mapping directly gives the same object; if a
    PyG release changes that layout we fall back to the public constructor.
    """
    from torch_geometric.data import Data

    data = Data()
    mapping = getattr(data.__dict__.get("_store"), "_mapping", None)
    if not isinstance(mapping, dict) or mapping:
        return Data(**fields)
    mapping.update(fields)
    return data
