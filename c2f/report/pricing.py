"""Counted GFLOPs for the report: every feature set's per frame (the papers' sets and those the runs
used), and the papers' baseline rows in their settings, counted from the modules. A paper set whose
library is not installed (a plain `pip install c2f`: no timm, no pytorchvideo) is left out, and so
is each baseline row that needs it: its row says why and which extra to install."""
from __future__ import annotations

from pipeline.backbones import PAPER_GFLOPS, counted_sets, warn_left_out
from pipeline.core.errors import MissingLibraryError

from ..heads import HeadDims
from ..heads.adafocus import AdaFocusHead, AdaFocusSettings
from ..blocks.head import EvenFrames
from ..heads.uniform import UniformHead
from .runs import Run

PaperCosts = tuple[dict[str, float], dict[str, MissingLibraryError]]    # counted, left out (counted_sets)


def paper_costs() -> PaperCosts:
    """The papers' sets counted once, those whose library is not installed left out with a warning each."""
    counted, left_out = counted_sets(PAPER_GFLOPS)
    warn_left_out(left_out, "the report")
    return counted, left_out


def flops_rows(runs: list[Run], costs: PaperCosts | None = None) -> list[dict]:
    """One row per feature set: the papers' (`costs`: counted here, with the paper's value; a set left out
    says why in `left_out`) and every set the runs read (as their caches counted and recorded it)."""
    rows = {}
    counted, left_out = costs or ({}, {})
    for spec, paper in PAPER_GFLOPS.items() if costs else ():
        rows[spec] = {"feature_set": spec, "gflops_counted": round(counted[spec], 4) if spec in counted else None,
                      "gflops_paper": paper, "used_by_runs": "",
                      "left_out": left_out[spec].line() if spec in left_out else ""}
    for run in runs:
        for info in run.feature_sets.values():
            name = info["name"]
            row = rows.setdefault(name, {"feature_set": name, "gflops_paper": None, "used_by_runs": "", "left_out": "",
                                         "gflops_counted": round(float(info["attrs"]["gflops_per_frame"]), 4)})
            row["used_by_runs"] = "yes"
    return list(rows.values())


def paper_baselines(num_classes: int = 200, costs: PaperCosts | None = None) -> list[dict]:
    """The papers' baseline GFLOPs in their settings, counted from the modules: backbone per frame
    (or patch, or snippet) x frames + the head's own per-frame cost (ActivityNet: 200 classes). A row
    whose backbone's library is not installed has no count, and says why in `left_out`."""
    cost, left_out = costs or paper_costs()

    def uniform(fine: str, dim: int, frames: int, coarse: bool = False) -> float:
        head = UniformHead(HeadDims(num_classes, dim, 1280 if coarse else None), EvenFrames(frames), combine=coarse)
        per_frame = cost[fine] + head.costs["fine_classifier"]
        if coarse:
            per_frame += cost["mobilenet_v2@112"] + head.costs["coarse_classifier"]
        return frames * per_frame

    def adafocus() -> float:
        c = AdaFocusHead(HeadDims(num_classes, 2048, 1280, (1280, 7, 7), 49, (128 / 224) ** 2),
                         AdaFocusSettings(frames=16)).costs
        return (16 * (cost["mobilenet_v2@224-map"] + cost["resnet50@224-grid7x128"] + c["patch_policy_step"]
                      + c["classifier_step"]) + c["classifier"])

    baselines = [  # (row, the sets it needs, the paper's value, its count)
        ("UNIFORM (ResNet-101, 25 frames)", ["resnet101@224"], 195.5, lambda: uniform("resnet101@224", 2048, 25)),
        ("UNIFORM+CF (25 frames)", ["resnet101@224", "mobilenet_v2@112"], 197.5,
         lambda: uniform("resnet101@224", 2048, 25, coarse=True)),
        ("DPN-10", ["dpn107@224"], 183.4, lambda: uniform("dpn107@224", 2688, 10)),
        ("SlowFast-10", ["slowfast_r50"], 657.1, lambda: uniform("slowfast_r50", 2304, 10)),
        ("AdaFocus (128x128, 16 frames)", ["mobilenet_v2@224-map", "resnet50@224-grid7x128"], 26.6, adafocus),
    ]
    rows = []
    for name, needs, paper, count in baselines:
        missing = "; ".join(left_out[spec].line() for spec in needs if spec in left_out)
        rows.append({"baseline": name, "gflops_counted": None if missing else count(), "gflops_paper": paper,
                     "left_out": missing})
    return rows
