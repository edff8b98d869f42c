"""``crystaloop generate --generator substitution|random_search|template``: the generators that
need no trained checkpoint (the template prior is fitted on its training set when built), built from the same config classes campaigns use
(:data:`crystaloop.generator.registry.GENERATOR_CHOICES`), so the CLI and campaigns validate the
same fields."""

from __future__ import annotations

__all__ = ["UNTRAINED_KINDS", "untrained_generator"]

UNTRAINED_KINDS = ("substitution", "random_search", "template")
"""The generator kinds ``generate --generator`` builds without a trained model."""


def untrained_generator(kind: str, *, library: list[str] | None, exclude: str | None, max_atoms: int | None,
                        default_training: str = "perov_5/train"):  # noqa: ANN201 - a Generator
    """A substitution, random-search or template generator from the CLI's options.

    Args:
        kind: one of :data:`UNTRAINED_KINDS`.
        library: dataset specs or ``store:<URL>`` to substitute into (substitution; default: the
            prototype library alone), or the one dataset spec the template prior learns from
            (template; default ``default_training``).
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
        raise UnknownComponentError("generator", kind, ("auto", "diffusion", *UNTRAINED_KINDS))
    fields: dict = {"kind": kind}
    if kind == "template":
        if exclude or max_atoms is not None:
            raise CrystaloopError("--exclude and --max-atoms limit substitution and random_search; the template generator "
                                  "predicts the structure of one --composition")
        if library and len(library) > 1:
            raise CrystaloopError(f"--generator template learns from one dataset (--library); got {len(library)}: {', '.join(library)}")
        fields["training"] = library[0] if library else default_training
        library = None
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
