"""Backbone registry and feature-set grammar: a name -> (builder, default input size, kind), like
timm's model registry, and what a *feature set* (DESIGN.md's FEATURE_SET) is:

    mobilenet_v2@112             pooled vector per frame
    resnet101@224, resnet101     pooled vector per frame (default size 224)
    mobilenet_v2@224-map         the last spatial map per frame (the AdaFocus glance)
    resnet50@224-grid7x128       pooled vector per candidate patch: G x G patches of P px cut
                                 from the 224 px frame (the AdaFocus focus)
    slowfast_r50                 pooled vector per 8x8 snippet centred on each sampled time

Every 2D backbone is reduced to a *trunk* that returns its last feature map; the pooled
feature is the global average of that map, which is exactly what each model's own head does.
A feature set also says how a decoded frame becomes its input (`prepare`, `cut_patches`).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from ..core.errors import SettingsError
from .weights import slowfast_builder, timm_builder, torchvision_builder

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
KINETICS_MEAN = (0.45, 0.45, 0.45)
KINETICS_STD = (0.225, 0.225, 0.225)

# SlowFast 8x8: the fast pathway reads 32 frames at stride 2 over a 64-frame window, the slow
# pathway every 4th of those (8 frames at stride 8).
CLIP_WINDOW = 64
CLIP_STRIDE = 2
SLOWFAST_ALPHA = 4


@dataclass(frozen=True)
class Backbone:
    name: str
    kind: str                      # "image" (per frame) or "clip" (per snippet)
    default_size: int
    feature_dim: int
    map_channels: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    build_full: Callable[[str | None], nn.Module]   # weights: None | "imagenet" -> full classifier
    trunk_of: Callable[[nn.Module], nn.Module]      # full model -> module returning the feature map
    classifier_prefixes: tuple[str, ...]             # state-dict keys of the classification head
    # the weights' evaluation transform: resize the short side to input x resize_ratio, centre crop
    # the input (ImageNet: 256 for 224, torchvision's weights.transforms(); Kinetics: 256 for 256)
    resize_ratio: float = 256 / 224
    library: str = "torchvision"                     # the package whose model definition it is


REGISTRY: dict[str, Backbone] = {}


def register(backbone: Backbone) -> Backbone:
    REGISTRY[backbone.name] = backbone
    return backbone


class _TimmTrunk(nn.Module):
    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, x):
        return self.model.forward_features(x)


class _SlowFastPooled(nn.Module):
    """SlowFast up to its pooled 2304-d feature: the head with its projection removed."""

    def __init__(self, model):
        super().__init__()
        model.blocks[-1].proj = nn.Identity()
        model.blocks[-1].dropout = nn.Identity()
        self.model = model

    def forward(self, clips):                       # clips: [B, 3, 32, H, W], fast-pathway frames
        slow = clips[:, :, ::SLOWFAST_ALPHA]
        return self.model([slow, clips])


def _resnet_trunk(model):
    return nn.Sequential(model.conv1, model.bn1, model.relu, model.maxpool,
                         model.layer1, model.layer2, model.layer3, model.layer4)


# resnet18 is not in the papers: it is the demo's fine backbone, narrow enough to fine-tune
# and run on a 2-core CPU in minutes (README, "make demo").
for _name, _enum, _dim in (("resnet18", "ResNet18_Weights", 512), ("resnet50", "ResNet50_Weights", 2048),
                           ("resnet101", "ResNet101_Weights", 2048)):
    register(Backbone(_name, "image", 224, _dim, _dim, IMAGENET_MEAN, IMAGENET_STD,
                      torchvision_builder(_name, _enum), _resnet_trunk, ("fc.",)))
register(Backbone("mobilenet_v2", "image", 224, 1280, 1280, IMAGENET_MEAN, IMAGENET_STD,
                  torchvision_builder("mobilenet_v2", "MobileNet_V2_Weights"), lambda m: m.features, ("classifier.",)))
register(Backbone("dpn107", "image", 224, 2688, 2688, (124 / 255, 117 / 255, 104 / 255), (0.2348,) * 3,
                  timm_builder("dpn107"), _TimmTrunk, ("classifier.",), library="timm"))
register(Backbone("slowfast_r50", "clip", 256, 2304, 0, KINETICS_MEAN, KINETICS_STD,
                  slowfast_builder, _SlowFastPooled, ("blocks.6.proj.",), resize_ratio=1.0, library="pytorchvideo"))


# ------------------------------------------------------------------ feature sets

PREPROCESS = ("eval", "full")


def canvas_for(sets, preprocess: str) -> int:
    """The side of the one decoded square that serves every set: the largest resize (nothing is upscaled)."""
    return max(fs.resize_size(preprocess) for fs in sets)


SPEC_RE = re.compile(r"^(?P<name>[a-z0-9_]+)(?:@(?P<size>\d+))?(?:-(?P<out>map|grid(?P<grid>\d+)x(?P<patch>\d+)))?$")


@dataclass(frozen=True)
class FeatureSet:
    name: str            # canonical spec, also the cache folder name
    backbone: Backbone
    input_size: int      # side of the square frame the backbone (or the grid) sees
    output: str          # "pooled", "map", "grid" or "clip"
    grid: int = 0
    patch_size: int = 0

    @property
    def feature_shape(self) -> tuple[int, ...]:
        """Shape of one frame's feature in the cache."""
        if self.output == "map":
            side = -(-self.input_size // 32)    # every registered 2D trunk has stride 32
            return (self.backbone.map_channels, side, side)
        if self.output == "grid":
            return (self.grid * self.grid, self.backbone.feature_dim)
        return (self.backbone.feature_dim,)

    @property
    def feature_dim(self) -> int:
        return self.backbone.map_channels if self.output == "map" else self.backbone.feature_dim

    def patch_origins(self) -> list[int]:
        """Top-left coordinates of the grid's rows/columns: spans the frame edge to edge (NOTES.md)."""
        g, p = self.grid, self.patch_size
        return [int(k / (g - 1) * (self.input_size - p)) if g > 1 else (self.input_size - p) // 2 for k in range(g)]

    def example_input(self, batch: int = 1) -> torch.Tensor:
        """One input of the shape the set's module takes: a frame, a patch or a snippet."""
        if self.output == "clip":
            return torch.zeros(batch, 3, CLIP_WINDOW // CLIP_STRIDE, self.input_size, self.input_size)
        side = self.patch_size if self.output == "grid" else self.input_size
        return torch.zeros(batch, 3, side, side)

    # -------------------------------------------------------------- preprocessing
    # One decode serves every set of a run: each frame's short side is scaled to the canvas and its
    # central square kept (pipeline.decode); each set then takes its central crop of that square
    # and resizes it to its input size. `eval` crops as the weights' evaluation transform does
    # (DESIGN.md "Preprocessing"); `full` keeps the whole square (c2f before 2026-11: no attribute).

    def resize_size(self, preprocess: str) -> int:
        """The short side the set's evaluation transform resizes to (its input size for `full`)."""
        if preprocess not in PREPROCESS:
            raise ValueError(f"preprocess must be one of {PREPROCESS}, not {preprocess!r}")
        return round(self.input_size * self.backbone.resize_ratio) if preprocess == "eval" else self.input_size

    def crop(self, x: torch.Tensor, preprocess: str) -> torch.Tensor:
        """The set's central crop of squares [..., Q, Q] (Q: the canvas), resized to its input size."""
        side = x.shape[-1]
        crop = round(side * self.input_size / self.resize_size(preprocess))
        if crop != side:
            top = int(round((side - crop) / 2))
            x = x[..., top:top + crop, top:top + crop]
        if crop != self.input_size:
            shape = x.shape
            x = F.interpolate(x.reshape(-1, *shape[-3:]), size=self.input_size, mode="bilinear", antialias=True,
                              align_corners=False).reshape(*shape[:-2], self.input_size, self.input_size)
        return x

    def normalise(self, x: torch.Tensor) -> torch.Tensor:
        """[n, 3, ...] in [0, 1] -> the backbone's normalised input."""
        shape = (1, 3) + (1,) * (x.dim() - 2)
        mean = torch.tensor(self.backbone.mean, device=x.device, dtype=x.dtype).view(shape)
        std = torch.tensor(self.backbone.std, device=x.device, dtype=x.dtype).view(shape)
        return (x - mean) / std

    def prepare(self, squares: torch.Tensor, preprocess: str = "eval") -> torch.Tensor:
        """Decoded squares [n, Q, Q, 3] uint8 -> the set's normalised input [n, 3, size, size]."""
        x = self.crop(squares.permute(0, 3, 1, 2).float().div_(255), preprocess)
        return self.normalise(x)

    def prepare_clips(self, clips: torch.Tensor, preprocess: str = "eval") -> torch.Tensor:
        """Decoded snippets [n, T, Q, Q, 3] uint8 -> [n, 3, T, size, size], normalised."""
        x = self.crop(clips.permute(0, 1, 4, 2, 3).float().div_(255), preprocess)    # [n, T, 3, size, size]
        return self.normalise(x.transpose(1, 2))

    def cut_patches(self, x: torch.Tensor, candidates: torch.Tensor | None = None) -> torch.Tensor:
        """Prepared frames [n, 3, S, S] -> their grid's patches: every candidate, row-major
        ([n * G * G, 3, P, P], one gather), or with `candidates` [n] only that one per frame ([n, 3, P, P])."""
        origins = torch.tensor(self.patch_origins(), device=x.device)
        offsets = torch.arange(self.patch_size, device=x.device)
        n, g, p = len(x), self.grid, self.patch_size
        if candidates is None:
            index = origins[:, None] + offsets[None, :]                               # [G, P]
            return x[:, :, index][..., index].permute(0, 2, 4, 1, 3, 5).reshape(n * g * g, 3, p, p)
        rows = (origins[candidates // g][:, None] + offsets[None, :])                  # [n, P]
        cols = (origins[candidates % g][:, None] + offsets[None, :])
        frame = torch.arange(n, device=x.device)[:, None, None]
        return x.permute(0, 2, 3, 1)[frame, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2)


def parse_spec(spec: str) -> FeatureSet:
    match = SPEC_RE.match(spec.strip())
    if not match:
        raise SettingsError(f"bad feature set {spec!r}: expected NAME[@SIZE][-map|-gridGxP], e.g. resnet50@224-grid7x128")
    name = match["name"]
    if name not in REGISTRY:
        raise SettingsError(f"unknown backbone {name!r} in {spec!r}; known: {', '.join(sorted(REGISTRY))}")
    backbone = REGISTRY[name]
    size = int(match["size"] or backbone.default_size)
    out = match["out"]
    if backbone.kind == "clip":
        if out:
            raise SettingsError(f"{spec!r}: {name} gives one pooled vector per snippet; -map/-grid do not apply")
        return FeatureSet(f"{name}@{size}" if match["size"] else name, backbone, size, "clip")
    if out == "map":
        return FeatureSet(f"{name}@{size}-map", backbone, size, "map")
    if out:
        grid, patch = int(match["grid"]), int(match["patch"])
        if grid < 1 or not 32 <= patch <= size:
            raise SettingsError(f"{spec!r}: need a grid of at least 1 and 32 <= patch <= {size}")
        return FeatureSet(f"{name}@{size}-grid{grid}x{patch}", backbone, size, "grid", grid, patch)
    return FeatureSet(f"{name}@{size}", backbone, size, "pooled")


def parse_weights_option(items: list[str]) -> tuple[list[str], dict[str, str]]:
    """`--weights` values: bare ones (imagenet | random | PATH) and SET=VALUE ones, the latter keyed by
    the canonical name of their feature set (`resnet101` and `resnet101@224` are one set)."""
    bare, per_set = [], {}
    for item in items:
        name, sep, value = item.rpartition("=")
        if sep:
            per_set[parse_spec(name).name] = value
        else:
            bare.append(item)
    return bare, per_set
