"""Parsing OPTIMADE filter text: the optimade package's v1.2 grammar, a fast path, one leniency.

:func:`parse_filter` returns the lark tree of a filter; :func:`rewrite_length_first` turns the
list-last ``LENGTH elements = 3`` that people write by hand into OPTIMADE's ``elements LENGTH = 3``
(the translator retries with it, and says so in a warning).
"""

from __future__ import annotations

import re
import threading
from functools import lru_cache
from typing import Any

from lark import Tree

from crystaloop.data.optimade.errors import BadFilterError

__all__ = ["parse_filter", "rewrite_length_first", "GRAMMAR_VERSION"]

GRAMMAR_VERSION = (1, 2, 0)
"""Version of the optimade package's filter grammar used."""
_parser_lock = threading.Lock()
_parser: Any = None


def _parsers() -> tuple[Any, Any]:
    """(LALR parser built from the optimade v1.2 grammar file, the optimade ``LarkParser``), built once."""
    global _parser
    with _parser_lock:
        if _parser is None:
            from lark import Lark
            from optimade.filterparser import LarkParser
            from optimade.filterparser.lark_parser import AVAILABLE_PARSERS

            grammar = AVAILABLE_PARSERS[GRAMMAR_VERSION]["default"].read_text()
            _parser = (Lark(grammar, parser="lalr", maybe_placeholders=False), LarkParser(version=GRAMMAR_VERSION))
        return _parser


@lru_cache(maxsize=2048)
def parse_filter(text: str) -> Tree:
    """The OPTIMADE v1.2 parse tree of ``text`` (cached: repeated filters are parsed once).

    The optimade package's grammar is run through lark's LALR parser first (about 40× faster than
    the Earley parser :class:`optimade.filterparser.LarkParser` uses; the trees are identical, which
    a test checks on generated filters). Whatever LALR rejects goes to ``LarkParser`` itself, so the
    reference parser decides every rejection and words the error.

    Raises:
        BadFilterError: not valid OPTIMADE filter syntax (the message quotes the parser's complaint).
    """
    from lark.exceptions import LarkError
    from optimade.exceptions import BadRequest

    fast, reference = _parsers()
    try:
        return fast.parse(text)
    except LarkError:
        pass
    except RecursionError:
        raise BadFilterError("filter is nested too deeply", parameter="filter") from None
    try:
        return reference.parse(text)
    except BadRequest as exc:
        detail = str(getattr(exc, "detail", exc)).split("Lark traceback:", 1)[-1].strip()
        first = re.sub(r"\s+", " ", " ".join(detail.splitlines()[:3]))[:300]
        raise BadFilterError(f"cannot parse filter {text[:200]!r}: {first}", parameter="filter") from None
    except RecursionError:
        raise BadFilterError("filter is nested too deeply", parameter="filter") from None


_STRING_LITERAL = re.compile(r'"(?:[^"\\]|\\.)*"')
_LENGTH_FIRST = re.compile(r"\bLENGTH\s+([a-z_][a-z_0-9]*)\s*(<=|>=|!=|<|>|=)?\s*([+-]?\d+)")


def rewrite_length_first(text: str) -> str | None:
    """``text`` with ``LENGTH prop op n`` (outside string literals) moved to ``prop LENGTH op n``.

    OPTIMADE writes the list first (``elements LENGTH 3``); the list-last form is common enough
    in hand-written filters to accept it, with a warning. ``None`` when there is nothing to move.
    """
    parts, last, changed = [], 0, False
    for literal in _STRING_LITERAL.finditer(text):
        chunk, n = _LENGTH_FIRST.subn(r"\1 LENGTH \2 \3", text[last : literal.start()])
        parts += [chunk, literal.group()]
        changed |= n > 0
        last = literal.end()
    chunk, n = _LENGTH_FIRST.subn(r"\1 LENGTH \2 \3", text[last:])
    parts.append(chunk)
    changed |= n > 0
    return "".join(parts) if changed else None
