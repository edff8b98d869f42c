"""The E[score²] table of a noise schedule is integrated once and then read from the cache."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from crystaloop.generator.diffusion import schedules


def test_cached_table_equals_the_integral_and_is_reused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CRYSTALOOP_CACHE_DIR", str(tmp_path))
    first = schedules.NoiseSchedule(50, "cosine", 0.005, 0.5)
    files = list((tmp_path / "schedules").glob("score-moments-*.pt"))
    assert len(files) == 1
    sigmas = first.sigma[1:].to(torch.float64)
    calls = []
    monkeypatch.setattr(schedules, "_score_second_moments", lambda s: calls.append(s) or torch.zeros_like(s))
    second = schedules.NoiseSchedule(50, "cosine", 0.005, 0.5)
    assert not calls and torch.equal(first.sigma_norm, second.sigma_norm)
    monkeypatch.undo()
    expected = schedules._score_second_moments(sigmas.double())
    assert torch.allclose(second.sigma_norm[1:].double(), expected.float().double())
    files[0].write_bytes(b"not a tensor")  # a corrupt cache file is recomputed, not fatal
    monkeypatch.setenv("CRYSTALOOP_CACHE_DIR", str(tmp_path))
    assert torch.equal(schedules.NoiseSchedule(50, "cosine", 0.005, 0.5).sigma_norm, first.sigma_norm)
