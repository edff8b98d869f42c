"""Element and composition descriptors: chemically similar elements and compositions sit close."""

from __future__ import annotations

import numpy as np
import pytest

from crystaloop.data.crystal import Crystal
from crystaloop.data.elements import (
    COMPOSITION_DIM,
    N_DESCRIPTORS,
    composition_descriptor,
    composition_descriptors,
    element_descriptor,
)
from crystaloop.data.store.testing import perovskite
from crystaloop.loop.guards.fingerprints import FINGERPRINT_DIM, SELECTION_DIM, fingerprints, selection_features


def _distance(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(a - b))


def test_element_descriptor_groups_elements_by_role():
    assert element_descriptor("Sr").shape == (N_DESCRIPTORS,)
    assert _distance(element_descriptor("Sr"), element_descriptor("Ba")) < _distance(element_descriptor("Sr"), element_descriptor("F"))
    with pytest.raises(Exception, match="Xx"):
        element_descriptor("Xx")


def test_composition_descriptor_is_site_order_free_and_chemically_graded():
    srtio3 = perovskite(a_site="Sr", b_site="Ti")
    order = np.array([4, 2, 0, 3, 1])
    permuted = Crystal(srtio3.lattice, srtio3.frac_coords[order], srtio3.numbers[order])
    np.testing.assert_allclose(composition_descriptor(srtio3), composition_descriptor(permuted))
    assert composition_descriptor(srtio3).shape == (COMPOSITION_DIM,)
    # BaZrO3 shares no element with SrTiO3 but is closer to it than SrTiN3 (same cations, other anion)
    near = _distance(composition_descriptor(srtio3), composition_descriptor(perovskite(a_site="Ba", b_site="Zr")))
    far = _distance(composition_descriptor(srtio3), composition_descriptor(perovskite(a_site="Cs", b_site="Ti", anion="F")))
    assert near < far
    # atomic fractions cannot grade cations: BaTiO3 and PbTiO3 are equally far from SrTiO3 there
    fp = fingerprints([srtio3, perovskite(a_site="Ba"), perovskite(a_site="Pb")])[:, :103]
    assert _distance(fp[0], fp[1]) == pytest.approx(_distance(fp[0], fp[2]))
    ba, pb = (composition_descriptor(perovskite(a_site=a)) for a in ("Ba", "Pb"))
    assert _distance(composition_descriptor(srtio3), ba) < _distance(composition_descriptor(srtio3), pb)


def test_selection_features_are_fingerprint_then_composition():
    crystals = [perovskite(), perovskite(a_site="Ba", b_site="Zr")]
    features = selection_features(crystals)
    assert features.shape == (2, SELECTION_DIM)
    np.testing.assert_allclose(features[:, :FINGERPRINT_DIM], fingerprints(crystals))
    np.testing.assert_allclose(features[:, FINGERPRINT_DIM:], composition_descriptors(crystals))
    assert selection_features([]).shape == (0, SELECTION_DIM)


def test_campaign_without_a_surrogate_gives_strategies_the_selection_features():
    from crystaloop.data.records import Candidate, Provenance
    from crystaloop.loop.campaign import _embed
    from crystaloop.loop.components import Components

    crystals = [perovskite(), perovskite(a_site="Ba", b_site="Zr")]
    candidates = Candidate.from_crystals(crystals, Provenance(component="test"))
    components = Components(generator=None, oracle=None, strategy=None, guards=[])  # type: ignore[arg-type]
    np.testing.assert_allclose(_embed(components, candidates), selection_features(crystals))
