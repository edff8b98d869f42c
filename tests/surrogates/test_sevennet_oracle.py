"""SevenNet-0 from the sevenn wheel as a second, independent oracle (skipped without sevenn)."""

from __future__ import annotations

import math

import pytest
from ase.build import bulk

from crystaloop.data.crystal import Crystal
from crystaloop.data.errors import UnknownComponentError
from crystaloop.surrogates.oracles import CHGNetOracle, SevenNetOracle
from crystaloop.surrogates.oracles.sevennet import sevennet_checkpoint


def test_unknown_sevennet_model_is_refused() -> None:
    with pytest.raises(UnknownComponentError, match="7net-0"):
        SevenNetOracle(model="7net-omni")


def test_checkpoint_ships_in_the_wheel() -> None:
    pytest.importorskip("sevenn")
    assert sevennet_checkpoint("7net-0").stat().st_size > 1_000_000


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::UserWarning")
def test_sevennet_single_point_agrees_with_chgnet_on_silicon() -> None:
    pytest.importorskip("sevenn")
    silicon = Crystal.from_ase(bulk("Si", "diamond", a=5.43))
    (seven,) = SevenNetOracle(threads=1).single_point([silicon])
    (chg,) = CHGNetOracle(threads=1).single_point([silicon])
    assert seven.status == "ok" and math.isfinite(seven.value), seven.reason
    assert seven.oracle == "sevennet-7net-0"
    assert abs(seven.value - chg.value) < 0.5  # both MPtrj-trained: about -5.40 and -5.31 eV/atom
