"""Sample-wise early exit's bookkeeping: the trace of one evaluation without exits (each video's
confidence and cost after every step) and the threshold that meets a GFLOPs goal on it.

Stopping early only cuts a video's steps short (every decision before the stop is the one made
without early exit), so one pass that never stops tells, for any threshold, where each video would
stop and what it would have cost there: the threshold is solved on that trace, not by evaluating
the head again and again.
"""
from __future__ import annotations

import numpy as np
import torch


def running_steps(active: torch.Tensor, positions: torch.Tensor):
    """Step after step of an exiting head: (rows of the videos still running, their frame at this step),
    until no video runs; the caller clears `active` for a video that stops."""
    for step in range(positions.shape[1]):
        rows = active.nonzero(as_tuple=True)[0]
        if not len(rows):
            return
        yield rows, positions[rows.cpu(), step]


class ExitTrace:
    """Confidence and cost so far after every step of every video of an evaluation that never stops."""

    def __init__(self):
        self.steps: list[tuple[int, np.ndarray, np.ndarray, np.ndarray]] = []    # (batch, rows, confidence, cost)
        self.batch = -1

    def next_batch(self) -> None:
        self.batch += 1

    def note(self, rows: torch.Tensor, confidence: torch.Tensor, cost: torch.Tensor) -> None:
        self.steps.append((self.batch, rows.cpu().numpy(), confidence.float().cpu().numpy(),
                           cost.double().cpu().numpy()))

    def tables(self) -> tuple[np.ndarray, np.ndarray]:
        """[V, S] confidence (-inf after a video's last step) and [V, S] cost so far (the last step's after
        it), V the videos in batch order, S the most steps of any video."""
        sizes = {}
        for batch, rows, _, _ in self.steps:
            sizes[batch] = max(sizes.get(batch, 0), int(rows.max()) + 1)
        first = np.cumsum([0] + [sizes[b] for b in sorted(sizes)])
        videos = int(first[-1])
        step_of = np.zeros(videos, dtype=np.int64)
        longest = max(1, len(self.steps))
        confidence = np.full((videos, longest), -np.inf)
        cost = np.full((videos, longest), np.nan)
        for batch, rows, conf, spent in self.steps:
            video = first[batch] + rows
            confidence[video, step_of[video]] = conf
            cost[video, step_of[video]] = spent
            step_of[video] += 1
        steps = int(step_of.max(initial=1))
        confidence, cost = confidence[:, :steps], cost[:, :steps]
        last_step = np.maximum.accumulate(np.where(np.isnan(cost), 0, np.arange(steps)), axis=1)
        return confidence, cost[np.arange(videos)[:, None], last_step]       # after its last step: its last cost


def mean_cost_at(confidence: np.ndarray, cost: np.ndarray, threshold: float) -> float:
    """Mean cost when each video stops at its first step at least `threshold` sure (else at its last)."""
    sure = confidence >= threshold
    stop = np.where(sure.any(1), sure.argmax(1), cost.shape[1] - 1)
    return float(cost[np.arange(len(cost)), stop].mean())


def lowest_threshold_reaching(confidence: np.ndarray, cost: np.ndarray, goal: float) -> float:
    """The lowest threshold whose mean cost reaches `goal` (cost rises with the threshold): a binary
    search over the confidences seen, each tried on the trace."""
    candidates = np.unique(confidence[np.isfinite(confidence)])
    low, high = 0, len(candidates)          # candidates[high] (or beyond every one: 1) reaches the goal
    while low < high:
        middle = (low + high) // 2
        if mean_cost_at(confidence, cost, candidates[middle]) >= goal:
            high = middle
        else:
            low = middle + 1
    return float(candidates[high]) if high < len(candidates) else 1.0
