"""The frozen module of a feature set: its backbone with the set's weights, reduced to the trunk
(pooled, or its last map), in eval mode, with its counted cost per frame (per patch, per snippet)."""
from __future__ import annotations

import zlib

import torch
from torch import nn

from .flops import gflops_per_frame
from .weights import build_full


class FeatureNet(nn.Module):
    """trunk -> map, or its global average (the pooled feature)."""

    def __init__(self, trunk: nn.Module, pooled: bool):
        super().__init__()
        self.trunk, self.pooled = trunk, pooled

    def forward(self, x):
        out = self.trunk(x)
        return out.mean(dim=(-2, -1)) if self.pooled and out.dim() == 4 else out


@torch.no_grad()
def _calibrate_random_bn(model: nn.Module, fs, seed: int) -> None:
    """Randomly initialised deep nets with unit BN statistics overflow fp16 (ResNet-101 reaches
    ~1e5) or underflow it (MobileNetV2 ~1e-8). For `random` weights only, set BN running
    statistics from one batch of seeded noise, so that features stay in a storable range.
    Deterministic: fixed seed, fixed input."""
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not norms:
        return
    for m in norms:
        m.reset_running_stats()
        m.momentum = None          # cumulative average over this single batch
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(fs.example_input(4).shape, generator=generator)
    model.train()
    model(x)
    model.eval()


def build(fs, weights: str = "random") -> nn.Module:
    """The frozen module for a feature set, in eval mode on the CPU, with its counted cost per
    frame (patch, snippet) as `gflops_per_frame`."""
    seed = zlib.crc32(fs.backbone.name.encode())
    torch.manual_seed(seed)          # `random` must mean the same weights in every run
    full = build_full(fs.backbone, weights)
    gmacs = gflops_per_frame(fs, full)
    model = fs.backbone
    if fs.output == "map":
        module = FeatureNet(model.trunk_of(full), pooled=False)
    elif model.pooled_of is not None:            # the head made an identity (any model by name, SlowFast)
        module = model.pooled_of(full)
    else:                                        # the presets: the trunk's last map, averaged
        module = FeatureNet(model.trunk_of(full), pooled=True)
    if weights == "random":
        _calibrate_random_bn(module, fs, seed)
    module.eval().requires_grad_(False)
    module.gflops_per_frame = gmacs      # a plain attribute, not a parameter or buffer
    return module
