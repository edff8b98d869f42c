"""The surrogate and oracle ports: every implementation satisfies its protocol, the shipped fakes
give known answers, and a campaign's oracle config is one class per kind with errors that name
what is allowed."""

from __future__ import annotations

import numpy as np
import pytest
from pydantic import TypeAdapter, ValidationError

from crystaloop.data.datasets import load_dataset
from crystaloop.data.store.testing import perovskite, rock_salt
from crystaloop.data.testing import random_rotation, random_translation
from crystaloop.surrogates.base import EmbeddingSurrogate, Surrogate, SurrogateSet, TrainableSurrogate
from crystaloop.surrogates.gp import GPHeadConfig, GPSurrogate
from crystaloop.surrogates.oracles import MLIP_KINDS, ORACLE_CHOICES, ORACLES, MLIPOracle, OracleChoice, ReplayOracle
from crystaloop.surrogates.oracles.base import Oracle
from crystaloop.surrogates.oracles.mlip import MLIPOracleChoice
from crystaloop.surrogates.oracles.replay import ReplayOracleChoice
from crystaloop.surrogates.testing import MockOracle, MockSurrogate, OffsetSurrogate, composition_features

CHOICE = TypeAdapter(OracleChoice)
RNG = np.random.default_rng(0)


def test_every_mlip_kind_has_a_registered_oracle_and_one_config_class():
    assert tuple(ORACLES) == MLIP_KINDS
    assert set(ORACLE_CHOICES) == {*MLIP_KINDS, "replay"}
    assert all(ORACLE_CHOICES[k] is MLIPOracleChoice for k in MLIP_KINDS)


def test_oracle_choice_picks_the_class_of_its_kind_and_defaults_to_chgnet():
    assert CHOICE.validate_python({}) == MLIPOracleChoice(kind="chgnet")
    assert isinstance(CHOICE.validate_python({"kind": "emt", "fmax": 0.05}), MLIPOracleChoice)
    replay = CHOICE.validate_python({"kind": "replay", "dataset": "perov_5/val", "measure": ["heat_ref"]})
    assert replay == ReplayOracleChoice(dataset="perov_5/val", measure=("heat_ref",))


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        ({"kind": "chgnett"}, r"chgnet.*emt.*replay|replay.*chgnet"),  # unknown kind: the allowed ones named
        ({"kind": "chgnet", "dataset": "perov_5/val"}, "dataset"),  # a replay field on an MLIP
        ({"kind": "replay", "dataset": "perov_5/val", "measure": ["heat_ref"], "fmax": 0.1}, "fmax"),
        ({"kind": "sevennet", "measure": ["band_gap"]}, "band_gap.*sevennet.*allowed: energy_per_atom"),
        ({"kind": "replay", "measure": ["heat_ref"]}, "dataset"),  # required
    ],
)
def test_a_wrong_oracle_config_fails_naming_the_bad_value(payload, expected):
    with pytest.raises(ValidationError, match=expected):
        CHOICE.validate_python(payload)


def test_the_oracle_implementations_satisfy_the_port():
    replay = ReplayOracleChoice(dataset="perov_5/val", measure=("heat_ref", "dir_gap")).build()
    mlip = MLIPOracleChoice(kind="emt", measure=("e_above_hull", "energy_per_atom")).build()
    mock = MockOracle(("heat_ref",), lambda c: [float(c.n_sites)])
    for oracle in (replay, mlip, mlip.oracle, mock):
        assert isinstance(oracle.properties, tuple) and oracle.name
        assert callable(oracle.evaluate)
    assert mlip.properties == ("energy_per_atom", "e_above_hull")  # reported in the fixed order
    _check_port(replay, replay_crystals := load_dataset("perov_5/val").crystals[:3])
    _check_port(mock, replay_crystals)


def _check_port(oracle: Oracle, crystals) -> None:  # noqa: ANN001
    out = oracle.evaluate(crystals)
    assert len(out) == len(crystals) * len(oracle.properties)
    assert [m.property for m in out] == list(oracle.properties) * len(crystals)


def test_replay_oracle_answers_recorded_labels_and_fails_unknown_structures():
    data = load_dataset("perov_5/val")
    oracle = ReplayOracle(data, ["heat_ref"])
    known = oracle.evaluate([random_translation(random_rotation(data.crystals[4], RNG), RNG)])  # same crystal, rotated
    assert known[0].status == "ok" and known[0].value == pytest.approx(float(data.properties["heat_ref"][4]))
    (unknown,) = oracle.evaluate([rock_salt(5.64)])
    assert unknown.status == "failed" and "not in the replay dataset" in unknown.reason
    assert oracle.calls == 2


