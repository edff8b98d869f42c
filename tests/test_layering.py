"""Imports follow DESIGN.md: flows → loop → {generator, surrogates, multimodal} → data.

Parses every module of the package (no import needed) and fails on any import against the
layering, naming the file, line and the forbidden package.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("data", "generator", "surrogates", "multimodal", "loop", "flows")
# package → crystaloop packages it may import (itself always allowed)
ALLOWED = {
    "data": set(),
    "generator": {"data"},
    "surrogates": {"data"},
    "multimodal": {"data"},
    "loop": {"data", "generator", "surrogates", "multimodal"},
    "flows": {"data", "generator", "surrogates", "multimodal", "loop"},
}
# third-party packages confined to one layer
CONFINED = {"prefect": "flows", "prefect_dask": "flows"}


def _imports(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
        elif isinstance(node, ast.ImportFrom) and node.level > 0:
            found.append((node.lineno, "." * node.level + (node.module or "")))
    return found


def _violations(root: Path = ROOT) -> list[str]:
    problems = []
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            for line, module in _imports(path):
                where = f"{path.relative_to(root)}:{line}"
                if module.startswith("."):
                    if module.startswith(".."):
                        problems.append(f"{where}: relative import {module!r} leaves the package; import crystaloop.<pkg> explicitly")
                    continue
                parts = module.split(".")
                if parts[0] == "crystaloop" and len(parts) > 1 and parts[1] in PACKAGES:
                    target = parts[1]
                    if target != package and target not in ALLOWED[package]:
                        problems.append(f"{where}: {package} must not import crystaloop.{target}")
                if parts[0] in PACKAGES and parts[0] != "crystaloop":
                    problems.append(f"{where}: import {module!r} bypasses the crystaloop package name")
                if parts[0] in CONFINED and package != CONFINED[parts[0]]:
                    problems.append(f"{where}: {parts[0]} may only be imported in {CONFINED[parts[0]]}/")
    return problems


def test_layering_is_respected() -> None:
    problems = _violations()
    assert not problems, "layering violations:\n" + "\n".join(problems)


def test_checker_catches_a_violation(tmp_path: Path) -> None:
    """The checker itself must fail on a bad import (guards against a checker that sees nothing)."""
    fake_root = tmp_path / "pkg"
    for package in PACKAGES:
        (fake_root / package).mkdir(parents=True)
    (fake_root / "data" / "bad.py").write_text("from crystaloop.loop import campaign\nimport prefect\n")
    (fake_root / "generator" / "bad.py").write_text("import crystaloop.surrogates.models\n")
    problems = _violations(fake_root)
    assert any("data must not import crystaloop.loop" in p for p in problems)
    assert any("prefect may only be imported in flows/" in p for p in problems)
    assert any("generator must not import crystaloop.surrogates" in p for p in problems)
