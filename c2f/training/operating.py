"""A run's operating curve (RUN/curve.csv) and its early-exit threshold.

One trained head serves many budgets without training again: each of its knobs (c2f.blocks.head.Knob:
LiteEval's gate threshold, AdaFocus+'s keep threshold, SCSampler's K, every stepping head's early
exit) is solved for each of its targets on the calibration videos (the calibration part held out of
training by --calibration-share, else the training videos), and the head is measured at the value
found on those same videos (the `calibration_*` columns) and on the eval split (the eval columns); a
budgeted method adds its online budgets K (fine reads, or AdaFocus's first K frames).

The eval split never chooses: a point of the curve is picked (`c2f predict --gflops-budget`, the
early-exit point the README and the report show) by its calibration columns alone (c2f.points); its
eval columns are what is reported of it.
"""
from __future__ import annotations

import numpy as np
import torch

from ..data import Batch, VideoSet, length_batches
from ..evaluate import EVAL_BATCH, compute_metrics, mean_ap, run_head, top1
from ..heads import Head

# thresholds are solved on at most this many calibration videos (evenly spread): the solve evaluates
# them about twenty times per target
CALIBRATION_VIDEOS = 512
CURVE_COLUMNS = ["knob", "target", "value", "fine_rate", "frames_seen", "gflops_mean", "top1", "mAP",
                 "calibration_gflops", "calibration_top1", "calibration_mAP"]


def calibration_batches(videos: VideoSet, device: str = "cpu") -> list[Batch]:
    """Batches of at most CALIBRATION_VIDEOS of the videos, spread evenly over them."""
    chosen = torch.from_numpy(np.unique(np.linspace(0, len(videos) - 1, min(len(videos), CALIBRATION_VIDEOS))
                                        .round().astype(np.int64)))
    return [Batch(videos, chosen[index], device)
            for index in length_batches(videos.lengths[chosen], EVAL_BATCH, shuffle=False)]


def budgets_for(max_length: int) -> list[int]:
    """Online budgets K for the curve: powers of two below the longest video, and the longest."""
    return sorted({2 ** k for k in range(max(1, max_length).bit_length()) if 2 ** k < max_length} | {max(1, max_length)})


@torch.no_grad()
def measure_on(head: Head, batches: list[Batch], classes: list[str], budget: int | None = None) -> dict:
    """The head's top-1, mAP and mean GFLOPs over calibration batches, as evaluated (reads charged)."""
    head.eval()
    scores, targets, gflops = [], [], []
    with torch.random.fork_rng():           # the fixed policies that sample give the same answer every time
        torch.manual_seed(0)
        for batch in batches:
            batch.clear_reads()
            out = head(batch, fine_budget=budget)
            scores.append(out.logits.float().softmax(1).cpu().numpy())
            targets.append(batch.targets.cpu().numpy())
            gflops.append((out.head_gmacs.double().cpu() + batch.read_gflops()).numpy())
    scores, targets = np.concatenate(scores), np.concatenate(targets)
    return {"calibration_gflops": float(np.concatenate(gflops).mean()), "calibration_top1": top1(scores, targets),
            "calibration_mAP": mean_ap(scores, targets, classes)[0]}


def _point(head: Head, evaluation: VideoSet, batches: list[Batch], device: str, knob: str, target, value,
           budget=None) -> dict:
    result = run_head(head, evaluation, device=device, fine_budget=budget)
    metrics = compute_metrics(result, "", "", evaluation.classes)
    return {"knob": knob, "target": target, "value": value, "fine_rate": metrics["fine_rate"],
            "frames_seen": float(result.frames_seen().mean()), "gflops_mean": metrics["gflops_mean"],
            "top1": metrics["top1"], "mAP": metrics["mAP"]} | measure_on(head, batches, evaluation.classes, budget)


@torch.no_grad()
def operating_curve(head: Head, calibration: VideoSet, evaluation: VideoSet, budgeted: bool,
                    device: str = "cpu") -> list[dict]:
    """curve.csv's rows: one per knob and target (`value` solved on the calibration videos), then one per
    online budget K for a budgeted method (`value` K); each measured on the calibration videos and on
    `evaluation`."""
    batches = calibration_batches(calibration, device)
    rows = []
    for knob in head.knobs():
        buffer = getattr(head, knob.buffer)
        trained = buffer.clone()
        for target, value in zip(knob.targets, knob.solve(batches, knob.targets)):
            buffer.fill_(value)
            rows.append(_point(head, evaluation, batches, device, knob.name, target, value))
        buffer.copy_(trained)
    if budgeted:
        for K in budgets_for(int(evaluation.lengths.max())):
            rows.append(_point(head, evaluation, batches, device, "budget", K, K, budget=K))
    return rows


@torch.no_grad()
def calibrate_exit(head: Head, calibration: VideoSet, share: float, device: str = "cpu") -> float:
    """Set the head's early-exit threshold so that it costs `share` of its GFLOPs without early exit on
    the calibration videos (--exit-budget); returns the threshold."""
    head.exit_threshold.fill_(head.exit_thresholds_for(calibration_batches(calibration, device), [share])[0])
    return float(head.exit_threshold)
