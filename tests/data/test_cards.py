"""Dataset cards: one per dataset, looked up by name, unknown names refused with the known ones."""

from __future__ import annotations

from pathlib import Path

import pytest

from crystaloop.data.datasets import PROPERTY_UNITS, SHIPPED_DATASETS, load_dataset, property_unit
from crystaloop.data.datasets.cards import DATASET_CARDS, card_for_spec, dataset_card
from crystaloop.data.errors import UnknownComponentError
from crystaloop.generator.presets import PRESETS, build_config, preset_for


def test_cards_hold_the_published_facts() -> None:
    assert sorted(DATASET_CARDS) == ["carbon_24", "mp_20", "perov_5"]
    perov, carbon, mp20 = (dataset_card(n) for n in ("perov_5", "carbon_24", "mp_20"))
    assert perov.size == 18928 and carbon.size == 10153 and mp20.split_sizes["train"] == 27136
    assert (perov.coverage.structure, perov.coverage.composition) == (0.2, 4.0)
    assert (mp20.coverage.structure, mp20.coverage.composition) == (0.4, 10.0)
    assert perov.unit("heat_ref") == "eV" and mp20.unit("formation_energy_per_atom") == "eV/atom"
    assert dataset_card("perov_5/val") is perov
    for card in DATASET_CARDS.values():
        assert set(card.conditioning) <= set(card.properties)


def test_unknown_names_are_refused_with_the_known_ones() -> None:
    with pytest.raises(UnknownComponentError, match="unknown dataset 'perov5'; allowed: carbon_24, mp_20, perov_5"):
        dataset_card("perov5")
    with pytest.raises(UnknownComponentError, match="allowed: dir_gap, heat_all, heat_ref, ind_gap"):
        dataset_card("perov_5").unit("band_gap")
    with pytest.raises(UnknownComponentError, match="dataset name or path 'perov5/train'"):
        card_for_spec("perov5/train")
    with pytest.raises(UnknownComponentError):
        preset_for("carbon24")


def test_a_users_own_file_has_no_card(tmp_path: Path) -> None:
    own = tmp_path / "mine.csv"
    own.write_text("")
    assert card_for_spec(own) is None and preset_for(str(own)) == {}


def test_units_shipped_splits_and_presets_read_the_cards() -> None:
    for card in DATASET_CARDS.values():
        for prop, unit in card.properties.items():
            assert PROPERTY_UNITS[prop] == unit  # one unit per column across cards
    assert property_unit("my_column") == ""
    assert SHIPPED_DATASETS == {"perov_5": ("train", "val"), "carbon_24": ("train", "val")}
    assert load_dataset("perov_5/val").units == {p: "eV" for p in ("heat_all", "heat_ref", "dir_gap", "ind_gap")}
    assert set(PRESETS) <= set(DATASET_CARDS)
    assert build_config("perov_5/train").network.properties == ["heat_ref", "dir_gap"]
    assert build_config("carbon_24").max_atoms == 24
    assert preset_for("mp_20/train") == {}  # carded, no tuned preset: GeneratorConfig defaults
    first = preset_for("perov_5")
    first["network"]["properties"].append("x")
    assert preset_for("perov_5")["network"]["properties"] == ["heat_ref", "dir_gap"]  # copies, not the table
