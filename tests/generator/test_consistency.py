"""Consistency distillation: boundary condition, periodicity, invariance, the teacher step, training,
resume, samplers, checkpoints and the ``distill`` command, on tiny models."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import typer
from pymatgen.core import Lattice
from typer.testing import CliRunner

from crystaloop.commands.distill import distill
from crystaloop.data.crystal import Crystal
from crystaloop.data.datasets import load_dataset
from crystaloop.data.errors import CrystaloopError
from crystaloop.data.records import Condition
from crystaloop.data.testing import assert_equivariant_sites, assert_invariant, random_crystal
from crystaloop.generator.config import GeneratorConfig, SamplerConfig
from crystaloop.generator.consistency.checkpoint import (
    CONSISTENCY_FORMAT,
    load_consistency_checkpoint,
    strip_consistency_for_shipping,
)
from crystaloop.generator.consistency.model import (
    ConsistencyModel,
    consistency_times,
    teacher_step,
    torus_difference,
)
from crystaloop.generator.consistency.sampling import consistency_sample_batch
from crystaloop.generator.consistency.training import DistillConfig, distill_model, evaluation_loss
from crystaloop.generator.diffusion.checkpoint import load_model
from crystaloop.generator.diffusion.generator import DiffusionGenerator
from crystaloop.generator.diffusion.model import CrystalDiffusion
from crystaloop.generator.diffusion.sampling import SampleRequest, sample_batch, step_grid
from crystaloop.generator.diffusion.training import EncodedData, train_generator
from crystaloop.generator.testing import TINY_ELEMENTS, network_view, tiny_model


@pytest.fixture(scope="module")
def student() -> ConsistencyModel:
    """A float64 student with weights unlike the teacher's (properties must hold for any weights)."""
    return ConsistencyModel.from_teacher(tiny_model(seed=3)).eval()


@pytest.fixture(scope="module")
def perov():
    return load_dataset("perov_5/train", max_rows=24), load_dataset("perov_5/val", max_rows=6)


