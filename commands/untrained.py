"""``crystaloop generate --generator substitution|random_search``: the generators that need no
training, built through the loop's registry (:func:`crystaloop.loop.components.make_generator`)
so the CLI and campaigns validate the same fields."""

from __future__ import annotations

__all__ = ["GENERATOR_KINDS", "untrained_generator"]

GENERATOR_KINDS = ("diffusion", "substitution", "random_search")


def untrained_generator(kind: str, *, library: list[str] | None, exclude: str | None, max_atoms: int | None):  # noqa: ANN201 - a Generator
    """A substitution or random-search generator from the CLI's options.

    Args:
        kind: ``substitution`` or ``random_search``.
        library: dataset specs or ``store:<URL>`` to substitute into (substitution; default: the
            prototype library alone).
        exclude: elements never used, dash- or comma-separated (``Pb-Cd``).
        max_atoms: most sites per cell.
    """
    import re

    from crystaloop.data.errors import UnknownComponentError
    from crystaloop.loop.components import make_generator
    from crystaloop.loop.config import GeneratorChoice

    if kind not in GENERATOR_KINDS[1:]:
        raise UnknownComponentError("generator", kind, GENERATOR_KINDS)
    fields: dict = {"kind": kind}
    if exclude:
        fields["exclude"] = tuple(s for s in re.split(r"[-,\s]+", exclude) if s)
    if max_atoms is not None:
        fields["max_atoms"] = max_atoms
    if kind == "substitution" and library:
        fields["library"] = tuple(library)
    elif library:
        from crystaloop.data.errors import CrystaloopError

        raise CrystaloopError(f"--library feeds the substitution generator; --generator {kind} takes none")
    return make_generator(GeneratorChoice(**fields))
