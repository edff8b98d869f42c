"""Campaign config: validation, YAML at the edge, hash, shipped examples."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from crystaloop.data.errors import CrystaloopError
from crystaloop.loop.config import CampaignConfig, Constraints, Objective, load_campaign_config

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def minimal(**extra) -> CampaignConfig:
    return CampaignConfig.model_validate({"name": "t", "objectives": [{"property": "dir_gap", "goal": "maximise"}], **extra})


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.yaml")), ids=lambda p: p.stem)
def test_examples_load(path):
    config = load_campaign_config(path)
    assert config.name == path.stem
    assert len(config.config_hash()) == 16


def test_examples_exist():
    assert {p.stem for p in EXAMPLES.glob("*.yaml")} >= {"perovskite-water-splitting", "perovskite-stiff", "carbon-polymorphs"}


def test_unknown_field_rejected():
    with pytest.raises(ValidationError, match="extra"):
        minimal(budgetz={})


def test_target_needs_window_and_window_needs_target():
    with pytest.raises(ValidationError, match="window"):
        Objective(property="dir_gap", goal="target")
    with pytest.raises(ValidationError, match="takes no window"):
        Objective(property="dir_gap", goal="maximise", window=(1, 2))
    with pytest.raises(ValidationError, match="low < high"):
        Objective(property="dir_gap", goal="target", window=(3, 1))


def test_objective_satisfied():
    window = Objective(property="g", goal="target", window=(1.5, 3.0))
    assert window.satisfied(2.0) and not window.satisfied(3.1)
    assert Objective(property="e", goal="minimise", threshold=0.1).satisfied(0.05)
    assert not Objective(property="e", goal="minimise", threshold=0.1).satisfied(0.2)
    assert Objective(property="b", goal="maximise").satisfied(-1e9)


def test_constraints_parse_systems_and_check():
    c = Constraints(chemical_systems=["O-Ti-Sr", ["Ba", "Ti", "O"]], elements="Sr,Ba,Ti,O")
    assert c.chemical_systems == (("O", "Ti", "Sr"), ("O", "Ti", "Ba"))
    assert c.allows(["Sr", "Ti", "O"]) and c.allows(["Ti", "O"])
    assert not c.allows(["Sr", "Ba", "O"])
    with pytest.raises(ValidationError, match="Xx|element"):
        Constraints(elements=["Xx"])


def test_hash_ignores_store_url_but_not_settings():
    a = minimal()
    assert a.config_hash() == minimal(store_url="sqlite:///x.db").config_hash()
    assert a.config_hash() != minimal(seed=1).config_hash()
    # a default spelt out is the same campaign (so settings added later with defaults keep hashes)
    assert a.config_hash() == minimal(seed=0, oracle={"kind": "chgnet", "fmax": 0.1}).config_hash()
    assert a.config_hash() != minimal(oracle={"kind": "emt"}).config_hash()
    kinds = {minimal(strategy={"kind": k}).config_hash() for k in ("random", "bo", "al", "rl")}
    assert len(kinds) == 4 and a.config_hash() in kinds  # a kind is identity even at its defaults
    assert a.iteration_seed(0) != a.iteration_seed(1)
    assert a.iteration_seed(2) == minimal().iteration_seed(2)


def test_duplicate_objectives_rejected():
    with pytest.raises(ValidationError, match="twice"):
        CampaignConfig(name="t", objectives=[Objective(property="a", goal="maximise")] * 2)


def test_load_errors_name_the_problem(tmp_path):
    with pytest.raises(CrystaloopError, match="no campaign config"):
        load_campaign_config(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: t\nobjectives: [{property: g, goal: sideways}]\n")
    with pytest.raises(CrystaloopError, match="sideways"):
        load_campaign_config(bad)
    bad.write_text("- just\n- a list\n")
    with pytest.raises(CrystaloopError, match="mapping"):
        load_campaign_config(bad)


def test_missing_hull_references_are_a_choice_passed_to_the_hull() -> None:
    from crystaloop.surrogates.oracles.mlip import MLIPOracleChoice

    assert MLIPOracleChoice(kind="emt").build().hull.missing_reference == "fail"
    chosen = MLIPOracleChoice(kind="emt", missing_reference="trial_lattices").build()
    assert chosen.hull.missing_reference == "trial_lattices"
    with pytest.raises(ValueError, match="trial_lattices"):
        MLIPOracleChoice(kind="emt", missing_reference="guess")


def test_an_objective_nothing_provides_fails_at_load_naming_the_allowed_ones(tmp_path):
    """Issue 22: `not_a_property` validated and ran 64 candidates and 8 oracle calls."""
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: t\nobjectives: [{property: not_a_property, goal: maximise}]\noracle: {kind: emt}\n")
    with pytest.raises(CrystaloopError, match="'not_a_property'.*allowed: energy_per_atom, e_above_hull, sun"):
        load_campaign_config(bad)
    bad.write_text("name: t\nobjectives: [{property: dir_gap, goal: maximise}]\nsurrogates: [{kind: shipped, name: perov_5-heat_ref}]\n")
    with pytest.raises(CrystaloopError, match="'dir_gap'.*allowed: energy_per_atom, e_above_hull, heat_ref, sun"):
        load_campaign_config(bad)
    bad.write_text("name: t\nobjectives: [{property: e_above_hull, goal: minimise}]\noracle: {kind: emt, measure: [band_gap]}\n")
    with pytest.raises(CrystaloopError, match="'band_gap', which the emt oracle cannot measure; allowed: energy_per_atom"):
        load_campaign_config(bad)
    good = tmp_path / "good.yaml"
    good.write_text("name: t\nobjectives: [{property: dir_gap, goal: maximise}]\nsurrogates: [{kind: shipped, name: perov_5-dir_gap}]\n")
    assert load_campaign_config(good).objectives[0].property == "dir_gap"


def test_build_components_checks_objectives_against_the_loaded_oracle_and_surrogates(fixtures_dir):
    from crystaloop.loop.components import build_components

    csv = str(fixtures_dir / "mp20_layout.csv")
    config = CampaignConfig.model_validate({
        "name": "t",
        "objectives": [{"property": "not_a_property", "goal": "maximise"}],
        "generator": {"kind": "dataset-replay", "dataset": csv},
        "oracle": {"kind": "replay", "dataset": csv, "measure": ["band_gap"]},
    })
    with pytest.raises(CrystaloopError, match="'not_a_property'.*allowed: band_gap, sun"):
        build_components(config)


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.yaml")), ids=lambda p: p.stem)
def test_a_dumped_config_validates_again(path):
    """The flows and deployments pass configs as JSON dumps (every field set); they must validate
    to the same config (a per-kind field check once refused every dumped dataset-replay config)."""
    config = load_campaign_config(path)
    from crystaloop.generator.replay import DatasetReplayChoice
    from crystaloop.loop.allocation import AllocationConfig

    fixed = config.strategy.model_copy(update={"allocation": AllocationConfig()})  # arm allocation needs a composite
    # a query conditions a latent-reading diffusion generator only, so the replay variant drops it
    replay = config.model_copy(update={"generator": DatasetReplayChoice(dataset="perov_5/val"), "strategy": fixed,
                                       "query": None})
    for each in (config, replay):
        again = CampaignConfig.model_validate(each.model_dump(mode="json"))
        assert again == each and again.config_hash() == each.config_hash()


@pytest.mark.parametrize(
    ("section", "expected"),
    [
        ("strategy: {kind: bo, acquisition: ucb}", "strategy.acquisition: unknown setting for kind 'bo'"),
        ("strategy: {kind: random, beta: 2}", "strategy.beta: unknown setting for kind 'random'"),
        ("strategy: {kind: annealing}", "strategy: unknown kind; allowed: random, bo, al, rl"),
        ("strategy: {kind: rl, condition_search: bo}", "an rl policy chooses its own conditions"),
        ("generator: {kind: difusion}", "generator: unknown kind; allowed: diffusion, dataset-replay, substitution, random_search, composite, template"),
        ("generator: {kind: diffusion, library: [perov_5/train]}", "generator.library: unknown setting for kind 'diffusion'"),
        ("generator: {kind: random_search, exclude: [Xx]}", "Xx"),
        ("generator: {kind: random_search, space_groups: [0, 231]}", "space_groups must be numbers 1..230"),
        ("oracle: {kind: chgnett}", "oracle: unknown kind; allowed: chgnet, sevennet, emt, replay"),
        ("oracle: {kind: replay, dataset: perov_5/val, measure: [heat_ref], fmax: 0.1}", "oracle.fmax: unknown setting for kind 'replay'"),
    ],
)
def test_a_kind_owns_its_settings_and_a_wrong_one_fails_at_load(tmp_path, section, expected):
    """Issue 20: `beta` on a bo strategy validated and did nothing; an oracle typo failed only at build."""
    bad = tmp_path / "bad.yaml"
    bad.write_text(f"name: t\nobjectives: [{{property: dir_gap, goal: maximise}}]\n{section}\n")
    with pytest.raises(CrystaloopError) as caught:
        load_campaign_config(bad)
    assert expected in str(caught.value) and str(bad) in str(caught.value)


def test_each_strategy_kind_builds_its_own_strategy():
    from crystaloop.loop.strategies import STRATEGY_CHOICES, make_strategy

    for kind, settings in STRATEGY_CHOICES.items():
        extra = {"rl_policy_dir": None} if kind == "rl" else {}
        config = minimal(strategy={"kind": kind, **extra})
        assert isinstance(config.strategy, settings) and make_strategy(config).name == kind


def test_every_guard_config_has_one_registered_guard_in_run_order():
    from crystaloop.loop.config import GuardsConfig
    from crystaloop.loop.guards import GUARDS, build_guards

    fields = [name for name, f in GuardsConfig.model_fields.items() if name != "collapse"]
    assert sorted(GUARDS) == sorted(fields)
    for name, guard in GUARDS.items():  # each field is typed by the config its guard takes
        config_type = GuardsConfig.model_fields[name].annotation
        assert config_type is not None and config_type.__module__ == guard.__module__
        assert guard(config_type()).config == config_type()
    names = [g.name for g in build_guards(GuardsConfig())]
    assert names == ["constraints", *GUARDS]
    off = GuardsConfig.model_validate({"exploitation": {"enabled": False}})
    assert [g.name for g in build_guards(off)] == ["constraints", "validity", "synthesizability", "diversity"]
    assert [g.name for g in build_guards(GuardsConfig()) if g.context_free] == ["constraints", "validity"]


def test_a_campaign_without_a_generator_section_gets_the_template_generator_of_its_chemistry():
    from crystaloop.generator.config import DiffusionChoice
    from crystaloop.generator.symmetry.generator import TemplateChoice

    objective = {"property": "e_above_hull", "goal": "minimise"}
    perovskite = CampaignConfig.model_validate({"name": "p", "objectives": [objective], "constraints": {"chemical_systems": ["Sr-Ti-O"]}})
    assert isinstance(perovskite.generator, TemplateChoice) and perovskite.generator.training == "perov_5/train"
    carbon = CampaignConfig.model_validate({"name": "c", "objectives": [objective], "constraints": {"elements": ["C"]}})
    assert isinstance(carbon.generator, TemplateChoice) and carbon.generator.training == "carbon_24/train"
    # the default is written into the campaign's identity: a dumped config validates to the same hash
    again = CampaignConfig.model_validate(perovskite.model_dump(mode="json"))
    assert again.config_hash() == perovskite.config_hash() and again.generator == perovskite.generator
    # an explicit section is kept; without a chemistry the section stays required, as before
    chosen = CampaignConfig.model_validate({"name": "d", "objectives": [objective], "constraints": {"elements": ["C"]},
                                            "generator": {"kind": "diffusion", "checkpoint": "carbon_24"}})
    assert isinstance(chosen.generator, DiffusionChoice) and chosen.generator.checkpoint == "carbon_24"
    bare = CampaignConfig.model_validate({"name": "b", "objectives": [objective]})
    assert isinstance(bare.generator, DiffusionChoice)
    with pytest.raises(CrystaloopError, match="needs checkpoint"):
        bare.generator.build()
