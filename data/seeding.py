"""Explicit seeds without side effects: library calls that seed torch leave its global state as
they found it.

:func:`restores_torch_rng` wraps a function that calls ``torch.manual_seed`` (botorch and
gpytorch draw from torch's global generator, so a seeded fit or acquisition must seed it): the
global CPU generator's state is saved before the call and restored after, so a user's own
``torch.manual_seed(...)`` stream is unchanged by a campaign step.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import ParamSpec, TypeVar

__all__ = ["restores_torch_rng"]

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