@pytest.fixture(scope="module")
def teacher_file(perov, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """tiny_model's network trained for 40 epochs on 24 perov_5 crystals, conditioned on dir_gap (~2 s)."""
    train, _ = perov
    network = tiny_model().config.network.model_copy(update={"properties": ["dir_gap"], "embedding_dim": 0})
    config = GeneratorConfig(network=network, diffusion={"timesteps": 50}, max_atoms=8,
                             train={"epochs": 40, "batch_size": 8, "checkpoint_every": 40, "ema_decay": 0.5, "learning_rate": 3e-3})
    out = tmp_path_factory.mktemp("teacher") / "teacher.pt"
    train_generator(config, train.crystals, train.properties, out)
    return out


@pytest.fixture()
def teacher(teacher_file: Path) -> CrystalDiffusion:
    return load_model(teacher_file)[0]


def _estimate(model: ConsistencyModel, crystal: Crystal, t: int, canonical: bool = True):
    with torch.no_grad():
        return model.estimate(network_view(model, crystal, t=t), canonical_frame=canonical)


# ------------------------------------------------------------------ the consistency function
@pytest.mark.parametrize("seed", [0, 1])
def test_boundary_condition_returns_the_input_exactly_at_t_zero(student: ConsistencyModel, seed: int) -> None:
    crystal = random_crystal(np.random.default_rng(seed), n_sites=5, elements=TINY_ELEMENTS)
    view = network_view(student, crystal, t=0)
    view = view.replace(tokens=student.normalisation.tokens(crystal.numbers))  # nothing is masked at t = 0
    with torch.no_grad():
        out = student.estimate(view)
        framed = student.estimate(view, canonical_frame=True)
    assert torch.equal(out.lattice, view.lattice) and torch.equal(out.frac, view.frac)
    assert torch.equal(out.species_probs.argmax(-1), view.tokens) and torch.equal(out.species_probs.max(-1).values, torch.ones(5, dtype=torch.float64))
    torch.testing.assert_close(framed.lattice, view.lattice, atol=1e-10, rtol=0)
    torch.testing.assert_close(torus_difference(framed.frac, view.frac), torch.zeros_like(view.frac), atol=1e-10, rtol=0)
    # away from the boundary the network does move the state
    assert not torch.allclose(student.estimate(view.replace(t=torch.tensor([40]))).lattice, view.lattice)


def test_student_starts_as_the_teachers_denoiser_and_the_velocity_reading_keeps_the_boundary() -> None:
    teacher = tiny_model(seed=5)
    view = network_view(teacher, random_crystal(np.random.default_rng(2), n_sites=4, elements=TINY_ELEMENTS), t=20)
    alpha_bar = teacher.schedule.alpha_bar[20]
    assert alpha_bar.sqrt() >= 0.25  # inside the exact range of the default cap
    with torch.no_grad():
        eps = teacher.denoiser(view).lattice_noise
        started = ConsistencyModel.from_teacher(teacher).estimate(view)
        velocity = ConsistencyModel.from_teacher(teacher, lattice_output="velocity")
        at_zero = velocity.estimate(view.replace(t=torch.tensor([0]), tokens=teacher.normalisation.tokens(np.array([3, 6, 14, 22]))))
    torch.testing.assert_close(started.lattice, (view.lattice - (1 - alpha_bar).sqrt() * eps) / alpha_bar.sqrt(), atol=1e-12, rtol=0)
    assert torch.equal(at_zero.lattice, view.lattice) and torch.equal(at_zero.frac, view.frac)
    with pytest.raises(CrystaloopError, match="allowed: epsilon, velocity"):
        ConsistencyModel.from_teacher(teacher, lattice_output="x0")  # type: ignore[arg-type]


@pytest.mark.parametrize("t", [7, 50])
def test_output_coordinates_are_invariant_to_integer_shifts_of_the_input(student: ConsistencyModel, t: int) -> None:
    rng = np.random.default_rng(t)
    view = network_view(student, random_crystal(rng, n_sites=6, elements=TINY_ELEMENTS), t=t)
    shifts = torch.as_tensor(rng.integers(-3, 4, size=(6, 3)), dtype=torch.float64)
    with torch.no_grad():
        a, b = student.estimate(view), student.estimate(view.replace(frac=view.frac + shifts))
    torch.testing.assert_close(torus_difference(b.frac, a.frac), torch.zeros_like(a.frac), atol=1e-10, rtol=0)
    torch.testing.assert_close(b.lattice, a.lattice, atol=1e-10, rtol=0)
    torch.testing.assert_close(b.species_probs, a.species_probs, atol=1e-10, rtol=0)
    assert ((a.frac >= 0) & (a.frac < 1)).all()


def test_torus_difference_is_the_shortest_signed_wrap() -> None:
    a, b = torch.tensor([0.95, 0.05, 0.5]), torch.tensor([0.05, 0.95, 0.2])
    torch.testing.assert_close(torus_difference(a, b), torch.tensor([-0.1, 0.1, 0.3]))


@pytest.mark.parametrize("seed", [0, 1])
def test_distilled_model_is_invariant_and_equivariant_as_it_must_be(student: ConsistencyModel, seed: int) -> None:
    """Species distribution per site, Cartesian displacement to the clean estimate, and the clean
    crystal itself (volume and sorted pair distances) under rotation, translation, permutation and
    basis change (canonical frame), float64."""
    rng = np.random.default_rng(seed)
    crystal = random_crystal(rng, n_sites=5, elements=TINY_ELEMENTS)

    def species(c: Crystal) -> np.ndarray:
        return _estimate(student, c, 17).species_probs.numpy()

    def displacement(c: Crystal) -> np.ndarray:
        view = network_view(student, c, t=17)
        moved = torus_difference(_estimate(student, c, 17).frac, view.frac).numpy()
        lattice = c.lattice if np.linalg.det(c.lattice) > 0 else -c.lattice  # the basis network_view presents
        return moved @ lattice

    def clean_crystal(c: Crystal) -> np.ndarray:
        out = _estimate(student, c, 30)
        lattice = Lattice(out.lattice[0].numpy() * 5.0)
        distances = np.sort(lattice.get_all_distances(out.frac.numpy(), out.frac.numpy()).ravel())
        return np.concatenate([[abs(lattice.volume)], distances])

    assert_equivariant_sites(species, crystal, rng=rng)
    assert_equivariant_sites(displacement, crystal, rng=rng, vector=True)
    assert_invariant(clean_crystal, crystal, rng=rng)


# ------------------------------------------------------------------ the teacher step
def test_composed_teacher_steps_reproduce_the_ddim_sampler() -> None:
    teacher = tiny_model()
    tokens = teacher.normalisation.tokens(np.array([3, 3, 8, 22, 14]))
    request = SampleRequest(num_atoms=torch.tensor([5]), tokens=tokens)
    generator = torch.Generator().manual_seed(0)
    lattice0 = torch.randn(1, 3, 3, generator=generator, dtype=torch.float64)
    lattice0 = lattice0 + lattice0.transpose(1, 2)
    frac0 = torch.rand(5, 3, generator=generator, dtype=torch.float64)
    reference = sample_batch(teacher, request, SamplerConfig(steps=7, method="ddim"), seed=0, initial=(lattice0, frac0))
    view = network_view(teacher, random_crystal(np.random.default_rng(0), n_sites=5, elements=TINY_ELEMENTS))
    state = view.replace(lattice=lattice0, frac=frac0, tokens=tokens, t=torch.tensor([50])).without_conditions()
    grid = step_grid(50, 7)
    with torch.no_grad():
        for s in grid[1:]:
            state = teacher_step(teacher, teacher.denoiser(state), state, torch.tensor([s]), torch.Generator().manual_seed(1))
    scale = float(teacher.normalisation.lattice_scale(torch.tensor([5]))[0])
    np.testing.assert_allclose(state.lattice[0].numpy() * scale, reference.lattice[0], atol=1e-6)
    np.testing.assert_allclose(state.frac.numpy(), reference.frac, atol=1e-9)


def test_teacher_step_reveals_species_only_downwards() -> None:
    teacher = tiny_model()
    view = network_view(teacher, random_crystal(np.random.default_rng(4), n_sites=6, elements=TINY_ELEMENTS), t=40)
    view = view.replace(tokens=torch.full((6,), teacher.mask_token))
    with torch.no_grad():
        half = teacher_step(teacher, teacher.denoiser(view), view, torch.tensor([20]), torch.Generator().manual_seed(0))
        done = teacher_step(teacher, teacher.denoiser(view), view, torch.tensor([0]), torch.Generator().manual_seed(0))
    assert (done.tokens < teacher.mask_token).all() and half.t.item() == 20
    assert ((half.tokens == teacher.mask_token) | (half.tokens < teacher.mask_token)).all()


# ------------------------------------------------------------------ distillation
def _tiny_distill(epochs: int) -> DistillConfig:
    return DistillConfig(grid_points=10, epochs=epochs, batch_size=8, learning_rate=2e-3, checkpoint_every=1,
                         target_decay=0.5, ema_decay=0.5, midpoint_candidates=[0.3, 0.6], validation_limit=4)


def test_distillation_lowers_the_consistency_loss_and_writes_a_self_describing_checkpoint(perov, teacher, tmp_path: Path) -> None:
    train, val = perov
    out = tmp_path / "student.pt"
    probe = EncodedData(teacher, train.crystals, np.asarray(train.properties["dir_gap"]).reshape(-1, 1)).full

    def probe_loss(model: ConsistencyModel) -> float:  # self-consistency over 8 fixed noise draws
        return float(np.mean([evaluation_loss(model, teacher, probe, _tiny_distill(24), seed=k) for k in range(8)]))

    before = probe_loss(ConsistencyModel.from_teacher(teacher))
    metrics = distill_model(teacher, train.crystals, train.properties, out, _tiny_distill(24), teacher_hash="abc",
                            validation=val.crystals)
    payload = load_consistency_checkpoint(out)
    student = ConsistencyModel.from_teacher(teacher)
    student.denoiser.load_state_dict(payload["training"]["raw"])
    after = probe_loss(student)
    assert after < 0.95 * before, (before, after)
    assert metrics["epochs"] == 24 and len(metrics["history"]) == 24
    assert payload["format"] == CONSISTENCY_FORMAT and payload["teacher_hash"] == "abc" and payload["data_hash"]
    assert payload["midpoints"]["2"][0] in (15, 30) and len(metrics["midpoint_search"]) == 2
    shipped = tmp_path / "shipped.pt"
    strip_consistency_for_shipping(out, shipped)
    assert "training" not in load_consistency_checkpoint(shipped) and shipped.stat().st_size < out.stat().st_size
    generator = DiffusionGenerator.from_checkpoint(shipped)  # what a campaign does with a checkpoint path
    assert isinstance(generator.model, ConsistencyModel) and generator.sampler.method == "consistency"
    assert generator.model.midpoints == {2: payload["midpoints"]["2"]}
    assert generator.sample(3, Condition(composition=train.crystals[0].composition), seed=0)


def test_resume_after_interruption_equals_an_uninterrupted_run(perov, teacher, tmp_path: Path) -> None:
    train, _ = perov
    straight, resumed = tmp_path / "straight.pt", tmp_path / "resumed.pt"
    distill_model(teacher, train.crystals, train.properties, straight, _tiny_distill(3), teacher_hash="abc")

    def interrupt(epoch: int, losses: dict[str, float]) -> None:
        if epoch == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        distill_model(teacher, train.crystals, train.properties, resumed, _tiny_distill(3), teacher_hash="abc", on_epoch=interrupt)
    assert load_consistency_checkpoint(resumed)["metrics"]["epochs"] == 2
    distill_model(teacher, train.crystals, train.properties, resumed, _tiny_distill(3), teacher_hash="abc")
    a, b = load_consistency_checkpoint(straight), load_consistency_checkpoint(resumed)
    assert b["metrics"]["epochs"] == 3
    for section in ("weights",):
        for name, value in a[section].items():
            torch.testing.assert_close(b[section][name], value, rtol=0, atol=0)
    with pytest.raises(CrystaloopError, match="another teacher"):
        distill_model(teacher, train.crystals, train.properties, resumed, _tiny_distill(3), teacher_hash="other")


# ------------------------------------------------------------------ samplers
@pytest.mark.parametrize("steps", [1, 2, 4])
def test_consistency_sampling_has_valid_shapes_and_is_deterministic_per_seed(steps: int) -> None:
    student = ConsistencyModel.from_teacher(tiny_model(dtype=torch.float32)).eval()
    config = SamplerConfig(method="consistency", steps=steps)
    calls: list[int] = []
    denovo = SampleRequest(num_atoms=torch.tensor([3, 5]), allowed=torch.tensor([[True, False, True, False, False]] * 2))
    a = consistency_sample_batch(student, denovo, config, seed=1, on_step=lambda i, n: calls.append(n))
    b = consistency_sample_batch(student, denovo, config, seed=1)
    c = consistency_sample_batch(student, denovo, config, seed=2)
    assert a.lattice.shape == (2, 3, 3) and a.frac.shape == (8, 3) and a.numbers.shape == (8,) and calls == [steps] * steps
    assert np.isfinite(a.lattice).all() and ((a.frac >= 0) & (a.frac < 1)).all() and set(a.numbers.tolist()) <= {3, 8}
    np.testing.assert_array_equal(a.lattice, b.lattice)
    np.testing.assert_array_equal(a.numbers, b.numbers)
    assert not np.array_equal(a.frac, c.frac)
    tokens = student.normalisation.tokens(np.array([22, 8, 8]))
    csp = consistency_sample_batch(student, SampleRequest(num_atoms=torch.tensor([3]), tokens=tokens), config, seed=0)
    np.testing.assert_array_equal(csp.numbers, [22, 8, 8])


def test_sampler_times_and_method_checks_name_what_is_allowed() -> None:
    assert consistency_times(1000, 1) == [1000]
    assert consistency_times(1000, 2, {2: [300]}) == [1000, 300]
    assert consistency_times(1000, 4, {2: [300]}) == [1000, 300, 200, 100]
    assert consistency_times(1000, 2) == [1000, 500]
    with pytest.raises(CrystaloopError, match="strictly descending"):
        consistency_times(1000, 3, explicit=[200, 400])
    teacher = tiny_model(dtype=torch.float32)
    with pytest.raises(CrystaloopError, match="needs a distilled checkpoint"):
        DiffusionGenerator(teacher, SamplerConfig(method="consistency", steps=2))
    with pytest.raises(CrystaloopError, match="samples with method 'consistency'"):
        DiffusionGenerator(ConsistencyModel.from_teacher(teacher), SamplerConfig(method="pc"))


# ------------------------------------------------------------------ the command
def test_distill_command_trains_resumes_and_refuses_a_missing_teacher(teacher_file: Path, tmp_path: Path) -> None:
    teacher_path = teacher_file
    config = tmp_path / "distill.yaml"
    config.write_text("grid_points: 5\nbatch_size: 8\ncheckpoint_every: 1\nmidpoint_candidates: [0.5]\nvalidation_limit: 3\n")
    app = typer.Typer()
    app.command()(distill)
    runner = CliRunner()
    out = tmp_path / "student.pt"
    args = ["--teacher", str(teacher_path), "--out", str(out), "--config", str(config), "--limit", "8"]
    result = runner.invoke(app, [*args, "--epochs", "1"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "distilled 1 epochs" in result.output and load_consistency_checkpoint(out)["midpoints"] == {"2": [25]}
    result = runner.invoke(app, [*args, "--epochs", "2"], catch_exceptions=False)
    assert result.exit_code == 0 and "distilled 2 epochs" in result.output
    missing = runner.invoke(app, ["--teacher", str(tmp_path / "none.pt"), "--out", str(out)])
    assert missing.exit_code == 2 and "neither a file nor a shipped name" in missing.output
