"""Phase-two heads, one file per method, behind `Head` (base.py). Each head file registers its
methods (c2f.methods); importing this package imports every module in it, so a new file is a
new method."""
from __future__ import annotations

import importlib
import pkgutil

from ..methods import method
from .base import Head, HeadDims, HeadOutput

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")


def build_head(cfg, dims: HeadDims) -> Head:
    """The head of cfg.method (a TrainConfig), sized by the cache's dimensions."""
    return method(cfg.method).build(dims, cfg)


__all__ = ["Head", "HeadDims", "HeadOutput", "build_head"]