def test_mock_oracle_fails_planted_hashes_and_counts():
    good, bad = perovskite(), rock_salt(5.64)
    oracle = MockOracle(("heat_ref", "dir_gap"), lambda c: [1.0, float("nan")], fail_hashes={bad.canonical_hash()})
    out = oracle.evaluate([good, bad])
    assert [m.status for m in out] == ["ok", "failed", "failed", "failed"]
    assert out[1].reason == "no value" and out[2].reason == "planted failure"
    assert oracle.calls == 2 and oracle.seen == [good.canonical_hash(), bad.canonical_hash()]


def test_mock_surrogate_is_an_invariant_embedding_surrogate_with_ood_scores():
    data = load_dataset("perov_5/val").crystals[:40]
    surrogate = MockSurrogate(("heat_ref", "dir_gap"), reference=data[:30], std=0.2)
    assert isinstance(surrogate, EmbeddingSurrogate)
    p = surrogate.predict(data[30:])
    assert p.mean.shape == p.std.shape == (10, 2) and np.all(p.std == 0.2) and p.units == ("eV", "eV")
    rotated = surrogate.predict([random_rotation(c, RNG) for c in data[30:]])
    np.testing.assert_allclose(rotated.mean, p.mean, atol=1e-9)  # composition and volume only
    inside, outside = surrogate.ood_score(data[:5]), surrogate.ood_score([rock_salt(5.64)])
    assert outside[0] > 2 * np.median(inside)
    assert composition_features(rock_salt(5.64))[10] == pytest.approx(0.5)  # Na is element 11


def test_offset_surrogate_shifts_means_only_and_the_set_concatenates():
    base = MockSurrogate(("heat_ref",), seed=3)
    shifted = OffsetSurrogate(base, -1.0)
    crystals = [perovskite(), rock_salt(5.64)]
    np.testing.assert_allclose(shifted.predict(crystals).mean, base.predict(crystals).mean - 1.0)
    np.testing.assert_allclose(shifted.predict(crystals).std, base.predict(crystals).std)
    both = SurrogateSet([base, MockSurrogate(("dir_gap",), seed=4)])
    assert isinstance(both, EmbeddingSurrogate) and both.properties == ("heat_ref", "dir_gap")
    assert both.predict(crystals).mean.shape == (2, 2) and both.embed(crystals).shape == (2, 190)
    np.testing.assert_array_equal(both.ood_score(crystals), np.ones(2))


def test_gp_surrogate_learns_a_property_of_the_encoder_embedding():
    data = load_dataset("perov_5/val")
    crystals, heat = data.crystals[:120], np.asarray(data.properties["heat_ref"][:120], dtype=float)
    gp = GPSurrogate(MockSurrogate(), ("heat_ref",), ("eV",), GPHeadConfig(n_components=16))
    assert isinstance(gp, Surrogate) and isinstance(gp, TrainableSurrogate)
    gp.fit(crystals[:100], heat[:100, None])
    p = gp.predict(crystals[100:])
    assert p.mean.shape == (20, 1) and np.all(p.std > 0) and p.properties == ("heat_ref",)
    baseline = np.abs(heat[100:] - heat[:100].mean()).mean()  # predicting the training mean
    assert np.abs(p.mean[:, 0] - heat[100:]).mean() < baseline
    with pytest.raises(ValueError, match="1 columns"):
        gp.fit(crystals[:10], np.zeros((10, 2)))


def test_mlip_oracle_is_the_port_with_one_measurement_per_property_per_crystal():
    oracle = MLIPOracleChoice(kind="emt", measure=("energy_per_atom", "e_above_hull"), fmax=0.2, max_steps=20,
                              cache_url="sqlite://", competing_phases={"enabled": False}).build()
    assert isinstance(oracle, MLIPOracle)
    from ase.build import bulk

    from crystaloop.data.crystal import Crystal

    cu, ni = Crystal.from_ase(bulk("Cu", "fcc", a=3.61)), Crystal.from_ase(bulk("Ni", "fcc", a=3.52))
    out = oracle.evaluate([cu, ni])
    assert [m.property for m in out] == ["energy_per_atom", "e_above_hull"] * 2
    assert all(m.status == "ok" for m in out)
    assert abs(out[1].value) < 0.02 and abs(out[3].value) < 0.02  # the elements lie on their own hull
