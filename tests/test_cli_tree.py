"""The shape of the `crystaloop` command tree: each command once, cli.py only assembles, --help is cheap."""

from __future__ import annotations

import ast
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from crystaloop.cli import app

ROOT = Path(__file__).resolve().parents[1]
runner = CliRunner()


def _walk(typer_app: typer.Typer, path: tuple[str, ...] = ()):
    """(path, name, callback) of every command and (path, name, None) of every group, depth first."""
    for info in typer_app.registered_commands:
        yield path, info.name or info.callback.__name__.replace("_", "-"), info.callback
    for group in typer_app.registered_groups:
        name = group.name or group.typer_instance.info.name
        yield path, name, None
        yield from _walk(group.typer_instance, (*path, name))


def test_every_command_is_registered_once() -> None:
    entries = list(_walk(app))
    names = Counter((path, name) for path, name, _ in entries)
    assert not [key for key, n in names.items() if n > 1], "a name is registered twice in one group"
    callbacks = Counter(callback for _, _, callback in entries if callback is not None)
    twice = {f"{cb.__module__}.{cb.__qualname__}" for cb, n in callbacks.items() if n > 1}
    assert not twice, f"registered under more than one name: {sorted(twice)}"
    assert len(callbacks) > 30  # the walk sees the whole tree
    assert ((), "search") in names and (("multimodal",), "search") not in names


def test_cli_module_defines_no_commands() -> None:
    tree = ast.parse((ROOT / "cli.py").read_text())
    decorated = [
        node.name
        for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef)
        for decorator in node.decorator_list
        if isinstance(decorator, ast.Call) and isinstance(decorator.func, ast.Attribute) and decorator.func.attr == "command"
    ]
    assert decorated == []


def test_help_loads_no_heavy_library() -> None:
    heavy = ("torch", "prefect", "chgnet", "sevenn", "ase", "pymatgen", "crystaloop.surrogates.oracles")
    code = (
        "import sys\nfrom typer.testing import CliRunner\nfrom crystaloop.cli import app\n"
        "result = CliRunner().invoke(app, ['--help'])\nassert result.exit_code == 0, result.output\n"
        f"print(sorted(m for m in {heavy!r} if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr


@pytest.mark.parametrize("command", [("oracle", "relax"), ("hull", "eval"), ("hull", "show"), ("hull", "add")])
def test_oracle_help_lists_the_registry(command: tuple[str, ...]) -> None:
    from crystaloop.surrogates.oracles.registry import ORACLES

    result = runner.invoke(app, [*command, "--help"], env={"COLUMNS": "250"})
    assert result.exit_code == 0, result.output
    assert " | ".join(ORACLES) in result.output and "{oracles}" not in result.output
