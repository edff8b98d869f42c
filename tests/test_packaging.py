"""The wheel holds every library package: pyproject's explicit ``packages`` list names each folder with an
``__init__.py`` (a subpackage left out installs in editable mode but is missing from a built wheel)."""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NOT_SHIPPED = {"crystaloop.benchmarks"}  # research scripts run from a checkout (`make bench`), not library code


def _packages_on_disk() -> set[str]:
    found = set()
    for init in ROOT.rglob("__init__.py"):
        parts = init.parent.relative_to(ROOT).parts
        if parts and (parts[0] in {"tests", "runs", "build"} or any(part.startswith(".") for part in parts)):
            continue
        found.add(".".join(("crystaloop", *parts)))
    return found


def test_every_library_package_is_listed_for_the_wheel() -> None:
    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    on_disk = _packages_on_disk()
    assert on_disk - NOT_SHIPPED - listed == set(), "add these to [tool.setuptools] packages in pyproject.toml"
    assert listed - on_disk == set(), "pyproject.toml lists packages that do not exist"
