"""Counted GFLOPs for the report: every feature set's per frame (the papers' sets and those the runs
used), and the papers' baseline rows in their settings, counted from the modules."""
from __future__ import annotations

from pipeline.backbones import PAPER_GFLOPS, gflops_per_frame, parse_spec

from ..heads import HeadDims
from ..heads.adafocus import AdaFocusHead, AdaFocusSettings
from ..blocks.head import EvenFrames
from ..heads.uniform import UniformHead
from .runs import Run


def flops_rows(runs: list[Run], papers: bool = True) -> list[dict]:
    """One row per feature set: the papers' (counted here, with the paper's value; `papers`) and every set
    the runs read (as their caches counted and recorded it)."""
    rows = {}
    for spec, paper in PAPER_GFLOPS.items() if papers else ():
        rows[spec] = {"feature_set": spec, "gflops_counted": round(gflops_per_frame(parse_spec(spec)), 4),
                      "gflops_paper": paper, "used_by_runs": ""}
    for run in runs:
        for info in run.feature_sets.values():
            name = info["name"]
            row = rows.setdefault(name, {"feature_set": name, "gflops_paper": None, "used_by_runs": "",
                                         "gflops_counted": round(float(info["attrs"]["gflops_per_frame"]), 4)})
            row["used_by_runs"] = "yes"
    return list(rows.values())


def paper_baselines(num_classes: int = 200) -> list[dict]:
    """The papers' baseline GFLOPs in their settings, counted from the modules: backbone per frame
    (or patch, or snippet) x frames + the head's own per-frame cost (ActivityNet: 200 classes)."""
    cost = {spec: gflops_per_frame(parse_spec(spec)) for spec in
            ("mobilenet_v2@112", "resnet101@224", "dpn107@224", "slowfast_r50", "mobilenet_v2@224-map",
             "resnet50@224-grid7x128")}

    def uniform(fine: str, dim: int, frames: int, coarse: bool = False) -> float:
        head = UniformHead(HeadDims(num_classes, dim, 1280 if coarse else None), EvenFrames(frames), combine=coarse)
        per_frame = cost[fine] + head.costs["fine_classifier"]
        if coarse:
            per_frame += cost["mobilenet_v2@112"] + head.costs["coarse_classifier"]
        return frames * per_frame

    focus = AdaFocusHead(HeadDims(num_classes, 2048, 1280, (1280, 7, 7), 49, (128 / 224) ** 2), AdaFocusSettings(frames=16))
    c = focus.costs
    adafocus = (16 * (cost["mobilenet_v2@224-map"] + cost["resnet50@224-grid7x128"] + c["patch_policy_step"]
                      + c["classifier_step"]) + c["classifier"])
    return [
        {"baseline": "UNIFORM (ResNet-101, 25 frames)", "gflops_counted": uniform("resnet101@224", 2048, 25),
         "gflops_paper": 195.5},
        {"baseline": "UNIFORM+CF (25 frames)", "gflops_counted": uniform("resnet101@224", 2048, 25, coarse=True),
         "gflops_paper": 197.5},
        {"baseline": "DPN-10", "gflops_counted": uniform("dpn107@224", 2688, 10), "gflops_paper": 183.4},
        {"baseline": "SlowFast-10", "gflops_counted": uniform("slowfast_r50", 2304, 10), "gflops_paper": 657.1},
        {"baseline": "AdaFocus (128x128, 16 frames)", "gflops_counted": adafocus, "gflops_paper": 26.6},
    ]
