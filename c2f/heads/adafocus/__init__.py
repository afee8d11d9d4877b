"""AdaFocus and AdaFocus+ (Wang et al., ICCV 2021) on cached glance maps and patch grids: the head and
its two methods (head.py), stage II's rollouts (rollouts.py) and its objectives on every candidate's
reward (expected.py), and frame-by-frame inference for early exit (steps.py).

May import what every method may (c2f.blocks, c2f.methods, c2f.data, pipeline.core)."""
from .head import AdaFocusHead, AdaFocusPlusSettings, AdaFocusSettings

__all__ = ["AdaFocusHead", "AdaFocusPlusSettings", "AdaFocusSettings"]
