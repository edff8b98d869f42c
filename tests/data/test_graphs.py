"""Periodic graphs: radius graphs against pymatgen, invariances, batching, gradients, min-image.

Edge convention under test: ``edge_vec = (frac[dst] + image - frac[src]) @ lattice``, which is
pymatgen's ``get_neighbor_list`` with ``src`` the centre, ``dst`` the neighbour and ``image``
its offset vector.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from crystaloop.data.crystal import Crystal
from crystaloop.data.datasets import load_dataset
from crystaloop.data.graphs import (
    GraphConfig,
    crystals_to_batch,
    crystals_to_data_list,
    fully_connected_graph,
    minimum_image_distances,
    radius_graph_pbc,
    stack_crystals,
)
from crystaloop.data.testing import (
    apply_basis_change,
    assert_equivariant_sites,
    assert_invariant,
    make_supercell,
    permute_sites,
    random_crystal,
)

CUTOFF = 5.0
BAND = 1e-6  # edges this close to the cutoff may fall either side in either code; not compared
SKEWED_BASES = (  # unimodular integer matrices: the same lattice written with long, slanted vectors
    np.array([[1, 2, 0], [0, 1, 1], [1, 2, 1]]),
    np.array([[1, 1, 1], [0, 1, 2], [0, 0, 1]]),
    np.array([[2, 1, 0], [1, 1, 0], [3, 1, 1]]),
)


@pytest.fixture(scope="module")
def dataset_crystals() -> list[Crystal]:
    """20 perov_5 and 20 carbon_24 validation structures (cache in the session's temp folder)."""
    from crystaloop.data.datasets import load_dataset

    return [c for name in ("perov_5/val", "carbon_24/val") for c in load_dataset(name, max_rows=20).crystals]


def _random_crystals(seed: int, count: int) -> list[Crystal]:
    rng = np.random.default_rng(seed)
    return [random_crystal(rng, n_sites=int(rng.integers(1, 9))) for _ in range(count)]


def _special_cells() -> list[Crystal]:
    """Skewed cells and cells much smaller than the cutoff, where naive image searches fail."""
    rng = np.random.default_rng(21)
    skewed = [apply_basis_change(random_crystal(rng, n_sites=4), basis) for basis in SKEWED_BASES]
    tiny = Crystal(np.eye(3) * 1.9, [[0.1, 0.2, 0.3]], [6])  # one atom, cell far below the cutoff
    needle = Crystal([[2.2, 0, 0], [0, 9.0, 0], [0.3, 0.4, 2.4]], [[0, 0, 0], [0.5, 0.5, 0.5]], [14, 8])
    flat = Crystal([[4.0, 0, 0], [3.9, 0.9, 0], [0.1, 0.2, 3.1]], [[0.1, 0.1, 0.1], [0.6, 0.5, 0.4]], [3, 9])
    return [*skewed, tiny, needle, flat]


def _edges(crystal: Crystal, cutoff: float = CUTOFF, **kwargs) -> tuple[np.ndarray, ...]:
    tensors = stack_crystals([crystal])
    index, image, vec = radius_graph_pbc(
        tensors["lattice"], tensors["frac_coords"], tensors["num_atoms"], cutoff, **kwargs
    )
    return index.numpy(), image.numpy(), vec.numpy()


def _table(src, dst, image, distance, cutoff: float) -> dict[tuple[int, ...], float]:
    keep = np.abs(np.asarray(distance) - cutoff) > BAND
    rows = np.column_stack([src, dst, np.round(image).astype(np.int64)])[keep]
    keys = [tuple(int(v) for v in row) for row in rows]
    assert len(set(keys)) == len(keys), "an edge is listed twice"
    return dict(zip(keys, np.asarray(distance)[keep].tolist(), strict=True))


def _assert_same_as_pymatgen(crystal: Crystal, cutoff: float, index, image, vec) -> None:
    centre, neighbour, offset, distance = crystal.to_pymatgen().get_neighbor_list(cutoff)
    ours = _table(index[0], index[1], image, np.linalg.norm(vec, axis=1), cutoff)
    theirs = _table(centre, neighbour, offset, distance, cutoff)
    assert ours.keys() == theirs.keys(), f"{crystal}: {len(ours)} edges vs pymatgen's {len(theirs)}"
    np.testing.assert_allclose([ours[k] for k in theirs], list(theirs.values()), atol=1e-6, rtol=0)
    assert np.linalg.norm(vec, axis=1).max(initial=0.0) <= cutoff


def test_radius_graph_matches_pymatgen_on_datasets(dataset_crystals: list[Crystal]) -> None:
    tensors = stack_crystals(dataset_crystals)
    index, image, vec = radius_graph_pbc(tensors["lattice"], tensors["frac_coords"], tensors["num_atoms"], CUTOFF)
    site_start = (torch.cumsum(tensors["num_atoms"], 0) - tensors["num_atoms"]).tolist()
    crystal_of_edge = tensors["batch"][index[0]].numpy()
    assert (np.diff(crystal_of_edge) >= 0).all(), "edges must come crystal after crystal"
    for b, crystal in enumerate(dataset_crystals):
        mine = crystal_of_edge == b
        local = index[:, mine].numpy() - site_start[b]
        _assert_same_as_pymatgen(crystal, CUTOFF, local, image[mine].numpy(), vec[mine].numpy())


@pytest.mark.parametrize("cutoff", [2.5, CUTOFF, 7.0])
def test_radius_graph_matches_pymatgen_on_skewed_and_tiny_cells(cutoff: float) -> None:
    for crystal in _special_cells() + _random_crystals(22, 4):
        _assert_same_as_pymatgen(crystal, cutoff, *_edges(crystal, cutoff))


def test_edge_vectors_follow_the_convention() -> None:
    for crystal in _special_cells():
        index, image, vec = _edges(crystal)
        expected = (crystal.frac_coords[index[1]] + image - crystal.frac_coords[index[0]]) @ crystal.lattice
        np.testing.assert_allclose(vec, expected, atol=1e-12)
        self_loop = (index[0] == index[1]) & (image == 0).all(axis=1)
        assert not self_loop.any()
        # both directions of every edge are present
        forward = {(s, d, *t) for s, d, t in zip(index[0], index[1], image.tolist(), strict=True)}
        assert forward == {(d, s, *(-np.array(t))) for s, d, t in zip(index[0], index[1], image.tolist(), strict=True)}


def _site_neighbour_distances(crystal: Crystal, width: int = 160) -> np.ndarray:
    """(N, width): per site (as source), its sorted edge lengths, padded with -1."""
    index, _, vec = _edges(crystal)
    length = np.linalg.norm(vec, axis=1)
    table = np.full((crystal.n_sites, width), -1.0)
    for site in range(crystal.n_sites):
        row = np.sort(length[index[0] == site])
        assert len(row) <= width
        table[site, : len(row)] = row
    return table


def _all_edge_lengths(crystal: Crystal) -> np.ndarray:
    return np.sort(np.linalg.norm(_edges(crystal)[2], axis=1))


def test_radius_graph_is_invariant(dataset_crystals: list[Crystal]) -> None:
    rng = np.random.default_rng(23)
    for crystal in [*dataset_crystals[::7], *_random_crystals(24, 3), *_special_cells()[:2]]:
        assert_equivariant_sites(_site_neighbour_distances, crystal, rng=rng)
        assert_invariant(_all_edge_lengths, crystal, rng=rng)


@pytest.mark.parametrize("reps", [(2, 1, 1), (1, 2, 2)])
def test_supercell_sites_see_the_same_neighbours(reps: tuple[int, int, int], dataset_crystals: list[Crystal]) -> None:
    for crystal in [dataset_crystals[0], dataset_crystals[25], *_random_crystals(25, 2)]:
        supercell, site_map = make_supercell(crystal, reps)
        np.testing.assert_allclose(
            _site_neighbour_distances(supercell), _site_neighbour_distances(crystal)[site_map], atol=1e-9
        )


def test_max_neighbors_keeps_the_nearest() -> None:
    for crystal in _random_crystals(26, 4):
        index, image, vec = _edges(crystal)
        length = np.linalg.norm(vec, axis=1)
        k_index, k_image, k_vec = _edges(crystal, max_neighbors=3)
        k_length = np.linalg.norm(k_vec, axis=1)
        for site in range(crystal.n_sites):
            nearest = np.sort(length[index[1] == site])[:3]
            np.testing.assert_allclose(np.sort(k_length[k_index[1] == site]), nearest, atol=1e-12)
        kept = {(s, d, *t) for s, d, t in zip(k_index[0], k_index[1], k_image.tolist(), strict=True)}
        full = {(s, d, *t) for s, d, t in zip(index[0], index[1], image.tolist(), strict=True)}
        assert kept <= full


def test_max_neighbors_keeps_whole_tied_shells() -> None:
    """Cutting through a shell of equidistant neighbours would make the graph depend on site order."""
    cubic = Crystal(np.eye(3) * 3.0, [[0, 0, 0]], [29])  # six neighbours at exactly 3 Å
    index, _, _ = _edges(cubic, cutoff=4.5, max_neighbors=4)
    full_index, _, full_vec = _edges(cubic, cutoff=4.5)
    assert full_index.shape[1] == 18  # 6 at 3 Å and 12 at 4.24 Å
    assert index.shape[1] == 6  # the whole first shell, nothing of the second
    perovskite = load_dataset("perov_5/val", max_rows=3).crystals[2]
    rng = np.random.default_rng(5)
    reference = sorted(np.round(np.linalg.norm(_edges(perovskite, max_neighbors=7)[2], axis=1), 6).tolist())
    for _ in range(5):
        permuted, _ = permute_sites(perovskite, rng)
        assert sorted(np.round(np.linalg.norm(_edges(permuted, max_neighbors=7)[2], axis=1), 6).tolist()) == reference


def test_fully_connected_graph_wraps_into_half_cell() -> None:
    crystals = _random_crystals(27, 5)
    tensors = stack_crystals(crystals)
    index, image, wrapped = fully_connected_graph(tensors["lattice"], tensors["frac_coords"], tensors["num_atoms"])
    n = tensors["num_atoms"]
    assert index.shape[1] == int((n * (n - 1)).sum())
    assert (index[0] != index[1]).all()
    assert (tensors["batch"][index[0]] == tensors["batch"][index[1]]).all()
    assert wrapped.min() >= -0.5 and wrapped.max() < 0.5
    frac = tensors["frac_coords"]
    torch.testing.assert_close(frac[index[1]] + image - frac[index[0]], wrapped, atol=1e-12, rtol=0)
    assert image.dtype == torch.long
    loops, _, _ = fully_connected_graph(tensors["lattice"], frac, n, self_loops=True)
    assert loops.shape[1] == int((n * n).sum())


def test_gradients_flow_to_lattice_and_coordinates() -> None:
    crystal = _random_crystals(28, 1)[0]
    lattice = torch.tensor(crystal.lattice[None], requires_grad=True)
    frac = torch.tensor(crystal.frac_coords, requires_grad=True)
    num_atoms = torch.tensor([crystal.n_sites])

    def energy(lattice: torch.Tensor, frac: torch.Tensor) -> torch.Tensor:
        _, _, vec = radius_graph_pbc(lattice, frac, num_atoms, 4.0)
        return torch.exp(-vec.norm(dim=-1)).sum()

    energy(lattice, frac).backward()
    for grad in (lattice.grad, frac.grad):
        assert grad is not None and torch.isfinite(grad).all() and grad.abs().max() > 0
    assert torch.autograd.gradcheck(energy, (lattice, frac), eps=1e-6, atol=1e-6)


def _assert_same_data(left, right) -> None:
    assert sorted(left.keys()) == sorted(right.keys())
    for key in left.keys():
        a, b = left[key], right[key]
        if isinstance(a, torch.Tensor):
            assert a.dtype == b.dtype and a.shape == b.shape, key
            torch.testing.assert_close(a, b, atol=1e-12, rtol=0, msg=key)
        else:
            assert a == b, key


@pytest.mark.parametrize(
    "config", [GraphConfig(), GraphConfig(cutoff=3.0, max_neighbors=6), GraphConfig(kind="fully_connected")]
)
def test_batch_equals_data_list_and_single_crystals(config: GraphConfig, dataset_crystals: list[Crystal]) -> None:
    from torch_geometric.data import Batch

    # very different image tables, out of order: exercises bucketing and the reordering pass
    crystals = [dataset_crystals[30], _special_cells()[3], dataset_crystals[2], *_random_crystals(29, 3)]
    batch = crystals_to_batch(crystals, config)
    _assert_same_data(batch, Batch.from_data_list(crystals_to_data_list(crystals, config)))
    for crystal, data in zip(crystals, crystals_to_data_list(crystals, config), strict=True):
        _assert_same_data(data, crystals_to_data_list([crystal], config)[0])
        assert data.num_nodes == crystal.n_sites and data.lattice.shape == (1, 3, 3)
    assert batch.num_graphs == len(crystals) and batch.frac_coords.dtype == torch.float32


def test_data_list_equals_public_constructors(monkeypatch: pytest.MonkeyPatch, dataset_crystals: list[Crystal]) -> None:
    """Each Data equals one built with PyG's own constructor from radius_graph_pbc of that crystal alone."""
    from torch_geometric.data import Data

    import crystaloop.data.graphs as graphs

    crystals = [dataset_crystals[3], *_special_cells(), dataset_crystals[31]]
    expected = []
    for crystal in crystals:
        tensors = stack_crystals([crystal])
        index, image, vec = radius_graph_pbc(tensors["lattice"], tensors["frac_coords"], tensors["num_atoms"], CUTOFF)
        expected.append(
            Data(
                edge_index=index,
                lattice=tensors["lattice"].float(),
                frac_coords=tensors["frac_coords"].float(),
                atomic_numbers=tensors["atomic_numbers"],
                num_atoms=tensors["num_atoms"],
                edge_image=image,
                num_nodes=crystal.n_sites,
                edge_vec=vec.float(),
            )
        )
    for chunk in (graphs._CHUNK, 64):  # 64 candidates: crystals spread over many chunks
        monkeypatch.setattr(graphs, "_CHUNK", chunk)
        for data, reference in zip(crystals_to_data_list(crystals), expected, strict=True):
            assert type(data) is Data and list(data.keys()) == list(reference.keys())
            _assert_same_data(data, reference)
            data.validate(raise_on_error=True)


def test_batched_radius_graph_equals_per_crystal_graphs(dataset_crystals: list[Crystal]) -> None:
    crystals = [dataset_crystals[35], _special_cells()[4], dataset_crystals[1], dataset_crystals[22]]
    tensors = stack_crystals(crystals)
    args = (tensors["lattice"], tensors["frac_coords"], tensors["num_atoms"], CUTOFF)
    index, image, vec = radius_graph_pbc(*args)
    offset = 0
    expected = []
    for crystal in crystals:
        one_index, one_image, one_vec = _edges(crystal)
        expected.append((one_index + offset, one_image, one_vec))
        offset += crystal.n_sites
    np.testing.assert_array_equal(index.numpy(), np.concatenate([e[0] for e in expected], axis=1))
    np.testing.assert_array_equal(image.numpy(), np.concatenate([e[1] for e in expected]))
    np.testing.assert_allclose(vec.numpy(), np.concatenate([e[2] for e in expected]), atol=1e-12)
    for budget in (50, 1000):  # tiny budgets split crystals and pairs into many steps
        small = radius_graph_pbc(*args, pair_budget=budget)
        assert torch.equal(small[0], index) and torch.equal(small[1], image)
        torch.testing.assert_close(small[2], vec, atol=1e-12, rtol=0)


def test_float32_graphs_have_the_same_edges() -> None:
    crystals = _random_crystals(30, 4)
    single = crystals_to_data_list(crystals, dtype=torch.float32)
    double = crystals_to_data_list(crystals, dtype=torch.float64)
    for a, b in zip(single, double, strict=True):
        assert torch.equal(a.edge_index, b.edge_index) and a.edge_vec.dtype == torch.float32
        torch.testing.assert_close(a.edge_vec.double(), b.edge_vec, atol=1e-5, rtol=0)


def _brute_force_min_image(crystal: Crystal) -> np.ndarray:
    """Shortest distances by enumerating every image that could be closer than a safe bound."""
    lattice = crystal.lattice
    from crystaloop.data.canonical import reduced_basis

    bound = np.linalg.norm(reduced_basis(lattice), axis=1).sum()  # some image is at least this close
    spacing = 1.0 / np.linalg.norm(np.linalg.inv(lattice).T, axis=1)
    extent = np.ceil(bound / spacing).astype(int) + 1
    images = np.array(np.meshgrid(*[np.arange(-n, n + 1) for n in extent], indexing="ij")).reshape(3, -1).T
    diff = crystal.frac_coords[None, :, None, :] - crystal.frac_coords[:, None, None, :] + images[None, None]
    dist = np.linalg.norm(diff @ lattice, axis=-1)
    zero = np.flatnonzero((images == 0).all(axis=1))[0]
    dist[np.arange(crystal.n_sites), np.arange(crystal.n_sites), zero] = np.inf
    return dist.min(axis=-1)


def test_minimum_image_distances_match_brute_force(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(31)
    crystals = [*_special_cells()]
    for _ in range(6):
        base = random_crystal(rng, n_sites=int(rng.integers(1, 5)))
        basis = np.eye(3, dtype=np.int64)
        for _ in range(3):  # several shears: strongly skewed, far from reduced
            shear = np.eye(3, dtype=np.int64)
            i, j = rng.choice(3, size=2, replace=False)
            shear[i, j] = rng.choice((-2, -1, 1, 2))
            basis = shear @ basis
        crystals.append(apply_basis_change(base, basis))
    for crystal in crystals:
        np.testing.assert_allclose(minimum_image_distances(crystal), _brute_force_min_image(crystal), atol=1e-9)
    import crystaloop.data.graphs as graphs

    monkeypatch.setattr(graphs, "_MIN_IMAGE_BUDGET", 300)  # many small row blocks: same answer
    for crystal in crystals[-2:]:
        np.testing.assert_allclose(minimum_image_distances(crystal), _brute_force_min_image(crystal), atol=1e-9)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_radius_graph_on_gpu_matches_cpu(dataset_crystals: list[Crystal]) -> None:
    crystals = [*dataset_crystals[::4], *_special_cells()]
    tensors = stack_crystals(crystals)
    args = (tensors["lattice"], tensors["frac_coords"], tensors["num_atoms"])
    for max_neighbors in (None, 8):
        cpu = radius_graph_pbc(*args, CUTOFF, max_neighbors=max_neighbors)
        gpu = radius_graph_pbc(*(t.cuda() for t in args), CUTOFF, max_neighbors=max_neighbors)
        assert torch.equal(gpu[0].cpu(), cpu[0]) and torch.equal(gpu[1].cpu(), cpu[1])
        torch.testing.assert_close(gpu[2].cpu(), cpu[2], atol=1e-9, rtol=0)
    index, image, wrapped = fully_connected_graph(*(t.cuda() for t in args))
    assert wrapped.is_cuda and torch.equal(index.cpu(), fully_connected_graph(*args)[0])
