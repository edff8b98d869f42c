"""Library calls leave torch's global state as they found it: RNG stream and thread count."""

from __future__ import annotations

import pytest
import torch

from crystaloop.data.seeding import restores_torch_rng, restores_torch_threads, torch_threads


@pytest.fixture
def threads():
    before = torch.get_num_threads()
    yield before
    torch.set_num_threads(before)


def test_thread_count_is_restored_after_a_call_and_a_block(threads):
    @restores_torch_threads
    def trains() -> int:
        torch.set_num_threads(1 if threads > 1 else 2)
        return torch.get_num_threads()

    inside = trains()
    assert inside != threads and torch.get_num_threads() == threads
    with torch_threads(inside):
        assert torch.get_num_threads() == inside
    assert torch.get_num_threads() == threads
    with torch_threads(None):  # None leaves the setting alone
        assert torch.get_num_threads() == threads


def test_thread_count_is_restored_when_the_call_raises(threads):
    @restores_torch_threads
    def fails() -> None:
        torch.set_num_threads(1 if threads > 1 else 2)
        raise RuntimeError("diverged")

    with pytest.raises(RuntimeError, match="diverged"):
        fails()
    assert torch.get_num_threads() == threads


def test_a_seeded_library_call_leaves_the_users_stream_unchanged():
    @restores_torch_rng
    def seeded() -> torch.Tensor:
        torch.manual_seed(0)
        return torch.rand(3)

    torch.manual_seed(42)
    expected = torch.rand(4)
    torch.manual_seed(42)
    seeded()
    torch.testing.assert_close(torch.rand(4), expected)
