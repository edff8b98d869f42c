"""crystaloop.flows: see DESIGN.md; built by its own issue."""
