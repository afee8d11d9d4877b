"""The operating point `c2f predict` runs a head at: as trained, a point of its run's curve.csv within a
GFLOPs budget (--gflops-budget: chosen by its figures on the run's calibration videos, never the eval
split's; prediction.json's `operating_point.point.chosen_on` says which videos), or thresholds given by
hand (--threshold KNOB=VALUE)."""
from __future__ import annotations

import pandas as pd

from pipeline.core.errors import PredictError

from ..heads import Head
from ..points import best_within, points_of
from ..rundir import RunDir


def point_within(run: RunDir, gflops_budget: float) -> dict:
    """The point of the run (as trained, or a row of its curve.csv) most accurate on its calibration videos
    among those whose GFLOPs there are within the budget (c2f.points: the eval split never chooses)."""
    curve = run.table("curve.csv")
    if curve is None:
        raise PredictError(f"{run.path} has no curve.csv to choose an operating point from",
                           "train it again with --curve (the default), or give --threshold")
    metrics = run.metrics()
    points = points_of(metrics, curve)
    if points.empty:
        raise PredictError(f"{run.path}'s curve.csv has no calibration figures to choose a point by (an older c2f "
                           "wrote it; choosing by the eval split's would let it choose)", "train it again")
    best = best_within(points, gflops_budget, metrics["calibration"]["chosen_on"])
    if best is None:
        raise PredictError(f"no operating point of {run.path} costs at most {gflops_budget:g} GFLOPs a video on its "
                           f"{metrics['calibration']['chosen_on']} videos",
                           f"its cheapest costs {points.calibration_gflops.min():.3g} there (curve.csv)")
    return best


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
