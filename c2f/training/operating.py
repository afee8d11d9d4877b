"""A run's operating curve (RUN/curve.csv) and its early-exit threshold.

One trained head serves many budgets without training again: each of its knobs (c2f.blocks.head.Knob:
LiteEval's gate threshold, AdaFocus+'s keep threshold, every recurrent head's early exit) is solved
on the training videos for each of its targets, and the head is evaluated on the eval split at the
threshold found; a budgeted method adds its online budgets K (fine reads, or AdaFocus's first K
frames). Thresholds are solved on training videos only, so the eval split never chooses them.
`c2f predict --gflops-budget X` picks the best row of the curve within X.
"""
from __future__ import annotations

import numpy as np
import torch

from ..data import Batch, VideoSet, length_batches
from ..evaluate import EVAL_BATCH, compute_metrics, run_head
from ..heads import Head

# thresholds are solved on at most this many training videos (evenly spread): the solve evaluates
# them about twenty times per target
CALIBRATION_VIDEOS = 512
CURVE_COLUMNS = ["knob", "target", "value", "fine_rate", "frames_seen", "gflops_mean", "top1", "mAP"]


def calibration_batches(train: VideoSet, device: str = "cpu") -> list[Batch]:
    """Batches of at most CALIBRATION_VIDEOS training videos, spread evenly over the split."""
    chosen = torch.from_numpy(np.unique(np.linspace(0, len(train) - 1, min(len(train), CALIBRATION_VIDEOS)).round()
                                        .astype(np.int64)))
    return [Batch(train, chosen[index], device)
            for index in length_batches(train.lengths[chosen], EVAL_BATCH, shuffle=False)]


def budgets_for(max_length: int) -> list[int]:
    """Online budgets K for the curve: powers of two below the longest video, and the longest."""
    return sorted({2 ** k for k in range(max(1, max_length).bit_length()) if 2 ** k < max_length} | {max(1, max_length)})


def _point(head: Head, evaluation: VideoSet, device: str, knob: str, target, value, budget=None) -> dict:
    result = run_head(head, evaluation, device=device, fine_budget=budget)
    metrics = compute_metrics(result, "", "", evaluation.classes)
    return {"knob": knob, "target": target, "value": value, "fine_rate": metrics["fine_rate"],
            "frames_seen": float(result.frames_seen().mean()), "gflops_mean": metrics["gflops_mean"],
            "top1": metrics["top1"], "mAP": metrics["mAP"]}


@torch.no_grad()
def operating_curve(head: Head, train: VideoSet, evaluation: VideoSet, budgeted: bool, device: str = "cpu") -> list[dict]:
    """curve.csv's rows: one per knob and target (`value` the threshold solved on the training videos),
    then one per online budget K for a budgeted method (`value` K); each evaluated on `evaluation`."""
    batches = calibration_batches(train, device)
    rows = []
    for knob in head.knobs():
        buffer = getattr(head, knob.buffer)
        trained = buffer.clone()
        for target, value in zip(knob.targets, knob.solve(batches, knob.targets)):
            buffer.fill_(value)
            rows.append(_point(head, evaluation, device, knob.name, target, value))
        buffer.copy_(trained)
    if budgeted:
        for K in budgets_for(int(evaluation.lengths.max())):
            rows.append(_point(head, evaluation, device, "budget", K, K, budget=K))
    return rows


@torch.no_grad()
def calibrate_exit(head: Head, train: VideoSet, share: float, device: str = "cpu") -> float:
    """Set the head's early-exit threshold so that it costs `share` of its GFLOPs without early exit on
    the training videos (--exit-budget); returns the threshold."""
    head.exit_threshold.fill_(head.exit_thresholds_for(calibration_batches(train, device), [share])[0])
    return float(head.exit_threshold)
