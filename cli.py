"""The `crystaloop` command line: ``crystaloop <group> <command>``.

This module only assembles the typer app: each group and top-level command lives in its own
module under :mod:`crystaloop.commands` and is registered here exactly once. Heavy libraries
(torch, prefect, the MLIPs) are imported inside the commands, so ``crystaloop --help`` answers at
once. Store URLs are SQLAlchemy URLs, taken from ``--store`` or ``CRYSTALOOP_DB_URL``.
"""

from __future__ import annotations

from typing import Annotated

import typer

from crystaloop.commands.campaign import campaign_app
from crystaloop.commands.common import CommandGroup
from crystaloop.commands.data import data_app
from crystaloop.commands.db import db_app
from crystaloop.commands.demo import demo
from crystaloop.commands.flows import deploy, flow_run, pause, resume, server_app, trigger
from crystaloop.commands.generator import generate, generator_app
from crystaloop.commands.hull import hull_app
from crystaloop.commands.logs import configure_logging
from crystaloop.commands.multimodal import multimodal_app, search
from crystaloop.commands.oracle import oracle_app
from crystaloop.commands.serve import serve
from crystaloop.commands.solve_xrd import solve_xrd
from crystaloop.commands.surrogate import surrogate_app

__all__ = ["app", "main"]

app = typer.Typer(help="crystaloop: closed-loop inverse materials design.", no_args_is_help=True, add_completion=False, cls=CommandGroup)

GROUPS: dict[str, typer.Typer] = {
    "data": data_app,
    "db": db_app,
    "surrogate": surrogate_app,
    "oracle": oracle_app,
    "hull": hull_app,
    "generator": generator_app,
    "campaign": campaign_app,
    "server": server_app,
    "multimodal": multimodal_app,
}
"""``crystaloop <group>`` → its sub-app (in the order ``--help`` lists them)."""

for _name, _group in GROUPS.items():
    app.add_typer(_group, name=_name)
for _name, _command in {"generate": generate, "search": search, "solve-xrd": solve_xrd, "demo": demo, "serve": serve}.items():
    app.command(_name)(_command)
# the Prefect side of campaigns (commands/flows.py) joins `campaign run` in the campaign group
for _name, _command in {"deploy": deploy, "pause": pause, "resume": resume, "trigger": trigger, "flow": flow_run}.items():
    campaign_app.command(_name)(_command)


@app.callback()
def _configure(
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Show debug logs, third-party warnings and progress bars, and Prefect's full run log.")] = False,
) -> None:
    configure_logging(verbose)


def main() -> None:
    """Entry point of the ``crystaloop`` console script."""
    app()


if __name__ == "__main__":
    main()
