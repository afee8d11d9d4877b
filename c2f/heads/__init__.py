"""Phase-two methods, one file (AdaFocus: one package) per method, each a head behind `Head`
(c2f.blocks.head) built from the blocks in c2f.blocks. Each head file defines its
settings dataclass and registers its methods (c2f.methods); importing this package imports every
module in it, so a new file is a new method, and this is where the full list is asked for.

May import: c2f.blocks, c2f.methods, c2f.data and pipeline.core (settings, FLOP counting); nothing that
trains, predicts or reports."""
from __future__ import annotations

import importlib
import pkgutil

from pipeline.core.errors import SettingsError

from ..methods import Method, registered
from ..blocks.head import Head, HeadDims, HeadOutput

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")


def methods() -> dict[str, Method]:
    """Every registered method, by name."""
    return registered()


def method(name: str) -> Method:
    known = registered()
    if name not in known:
        raise SettingsError(f"unknown method {name!r}", f"choose one of {', '.join(known)}")
    return known[name]


def build_head(cfg, dims: HeadDims) -> Head:
    """The head of cfg.method (a TrainConfig), sized by the cache's dimensions."""
    return cfg.record.build(dims, cfg.method_settings)


__all__ = ["Head", "HeadDims", "HeadOutput", "build_head", "method", "methods"]
