"""Counted multiply-adds (DESIGN.md's GFLOPs): torch's FlopCounterMode on the real modules,
2 FLOPs per multiply-add, never typed-in constants."""
from __future__ import annotations

import torch
from torch import nn


def count_gmacs(fn, *args) -> float:
    """Multiply-accumulates (10^9) of fn(*args), counted by FlopCounterMode (2 FLOPs per MAC)."""
    from torch.utils.flop_counter import FlopCounterMode
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        fn(*args)
    return counter.get_total_flops() / 2 / 1e9


def full_model_gmacs(full: nn.Module, fs) -> float:
    """The cost of one frame (patch, snippet) is the published network's, classifier included: the
    papers' and DESIGN.md's convention (its 1000-way head is ~0.002 GMACs of MobileNetV2's 0.08)."""
    from .registry import SLOWFAST_ALPHA
    example = fs.example_input()
    return count_gmacs(full, [example[:, :, ::SLOWFAST_ALPHA], example] if fs.output == "clip" else example)


def gflops_per_frame(fs) -> float:
    """Counted GMACs for one frame (a patch for a grid, a snippet for SlowFast)."""
    from .weights import build_full
    return full_model_gmacs(build_full(fs.backbone, "random"), fs)


# The feature sets the two papers use, with the GFLOPs (multiply-adds) the papers state, for
# display next to the counted values (`c2f flops`). Never used for accounting.
PAPER_GFLOPS = {
    "mobilenet_v2@112": 0.08,              # LiteEval, coarse
    "resnet101@224": 7.82,                 # LiteEval, fine
    "dpn107@224": 18.34,                   # LiteEval, fine
    "slowfast_r50": 65.71,                 # LiteEval, per 8x8 snippet
    "mobilenet_v2@224-map": 0.2995,        # AdaFocus glance (authors' code)
    "resnet18@224": None,                  # the demo's fine backbone
    "resnet50@224": None,
    "resnet50@224-grid7x96": None,         # AdaFocus patches: per patch, no per-patch value printed
    "resnet50@224-grid7x128": None,
    "resnet50@224-grid7x160": None,
    "resnet50@224-grid7x192": None,
}


def flops_table() -> list[dict]:
    """Counted GMACs per frame (per patch, per snippet) of every supported feature set."""
    from .registry import parse_spec
    rows = []
    for spec, paper in PAPER_GFLOPS.items():
        fs = parse_spec(spec)
        rows.append({"feature_set": fs.name, "input": list(fs.example_input().shape[1:]),
                     "feature_shape": list(fs.feature_shape), "gflops_counted": gflops_per_frame(fs),
                     "gflops_paper": paper})
    return rows
