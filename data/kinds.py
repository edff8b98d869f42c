"""Configs chosen by ``kind``: one pydantic discriminated union per component family.

Each component (a strategy, an oracle, a generator) owns its config class beside its code, with a
``kind`` field; a registry module lists them once, by kind::

    StrategyChoice = kind_union({"random": RandomConfig, "bo": BOConfig, ...}, default="random")

A YAML mapping is then validated against the one class its ``kind`` names, so an unknown kind
fails when the file is read, naming the allowed kinds, and a field that belongs to another kind
(``beta`` on a ``bo`` strategy) fails as an unknown field of that kind. A mapping without ``kind``
gets ``default``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, Union

from pydantic import BaseModel, Discriminator, Tag

__all__ = ["kind_union", "kind_of", "tag", "TAG_PREFIX"]

TAG_PREFIX = "kind="


def kind_of(default: str):  # noqa: ANN201 - a pydantic discriminator callable
    """A discriminator reading ``kind`` from a mapping or a model (``default`` when absent)."""

    def kind(value: Any) -> str:
        if isinstance(value, Mapping):
            return tag(str(value.get("kind", default)))
        return tag(str(getattr(value, "kind", default)))

    return kind


def tag(kind: str) -> str:
    """The union tag of ``kind`` (``"kind=bo"``): it appears in validation error locations, where
    :func:`~crystaloop.data.errors.describe_validation_error` reads it back as "kind 'bo'"."""
    return f"{TAG_PREFIX}{kind}"


def kind_union(choices: Mapping[str, type[BaseModel]], *, default: str) -> Any:
    """``Annotated[Union[...], Discriminator]`` over ``choices`` (kind → config class; one class
    may serve several kinds). Unknown kinds fail naming ``choices``' keys."""
    if default not in choices:
        raise ValueError(f"default kind {default!r} is not among {sorted(choices)}")
    members = tuple(Annotated[cls, Tag(tag(kind))] for kind, cls in choices.items())
    discriminator = Discriminator(
        kind_of(default), custom_error_type="unknown_kind",
        custom_error_message=f"unknown kind; allowed: {', '.join(choices)}",
    )
    return Annotated[Union[members], discriminator]  # noqa: UP007 - a runtime-built union
