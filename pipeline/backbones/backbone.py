"""What a backbone is to phase one: how to build it (with or without its published weights), what
its features are (a pooled vector, its last spatial map, or a snippet's vector), and how a frame is
prepared for it (the weights' evaluation transform: mean, std, the short side's resize over the crop)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from torch import nn

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
KINETICS_MEAN = (0.45, 0.45, 0.45)
KINETICS_STD = (0.225, 0.225, 0.225)


@dataclass(frozen=True)
class Backbone:
    name: str
    kind: str                      # "image" (per frame) or "clip" (per snippet)
    default_size: int
    feature_dim: int
    map_channels: int              # of its last spatial map (0: it has none a -map set can read)
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    build_full: Callable[[str | None], nn.Module]   # weights: None | "imagenet" -> the full classifier
    trunk_of: Callable[[nn.Module], nn.Module] | None   # full -> the module giving its last map (None: no map)
    classifier_prefixes: tuple[str, ...]             # state-dict keys of the classification head
    # the weights' evaluation transform: resize the short side to input x resize_ratio, centre crop
    # the input (ImageNet: 256 for 224, torchvision's weights.transforms(); Kinetics: 256 for 256)
    resize_ratio: float = 256 / 224
    library: str = "torchvision"                     # the package whose model definition it is
    # full -> the module giving the pooled feature; None: the trunk's map, averaged (the presets)
    pooled_of: Callable[[nn.Module], nn.Module] | None = None
    map_stride: int = 32           # input pixels per cell of the map
    clip_frames: int = 0           # a snippet: this many frames, `clip_stride` apart, centred on the sample
    clip_stride: int = 0
    # how the full classifier takes one input (SlowFast: a [slow, fast] pair of pathways); None: as is
    full_input: Callable | None = None


class Headless(nn.Module):
    """The full classifier with its last classification layer made an identity: its pre-logit, pooled
    feature (what a model's own head reads)."""

    def __init__(self, full: nn.Module, head: str):
        super().__init__()
        parent, _, leaf = head.rpartition(".")
        setattr(full.get_submodule(parent) if parent else full, leaf, nn.Identity())
        self.model = full

    def forward(self, x):
        return self.model(x)
