"""Any backbone by name, beyond the presets: every torchvision classification or video model
(`torchvision.models.list_models`) and every timm model (`timm:NAME`), described from the model itself.
Its classification head is found and made an identity for the pooled feature; its feature dimension,
and its last map where it has one a -map set can read, come from a forward pass; its preprocessing from
its weights' own evaluation transform (torchvision) or pretrained config (timm)."""
from __future__ import annotations

import difflib
from functools import lru_cache

import torch
from torch import nn

from ..core.errors import SettingsError
from .backbone import Backbone, Headless
from .builders import TimmPooled, TimmTrunk, require, resnet_trunk, torchvision_builder, timm_builder

# torchvision's Kinetics weights read 16-frame clips at 15 fps: every 2nd frame of a 30 fps video
VIDEO_CLIP_FRAMES, VIDEO_CLIP_STRIDE = 16, 2


def _head(model: nn.Module, classes: int) -> str:
    """The name of the last layer giving one output per class (a Linear, or a 1x1 convolution)."""
    heads = [name for name, m in model.named_modules()
             if isinstance(m, nn.Linear) and m.out_features == classes
             or isinstance(m, (nn.Conv2d, nn.Conv3d)) and m.out_channels == classes]
    if not heads:
        raise SettingsError(f"cannot find the classification layer of {model.__class__.__name__}")
    return heads[-1]


def _map(trunk: nn.Module | None, example: torch.Tensor) -> tuple[int, int]:
    """(channels, stride) of a trunk's output when it is a square [1, C, H, H] map, else (0, 32)."""
    if trunk is None:
        return 0, 32
    with torch.no_grad():
        out = trunk(example)
    if out.dim() != 4 or out.shape[-1] != out.shape[-2]:
        return 0, 32             # tokens, or a channels-last map: no -map set reads it
    return int(out.shape[1]), max(1, round(example.shape[-1] / out.shape[-1]))


def _torchvision_trunk(model: nn.Module):
    """How to cut the full model down to its last map, for the layouts torchvision's CNNs share."""
    if isinstance(getattr(model, "features", None), nn.Module):
        return lambda full: full.features
    if all(hasattr(model, a) for a in ("conv1", "bn1", "layer4")):
        return resnet_trunk
    if hasattr(model, "stem") and hasattr(model, "trunk_output"):
        return lambda full: nn.Sequential(full.stem, full.trunk_output)
    return None


@lru_cache(maxsize=None)
def torchvision_backbone(name: str) -> Backbone | None:
    import torchvision
    from torchvision.models import video
    videos = set(torchvision.models.list_models(module=video))
    if name not in videos and name not in torchvision.models.list_models(module=torchvision.models):
        return None
    default = torchvision.models.get_model_weights(name).DEFAULT
    transform = default.transforms()
    crop, resize = transform.crop_size[0], transform.resize_size[0]
    probe = torchvision.models.get_model(name, weights=None).eval()
    head = _head(probe, len(default.meta["categories"]))
    clip = name in videos
    example = torch.zeros(1, 3, VIDEO_CLIP_FRAMES, crop, crop) if clip else torch.zeros(1, 3, crop, crop)
    trunk_of = None if clip else _torchvision_trunk(probe)
    channels, stride = _map(trunk_of(probe) if trunk_of else None, example)
    with torch.no_grad():
        dim = int(Headless(probe, head)(example).shape[-1])
    return Backbone(name, "clip" if clip else "image", crop, dim, channels, tuple(transform.mean),
                    tuple(transform.std), torchvision_builder(name), trunk_of if channels else None, (head + ".",),
                    resize_ratio=resize / crop, pooled_of=lambda full: Headless(full, head), map_stride=stride,
                    clip_frames=VIDEO_CLIP_FRAMES if clip else 0, clip_stride=VIDEO_CLIP_STRIDE if clip else 0)


@lru_cache(maxsize=None)
def timm_backbone(model_name: str) -> Backbone:
    timm = require("timm", "timm", f"timm:{model_name}")
    if not timm.is_model(model_name):
        close = difflib.get_close_matches(model_name, timm.list_models(), n=3)
        raise SettingsError(f"unknown timm model {model_name!r}",
                            f"did you mean {', '.join('timm:' + c for c in close)}?" if close else "see timm.list_models()")
    probe = timm.create_model(model_name, pretrained=False).eval()
    config = timm.data.resolve_data_config({}, model=probe)
    size = int(config["input_size"][-1])
    example = torch.zeros(1, 3, size, size)
    channels, stride = _map(TimmTrunk(probe), example)
    with torch.no_grad():
        dim = int(TimmPooled(probe)(example).shape[-1])
    classifier = probe.pretrained_cfg.get("classifier") or "head"
    prefixes = tuple(c + "." for c in ((classifier,) if isinstance(classifier, str) else classifier))
    return Backbone(f"timm:{model_name}", "image", size, dim, channels, tuple(config["mean"]), tuple(config["std"]),
                    timm_builder(model_name), TimmTrunk if channels else None, prefixes,
                    resize_ratio=1 / float(config["crop_pct"]), library="timm", pooled_of=TimmPooled,
                    map_stride=stride)


def close_matches(name: str, presets: list[str]) -> list[str]:
    """Names like `name` among the presets and torchvision's models."""
    import torchvision
    from torchvision.models import video
    known = presets + torchvision.models.list_models(module=torchvision.models) + \
        torchvision.models.list_models(module=video)
    return difflib.get_close_matches(name, list(dict.fromkeys(known)), n=3)
