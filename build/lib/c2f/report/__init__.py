"""`c2f report`: the papers' tables (tables.py: rows and columns as data), filled from finished runs
(runs.py: finding them, choosing one per row), with the commands for the rows no run fills
(missing.py), counted GFLOPs (pricing.py), figures (figures.py), written by write.py.

May import: c2f's shared modules (config, heads, rundir) and pipeline.backbones (counted GFLOPs);
never c2f.training or c2f.predict."""
from .pricing import paper_baselines
from .write import write_report

__all__ = ["paper_baselines", "write_report"]
