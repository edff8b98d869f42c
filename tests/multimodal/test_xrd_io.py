"""Measured-pattern files: round trip onto the grid, other wavelengths, and clear errors for bad files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from crystaloop.data.errors import DatasetError
from crystaloop.data.testing import random_crystal
from crystaloop.data.xrd_grid import DEFAULT_GRID, N_POINTS, two_theta_grid
from crystaloop.multimodal.xrd import simulate_pattern
from crystaloop.multimodal.xrd_io import read_pattern, read_xy, resample_to_grid, write_xy


@pytest.fixture
def pattern() -> np.ndarray:
    return simulate_pattern(random_crystal(np.random.default_rng(0), n_sites=4))


@pytest.mark.parametrize("suffix", [".xy", ".csv"])
def test_round_trip_on_the_grid(tmp_path: Path, pattern: np.ndarray, suffix: str) -> None:
    path = write_xy(tmp_path / f"p{suffix}", two_theta_grid(), pattern, header="simulated\nCu Ka")
    back = read_pattern(path)
    assert back.shape == (N_POINTS,) and back.dtype == np.float32
    expected = (pattern - pattern.min()) / (pattern.max() - pattern.min())  # the reader removes the baseline
    assert np.abs(back - expected).max() < 1e-5


def test_finer_and_reversed_measurement_resamples_close_to_the_truth(tmp_path: Path, pattern: np.ndarray) -> None:
    fine = np.linspace(4.0, 95.0, 9101)  # 0.01° steps, beyond the grid at both ends
    values = np.interp(fine, two_theta_grid(), pattern) * 1000.0 + 50.0  # counts on a flat background
    path = write_xy(tmp_path / "fine.xy", fine[::-1], values[::-1])
    back = read_pattern(path)
    assert np.corrcoef(back, pattern)[0, 1] > 0.98
    assert np.argmax(back) == pytest.approx(np.argmax(pattern), abs=1)


def test_partial_coverage_is_zero_outside_and_too_little_is_refused(pattern: np.ndarray) -> None:
    x = two_theta_grid()
    half = x <= 60.0
    back = resample_to_grid(x[half], pattern[half])
    assert (back[x > 60.0 + DEFAULT_GRID.step] == 0).all() and back.max() == pytest.approx(1.0)
    with pytest.raises(DatasetError, match="covers 12% of the grid"):
        resample_to_grid(np.linspace(5, 15, 200), np.random.default_rng(0).random(200), source="short.xy")


def test_another_wavelength_is_converted_through_bragg(pattern: np.ndarray) -> None:
    mo = 0.71073  # Mo Kα, Å: the same d-spacings appear at smaller angles
    x = two_theta_grid()
    sin_mo = np.sin(np.radians(x) / 2) * mo / DEFAULT_GRID.wavelength
    x_mo = np.degrees(2 * np.arcsin(sin_mo))
    back = resample_to_grid(x_mo, pattern, wavelength=mo)
    assert np.corrcoef(back, pattern)[0, 1] > 0.99
    with pytest.raises(DatasetError, match="another radiation"):
        resample_to_grid(x_mo, pattern)  # read as Cu Kα it covers 5–40° only


BROKEN = {
    "text_in_data.xy": ("10 1\n" * 25 + "11 abc\n", "line 26"),
    "one_column.xy": ("\n".join(str(10 + i) for i in range(30)) + "\n", "line 1"),
    "unsorted.xy": ("".join(f"{10 + i} {i}\n" for i in range(30)) + "12 5\n", "line 31"),
    "nan.csv": ("two_theta,intensity\n" + "".join(f"{10 + i},{i}\n" for i in range(30)) + "41,nan\n", "line 32"),
    "d_spacing_or_q.xy": ("".join(f"{-1 + i * 0.1:.2f} {i}\n" for i in range(30)), "line 1"),
    "too_short.xy": ("10 1\n11 2\n12 3\n", "only 3 data points"),
    "flat.xy": ("".join(f"{10 + i} 7\n" for i in range(30)), "no peaks"),
    "empty.xy": ("", "no data lines"),
    "comments_only.xy": ("# nothing\n! here\n", "no data lines"),
}


@pytest.mark.parametrize("name", sorted(BROKEN))
def test_broken_files_raise_naming_file_and_line(tmp_path: Path, name: str) -> None:
    text, where = BROKEN[name]
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(DatasetError) as info:
        read_xy(path)
    assert str(path) in str(info.value) and where in str(info.value)


def test_missing_binary_and_unknown_suffix(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="no such pattern file"):
        read_xy(tmp_path / "absent.xy")
    binary = tmp_path / "raw.xy"
    binary.write_bytes(b"\xff\xfe\x00\x81" * 50)
    with pytest.raises(DatasetError, match="cannot read"):
        read_xy(binary)
    other = tmp_path / "pattern.raw"
    other.write_text("10 1\n")
    with pytest.raises(DatasetError, match="allowed: .xy"):
        read_xy(other)


def test_header_and_extra_columns_are_accepted(tmp_path: Path) -> None:
    body = "".join(f"{10 + i * 0.5};{(i % 7) ** 2};{0.1}\n" for i in range(120))
    path = tmp_path / "with_header.csv"
    path.write_text("Instrument: lab\n2theta;counts;esd\n" + body)
    two_theta, intensity = read_xy(path)
    assert two_theta.shape == intensity.shape == (120,)
    assert two_theta[0] == 10.0 and intensity[3] == 9.0
