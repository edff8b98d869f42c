"""The wheel holds every library package: pyproject's explicit ``packages`` list names each folder with an
``__init__.py`` (a subpackage left out installs in editable mode but is missing from a built wheel)."""

from __future__ import annotations

import os
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NOT_SHIPPED = {"crystaloop.benchmarks"}  # research scripts run from a checkout (`make bench`), not library code


def _packages_on_disk() -> set[str]:
    """Dotted names of the folders under the root that hold an ``__init__.py`` (tests, runs and dot-folders pruned)."""
    found = set()
    for folder, subfolders, files in os.walk(ROOT):
        relative = Path(folder).relative_to(ROOT).parts
        subfolders[:] = [name for name in subfolders if not name.startswith(".") and not (not relative and name in {"tests", "runs", "build"})]
        if "__init__.py" in files:
            found.add(".".join(("crystaloop", *relative)))
    return found


def test_every_library_package_is_listed_for_the_wheel() -> None:
    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    on_disk = _packages_on_disk()
    assert on_disk - NOT_SHIPPED - listed == set(), "add these to [tool.setuptools] packages in pyproject.toml"
    assert listed - on_disk == set(), "pyproject.toml lists packages that do not exist"
