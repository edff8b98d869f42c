"""Unit-cell pictures: a PNG of the asked size with real content, each element in its own colour,
formula and space group in the PNG's text, the same picture for a rotated copy of a crystal."""

from __future__ import annotations

import io

import numpy as np
import pytest
from ase.data.colors import jmol_colors
from PIL import Image

from crystaloop.data.crystal import Crystal, atomic_number
from crystaloop.data.pictures import render_structure, write_structure_png
from crystaloop.data.store.testing import diamond, perovskite
from crystaloop.data.testing import random_rotation


def _pixels(png: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"), dtype=np.float64) / 255.0


def _share_of_hue(pixels: np.ndarray, colour: np.ndarray, tolerance: float = 0.04) -> float:
    """Fraction of saturated pixels (saturation > 0.3) whose hue is within ``tolerance`` (of a
    full turn) of ``colour``'s: depth shading lightens a sphere but keeps its hue."""
    from matplotlib.colors import rgb_to_hsv

    hsv, target = rgb_to_hsv(pixels), rgb_to_hsv(np.asarray(colour, dtype=np.float64))
    distance = np.abs(hsv[..., 0] - target[0])
    distance = np.minimum(distance, 1.0 - distance)
    return float(np.mean((hsv[..., 1] > 0.3) & (distance < tolerance)))


def test_a_perovskite_renders_at_the_asked_size_with_each_element_in_its_colour():
    picture = render_structure(perovskite(), size=(400, 360), caption="#1 test")
    image = Image.open(io.BytesIO(picture.png))
    assert image.format == "PNG" and image.size == (400, 360) == picture.size
    pixels = _pixels(picture.png)
    assert pixels.std() > 0.1  # drawn content, not a blank canvas
    red, green = (_share_of_hue(pixels, jmol_colors[atomic_number(s)]) for s in ("O", "Sr"))  # Jmol: O red, Sr green
    assert red > 0.005 and green > 0.05, (red, green)
    assert picture.elements == ("O", "Ti", "Sr")
    # a crystal without oxygen or strontium has neither colour anywhere
    silicon = _pixels(render_structure(diamond(5.43, "Si")).png)
    assert _share_of_hue(silicon, jmol_colors[8]) < 1e-3 and _share_of_hue(silicon, jmol_colors[38]) < 1e-3


def test_formula_and_space_group_are_in_the_title_and_the_png_text():
    picture = render_structure(perovskite())
    assert (picture.formula, picture.space_group) == ("SrTiO3", "Pm-3m (221)")
    text = Image.open(io.BytesIO(picture.png)).text
    assert text["Title"] == "SrTiO3" and text["SpaceGroup"] == "Pm-3m (221)"
    assert "symprec 0.1" in text["Description"]


@pytest.mark.parametrize("seed", [0, 1])
def test_a_rotated_crystal_gives_the_same_picture(seed):
    crystal = Crystal.from_symbols(np.array([[4.1, 0.0, 0.0], [0.9, 5.2, 0.0], [0.4, -0.7, 6.3]]),
                                   [[0.0, 0.0, 0.0], [0.3, 0.5, 0.2], [0.6, 0.1, 0.7]], ["Ba", "Ti", "O"])
    rotated = random_rotation(crystal, np.random.default_rng(seed))
    assert not np.allclose(rotated.lattice, crystal.lattice)
    first, second = render_structure(crystal), render_structure(rotated)
    assert (first.formula, first.space_group, first.elements) == (second.formula, second.space_group, second.elements)
    assert np.abs(_pixels(first.png) - _pixels(second.png)).mean() < 1e-3


def test_write_makes_folders_and_small_sizes_are_refused(tmp_path):
    path = tmp_path / "deep" / "cell.png"
    picture = write_structure_png(perovskite(), path)
    assert path.read_bytes() == picture.png
    with pytest.raises(ValueError, match=r"\(10, 10\).*64"):
        render_structure(perovskite(), size=(10, 10))
