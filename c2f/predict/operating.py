"""The operating point `c2f predict` runs a head at: as trained, a point of its run's curve.csv within a
GFLOPs budget (--gflops-budget), or thresholds given by hand (--threshold KNOB=VALUE)."""
from __future__ import annotations

import math

import pandas as pd

from pipeline.core.errors import PredictError

from ..heads import Head
from ..rundir import RunDir


def point_within(run: RunDir, gflops_budget: float) -> dict:
    """The most accurate point (top-1, then mAP, then the cheaper) of the run's trained setting and its
    curve.csv whose GFLOPs on the eval split are within the budget."""
    metrics = run.metrics()
    trained = {"knob": "trained", "target": None, "value": None, "gflops_mean": metrics["gflops_mean"],
               "top1": metrics["top1"], "mAP": metrics["mAP"]}
    curve = run.table("curve.csv")
    if curve is None:
        raise PredictError(f"{run.path} has no curve.csv to choose an operating point from",
                           "train it again with --curve (the default), or give --threshold")
    points = pd.concat([pd.DataFrame([trained]), curve], ignore_index=True)
    within = points[points.gflops_mean <= gflops_budget]
    if within.empty:
        raise PredictError(f"no operating point of {run.path} costs at most {gflops_budget:g} GFLOPs a video",
                           f"its cheapest costs {points.gflops_mean.min():.3g} (curve.csv)")
    best = within.assign(mAP=within.mAP.fillna(-1)).sort_values(["top1", "mAP", "gflops_mean"],
                                                              ascending=[False, False, True]).iloc[0]
    return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in best.to_dict().items()}


def parse_thresholds(values: list[str], head: Head) -> dict[str, float]:
    """--threshold values: KNOB=VALUE, or a bare VALUE for the head's first knob."""
    knobs = [knob.name for knob in head.knobs()]
    if values and not knobs:
        raise PredictError(f"{type(head).__name__} has no threshold to set")
    chosen = {}
    for value in values:
        name, _, number = value.rpartition("=")
        name = name or knobs[0]
        if name not in knobs:
            raise PredictError(f"--threshold {value}: no knob {name!r}", f"this head's: {', '.join(knobs)}")
        try:
            chosen[name] = float(number)
        except ValueError:
            raise PredictError(f"--threshold {value}: {number!r} is not a number") from None
    return chosen


def apply_point(head: Head, point: dict) -> int | None:
    """Set the head at a point (from point_within); returns the online budget K a `budget` point asks for."""
    if point["knob"] == "budget":
        return int(point["value"])
    if point["knob"] != "trained":
        apply_thresholds(head, {point["knob"]: float(point["value"])})
    return None


def apply_thresholds(head: Head, thresholds: dict[str, float]) -> None:
    buffers = {knob.name: knob.buffer for knob in head.knobs()}
    for name, value in thresholds.items():
        getattr(head, buffers[name]).fill_(value)
