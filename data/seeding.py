"""Explicit seeds without side effects: library calls that seed torch leave its global state as
they found it.

:func:`restores_torch_rng` wraps a function that calls ``torch.manual_seed`` (botorch and
gpytorch draw from torch's global generator, so a seeded fit or acquisition must seed it): the
global CPU generator's state is saved before the call and restored after, so a user's own
``torch.manual_seed(...)`` stream is unchanged by a campaign step.

:func:`torch_threads` (a context manager) and :func:`restores_torch_threads` (a decorator) do the
same for torch's intra-op thread count: training and oracle calls set the count they were
configured with and put the caller's back afterwards.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Iterator
from typing import ParamSpec, TypeVar

__all__ = ["restores_torch_rng", "restores_torch_threads", "torch_threads"]

P = ParamSpec("P")
R = TypeVar("R")


def restores_torch_rng(function: Callable[P, R]) -> Callable[P, R]:
    """Decorator: run ``function``, then put torch's global CPU random state back."""

    @functools.wraps(function)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        import torch

        state = torch.random.get_rng_state()
        try:
            return function(*args, **kwargs)
        finally:
            torch.random.set_rng_state(state)

    return wrapper


def restores_torch_threads(function: Callable[P, R]) -> Callable[P, R]:
    """Decorator: run ``function`` (which may call ``torch.set_num_threads``), then put torch's
    intra-op thread count back."""

    @functools.wraps(function)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        import torch

        threads = torch.get_num_threads()
        try:
            return function(*args, **kwargs)
        finally:
            torch.set_num_threads(threads)

    return wrapper


@contextlib.contextmanager
def torch_threads(threads: int | None) -> Iterator[None]:
    """Set torch's intra-op threads for the duration and restore them after (``None``: leave
    them). One thread is often several times faster for cells of a few tens of atoms, and far
    faster on a machine whose cores are busy with other work."""
    if threads is None:
        yield
        return
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)
