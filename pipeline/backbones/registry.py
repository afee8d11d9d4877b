"""The backbone registry and the feature-set grammar, like timm's model registry:

    mobilenet_v2@112             pooled vector per frame
    resnet101@224, resnet101     pooled vector per frame (default size: the weights' evaluation crop)
    mobilenet_v2@224-map         the last spatial map per frame (the AdaFocus glance)
    resnet50@224-grid7x128       pooled vector per candidate patch: G x G patches of P px cut
                                 from the 224 px frame (the AdaFocus focus)
    slowfast_r50, r3d_18         pooled vector per snippet centred on each sampled time
    resnet34, convnext_tiny      any torchvision classification or video model, by its name
    timm:convnext_tiny@224       any timm model

The presets are the papers' backbones (and the demo's ResNet-18), with the weights the papers used;
any other name is described from the model itself (catalog.py). A 2D preset is reduced to a trunk
returning its last feature map; its pooled feature is the global average of that map, which is
exactly what each model's own head does.
"""
from __future__ import annotations

import re

from ..core.errors import SettingsError
from .backbone import IMAGENET_MEAN, IMAGENET_STD, KINETICS_MEAN, KINETICS_STD, Backbone
from .builders import SLOWFAST_ALPHA, SlowFastPooled, TimmTrunk, resnet_trunk, slowfast_builder, timm_builder
from .builders import torchvision_builder
from .catalog import close_matches, timm_backbone, torchvision_backbone
from .featureset import PREPROCESS, FeatureSet, canvas_for

__all__ = ["SLOWFAST_ALPHA", "REGISTRY", "SPEC_RE", "PREPROCESS", "Backbone", "FeatureSet", "backbone", "canvas_for",
           "parse_spec", "parse_weights_option", "register"]

REGISTRY: dict[str, Backbone] = {}


def register(backbone: Backbone) -> Backbone:
    REGISTRY[backbone.name] = backbone
    return backbone


# resnet18 is not in the papers: it is the demo's fine backbone, narrow enough to fine-tune and run on
# a 2-core CPU in minutes. The papers' ResNets use torchvision's V1 weights (LiteEval quotes ResNet-101's
# 77.4% top-1, which is V1's).
for _name, _enum, _dim in (("resnet18", "ResNet18_Weights", 512), ("resnet50", "ResNet50_Weights", 2048),
                           ("resnet101", "ResNet101_Weights", 2048)):
    register(Backbone(_name, "image", 224, _dim, _dim, IMAGENET_MEAN, IMAGENET_STD,
                      torchvision_builder(_name, _enum, "IMAGENET1K_V1"), resnet_trunk, ("fc.",)))
register(Backbone("mobilenet_v2", "image", 224, 1280, 1280, IMAGENET_MEAN, IMAGENET_STD,
                  torchvision_builder("mobilenet_v2", "MobileNet_V2_Weights", "IMAGENET1K_V1"), lambda m: m.features,
                  ("classifier.",)))
register(Backbone("dpn107", "image", 224, 2688, 2688, (124 / 255, 117 / 255, 104 / 255), (0.2348,) * 3,
                  timm_builder("dpn107"), TimmTrunk, ("classifier.",), library="timm"))
# SlowFast 8x8: the fast pathway reads 32 frames at stride 2 over a 64-frame window, the slow pathway
# every 4th of those (8 frames at stride 8)
register(Backbone("slowfast_r50", "clip", 256, 2304, 0, KINETICS_MEAN, KINETICS_STD, slowfast_builder, None,
                  ("blocks.6.proj.",), resize_ratio=1.0, library="pytorchvideo", pooled_of=SlowFastPooled,
                  clip_frames=32, clip_stride=2, full_input=lambda clip: [clip[:, :, ::SLOWFAST_ALPHA], clip]))


def backbone(name: str) -> Backbone:
    """A preset, a timm model (`timm:NAME`) or a torchvision model by name; SettingsError (with close
    matches) for a name none of them knows."""
    if name in REGISTRY:
        return REGISTRY[name]
    if name.startswith("timm:"):
        return timm_backbone(name[len("timm:"):])
    found = torchvision_backbone(name)
    if found is None:
        close = close_matches(name, sorted(REGISTRY))
        raise SettingsError(f"unknown backbone {name!r}", (f"did you mean {', '.join(close)}? " if close else "")
                            + "presets, torchvision models by name, or timm:NAME")
    return found


SPEC_RE = re.compile(r"^(?P<name>(?:timm:)?[a-z0-9_.]+?)(?:@(?P<size>\d+))?"
                     r"(?:-(?P<out>map|grid(?P<grid>\d+)x(?P<patch>\d+)))?$")


def parse_spec(spec: str) -> FeatureSet:
    match = SPEC_RE.match(spec.strip())
    if not match:
        raise SettingsError(f"bad feature set {spec!r}: expected NAME[@SIZE][-map|-gridGxP], e.g. "
                            "resnet50@224-grid7x128")
    model = backbone(match["name"])
    size = int(match["size"] or model.default_size)
    name, out = match["name"], match["out"]
    if model.kind == "clip":
        if out:
            raise SettingsError(f"{spec!r}: {name} gives one pooled vector per snippet; -map/-grid do not apply")
        return FeatureSet(f"{name}@{size}" if match["size"] else name, model, size, "clip")
    if out == "map":
        if not model.map_channels:
            raise SettingsError(f"{spec!r}: {name} has no square feature map to keep", f"use {name}@{size}")
        return FeatureSet(f"{name}@{size}-map", model, size, "map")
    if out:
        grid, patch = int(match["grid"]), int(match["patch"])
        if grid < 1 or not 32 <= patch <= size:
            raise SettingsError(f"{spec!r}: need a grid of at least 1 and 32 <= patch <= {size}")
        return FeatureSet(f"{name}@{size}-grid{grid}x{patch}", model, size, "grid", grid, patch)
    return FeatureSet(f"{name}@{size}", model, size, "pooled")


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
