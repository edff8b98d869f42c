"""``crystaloop generate --generator substitution|random_search``: the generators that need no
training, built from the same config classes campaigns use
(:data:`crystaloop.generator.registry.GENERATOR_CHOICES`), so the CLI and campaigns validate the
same fields."""

from __future__ import annotations

__all__ = ["UNTRAINED_KINDS", "untrained_generator"]

UNTRAINED_KINDS = ("substitution", "random_search")
"""The generator kinds ``generate --generator`` builds without a trained model."""


def untrained_generator(kind: str, *, library: list[str] | None, exclude: str | None, max_atoms: int | None):  # noqa: ANN201 - a Generator
    """A substitution or random-search generator from the CLI's options.

    Args:
        kind: ``substitution`` or ``random_search``.
        library: dataset specs or ``store:<URL>`` to substitute into (substitution; default: the
            prototype library alone).
        exclude: elements never used, dash- or comma-separated (``Pb-Cd``).
        max_atoms: most sites per cell.

    Raises:
        UnknownComponentError: ``kind`` is neither; CrystaloopError: a bad option value (named).
    """
    import re

    from pydantic import ValidationError

    from crystaloop.data.errors import CrystaloopError, UnknownComponentError, describe_validation_error
    from crystaloop.generator.registry import GENERATOR_CHOICES

    if kind not in UNTRAINED_KINDS:
        raise UnknownComponentError("generator", kind, ("diffusion", *UNTRAINED_KINDS))
    fields: dict = {"kind": kind}
    if exclude:
        fields["exclude"] = tuple(s for s in re.split(r"[-,\s]+", exclude) if s)
    if max_atoms is not None:
        fields["max_atoms"] = max_atoms
    if kind == "substitution" and library:
        fields["library"] = tuple(library)
    elif library:
        raise CrystaloopError(f"--library feeds the substitution generator; --generator {kind} takes none")
    try:
        choice = GENERATOR_CHOICES[kind].model_validate(fields)
    except ValidationError as exc:
        raise CrystaloopError(f"--generator {kind}: {describe_validation_error(exc)}") from None
    return choice.build()
