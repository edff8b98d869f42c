"""Composite generator: shares respected per arm, arms marked in provenance, settings checked at load."""

from __future__ import annotations

import pytest

from crystaloop.data.errors import CrystaloopError
from crystaloop.data.records import Condition
from crystaloop.data.store.testing import base_cells, perovskite, rock_salt
from crystaloop.generator.base import Generator
from crystaloop.generator.composite import CompositeChoice, CompositeGenerator, apportion, split_by_batch
from crystaloop.generator.random_search import RandomSearchGenerator
from crystaloop.generator.replay import DatasetReplayGenerator
from crystaloop.loop.config import load_campaign_config


def two_arms() -> CompositeGenerator:
    cells = list(base_cells().values())
    return CompositeGenerator([("a", DatasetReplayGenerator(cells, perturb=0.01)), ("b", DatasetReplayGenerator([rock_salt(), perovskite()], perturb=0.01))],
                              {"a": 3.0, "b": 1.0})


@pytest.mark.parametrize("n", [1, 7, 20, 33])
def test_apportion_sums_and_stays_within_one(n: int) -> None:
    shares = {"x": 0.55, "y": 0.3, "z": 0.15}
    counts = apportion(n, shares)
    assert sum(counts.values()) == n
    assert all(abs(counts[a] - n * s) < 1 for a, s in shares.items())


def test_split_by_batch_keeps_the_totals_and_a_small_share_across_small_batches() -> None:
    shares = {"a": 0.9, "b": 0.1}
    batches = split_by_batch(shares, [5, 5, 5, 5])
    assert [sum(b.values()) for b in batches] == [5, 5, 5, 5]
    assert {arm: sum(b[arm] for b in batches) for arm in shares} == apportion(20, shares) == {"a": 18, "b": 2}
    assert apportion(5, shares) == {"a": 5, "b": 0}  # one batch alone would drop arm b
    assert all(apportion(5, b) == b for b in batches)  # a batch's counts, passed as its shares, are kept


def test_counts_per_arm_follow_the_shares_passed_in() -> None:
    gen = two_arms()
    assert isinstance(gen, Generator)
    default = gen.sample(20, None, seed=0)
    assert [c.provenance.arm for c in default].count("a") == 15  # configured 3:1
    for shares in ({"a": 0.1, "b": 0.9}, {"a": 1.0, "b": 0.0}, {"a": 0.5, "b": 0.5}):
        out = gen.sample(20, None, seed=1, shares=shares)
        counts = {arm: sum(c.provenance.arm == arm for c in out) for arm in ("a", "b")}
        assert counts == apportion(20, shares)
        assert {a: made for a, (_, made) in gen.last_counts.items()} == counts
        assert all(c.provenance.component.startswith("dataset-replay") and c.provenance.seed is not None for c in out)
    again = gen.sample(20, None, seed=1, shares={"a": 0.5, "b": 0.5})
    assert [c.id for c in again] == [c.id for c in out]


def test_an_arm_that_cannot_honour_the_condition_is_skipped_and_all_failing_raises() -> None:
    gen = CompositeGenerator([("replay", DatasetReplayGenerator([rock_salt()])),
                              ("rss", RandomSearchGenerator(max_atoms=6, space_groups=range(1, 75)))], {"replay": 1, "rss": 1})
    out = gen.sample(4, Condition(chemical_system=("Mg", "O")), seed=0)
    assert out and {c.provenance.arm for c in out} == {"rss"}
    assert all(set(c.crystal.elements) <= {"Mg", "O"} for c in out)
    with pytest.raises(CrystaloopError, match="no arm"):
        gen.sample(2, Condition(chemical_system=("Mg", "O")), seed=0, shares={"replay": 1, "rss": 0})
    with pytest.raises(CrystaloopError, match="unknown arm"):
        gen.sample(2, None, seed=0, shares={"nope": 1.0})
    with pytest.raises(CrystaloopError, match="not all 0"):
        gen.sample(2, None, seed=0, shares={"replay": 0.0, "rss": 0.0})


CAMPAIGN = """
name: composite-check
objectives: [{property: heat_ref, goal: minimise}]
oracle: {kind: replay, dataset: perov_5/val, measure: [heat_ref]}
generator:
  kind: composite
  arms:
    - {name: sub, share: 0.5, generator: {kind: substitution, prototypes: true%s}}
    - {name: rss, share: 0.5, generator: {kind: random_search, max_atoms: 12}}
strategy: {kind: random, allocation: {kind: bandit, floor: %s}}
"""


def test_composite_loads_and_its_arm_settings_are_checked(tmp_path) -> None:  # noqa: ANN001
    path = tmp_path / "c.yaml"
    path.write_text(CAMPAIGN % ("", "0.1"))
    config = load_campaign_config(path)
    assert isinstance(config.generator, CompositeChoice)
    assert config.generator.arm_names == ("sub", "rss") and config.generator.shares == {"sub": 0.5, "rss": 0.5}
    assert config.strategy.allocation.kind == "bandit"
    for extra, floor, message in [
        (", beta: 2", "0.1", "arms.0.generator.beta: unknown setting for kind 'substitution'"),
        ("", "0.6", "floor ≤ 0.5"),
    ]:
        path.write_text(CAMPAIGN % (extra, floor))
        with pytest.raises(CrystaloopError, match=message):
            load_campaign_config(path)
    path.write_text((CAMPAIGN % ("", "0.1")).replace("kind: random_search", "kind: random-search"))
    with pytest.raises(CrystaloopError, match="unknown kind; allowed: diffusion, dataset-replay, substitution, random_search"):
        load_campaign_config(path)
    path.write_text((CAMPAIGN % ("", "0.1")).replace("share: 0.5, generator: {kind: random", "share: 0.5, weight: 1, generator: {kind: random"))
    with pytest.raises(CrystaloopError, match="arms.1.weight: unknown setting"):
        load_campaign_config(path)
    path.write_text((CAMPAIGN % ("", "0.1")).replace("name: rss", "name: sub"))
    with pytest.raises(CrystaloopError, match="distinct names"):
        load_campaign_config(path)
    single = (CAMPAIGN % ("", "0.1")).split("generator:\n")[0] + "generator: {kind: random_search}\nstrategy: {kind: random, allocation: {kind: bandit}}\n"
    path.write_text(single)
    with pytest.raises(CrystaloopError, match="allocation kind 'bandit' moves the shares of a composite"):
        load_campaign_config(path)
