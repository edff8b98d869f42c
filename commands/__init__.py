"""CLI command groups, one module per component (``crystaloop <group> <command>``).

``cli.py`` is the single entry point; it assembles the typer sub-apps defined here so no module
grows past a readable size. Modules here may import any crystaloop package (they are the edge).
"""
