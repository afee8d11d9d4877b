"""Choosing a point of a run's operating curve, by its calibration figures alone.

A run's curve.csv holds, for every point (a knob's target, an online budget K), its figures on the
eval split (`top1`, `mAP`, `gflops_mean`) and on the videos its thresholds were solved on
(`calibration_top1`, `calibration_mAP`, `calibration_gflops`: the calibration part held out of the
training videos, or the training videos themselves; metrics.json's `calibration.chosen_on` says
which). The eval split never chooses: every choice here reads the calibration columns, and what is
reported of the chosen point is its eval columns.
"""
from __future__ import annotations

import math

import pandas as pd

# an early-exit point "within 1 point": its calibration top-1 at most this far below the trained head's
EXIT_TOLERANCE = 0.01


def points_of(metrics: dict, curve: pd.DataFrame) -> pd.DataFrame:
    """The run's points: the head as trained (knob `trained`) and the curve's rows, with their calibration
    figures. An empty frame for a run written before curves carried them (an older c2f)."""
    calibration = metrics.get("calibration")
    if not calibration or "calibration_top1" not in curve.columns:
        return pd.DataFrame()
    trained = {"knob": "trained", "target": None, "value": None, "gflops_mean": metrics["gflops_mean"],
               "top1": metrics["top1"], "mAP": metrics["mAP"]} | {
        key: calibration[key] for key in ("calibration_gflops", "calibration_top1", "calibration_mAP")}
    return pd.concat([pd.DataFrame([trained]), curve], ignore_index=True)


def _clean(row: pd.Series, chosen_on: str) -> dict:
    return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in row.to_dict().items()} | {
        "chosen_on": chosen_on}


def best_within(points: pd.DataFrame, gflops_budget: float, chosen_on: str) -> dict | None:
    """The point most accurate on the calibration videos (top-1, then mAP, then the cheaper) among those
    whose calibration GFLOPs are within the budget; None when none is."""
    within = points[points.calibration_gflops <= gflops_budget]
    if within.empty:
        return None
    ranked = within.assign(calibration_mAP=within.calibration_mAP.fillna(-1)).sort_values(
        ["calibration_top1", "calibration_mAP", "calibration_gflops"], ascending=[False, False, True])
    return _clean(ranked.iloc[0], chosen_on)


def exit_point(points: pd.DataFrame, chosen_on: str, tolerance: float = EXIT_TOLERANCE) -> dict | None:
    """The cheapest early-exit point (on the calibration videos) whose calibration top-1 is within
    `tolerance` of the head as trained; None when the run has none."""
    trained = points[points.knob == "trained"].iloc[0]
    exits = points[(points.knob == "exit") & (points.calibration_top1 >= trained.calibration_top1 - tolerance)]
    if exits.empty:
        return None
    return _clean(exits.sort_values("calibration_gflops").iloc[0], chosen_on)
