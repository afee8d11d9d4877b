"""Sample-wise early exit: `EarlyExit`, the mixin of the heads that step through a video's frames and
may stop it once its running prediction is confident, and its bookkeeping: the trace of one
evaluation without exits (each video's confidence and cost after every step) and the threshold that
meets a GFLOPs goal on it.

Stopping early only cuts a video's steps short (every decision before the stop is the one made
without early exit), so one pass that never stops tells, for any threshold, where each video would
stop and what it would have cost there: the threshold is solved on that trace, not by evaluating
the head again and again.
"""
from __future__ import annotations

import numpy as np
import torch

from .head import Knob

EXIT_SHARES = (0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3)     # the operating curve's targets: shares of the GFLOPs


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


class EarlyExit:
    """Mixin of a Head (listed before it) that steps through frames: at evaluation, after each step, a
    video whose running prediction gives a class at least `exit_threshold` stops there; its later frames
    are never read (nor, in prediction, decoded). Off (infinity) unless a threshold is set
    (c2f.training.operating calibrates one on the training split to a GFLOPs budget). The head calls
    `stops` after each step of its stepping loop, and `exits` tells it whether to step at all."""
    can_exit = True

    def __init__(self, dims):
        super().__init__(dims)
        self.register_buffer("exit_threshold", torch.tensor(float("inf")))
        self._exit_trace: ExitTrace | None = None

    @property
    def exits(self) -> bool:
        """Whether this evaluation steps with early exit (or traces it: exit_thresholds_for)."""
        return not self.training and (self._exit_trace is not None or bool(torch.isfinite(self.exit_threshold)))

    def stops(self, batch, rows: torch.Tensor, logits: torch.Tensor, head_gmacs: torch.Tensor) -> torch.Tensor:
        """After a step of the videos `rows` of the batch: [k] True where the running prediction (logits or
        log-probabilities) is sure enough to stop. `head_gmacs`: the head's own cost of them so far. While
        a trace is taken, nothing stops and each step is noted."""
        confidence = logits.softmax(-1).max(-1).values
        if self._exit_trace is not None:
            self._exit_trace.note(rows, confidence, batch.read_gflops()[rows.cpu()] + head_gmacs.double().cpu())
            return torch.zeros_like(confidence, dtype=torch.bool)
        return confidence >= self.exit_threshold

    def knobs(self) -> list:
        return super().knobs() + [Knob("exit", "exit_threshold", EXIT_SHARES, "share of the GFLOPs without early exit",
                                       self.exit_thresholds_for)]

    @torch.no_grad()
    def mean_gflops(self, batches) -> float:
        """Mean GFLOPs a video (features read and the head's own steps) over the batches, as evaluated."""
        was_training, total, videos = self.training, 0.0, 0
        self.eval()
        for batch in batches:
            batch.clear_reads()
            total += float((self(batch).head_gmacs.double().cpu() + batch.read_gflops()).sum())
            videos += len(batch)
        self.train(was_training)
        return total / max(1, videos)

    @torch.no_grad()
    def exit_trace(self, batches) -> tuple:
        """One pass over the batches that never stops, noting after every step of every video its
        confidence and its cost so far ([V, S] arrays each; ExitTrace.tables)."""
        kept = self.exit_threshold.clone()
        self._exit_trace = ExitTrace()
        try:
            for batch in batches:
                self._exit_trace.next_batch()
                self.mean_gflops([batch])
            return self._exit_trace.tables()
        finally:
            self._exit_trace = None
            self.exit_threshold.copy_(kept)

    @torch.no_grad()
    def exit_thresholds_for(self, batches, shares) -> list[float]:
        """For each share, the confidence at which early exit costs that share of the GFLOPs without it on
        the batches: the lowest threshold whose cost reaches it (a lower one exits sooner and costs
        less), solved on the trace of one pass."""
        kept = self.exit_threshold.clone()
        self.exit_threshold.fill_(float("inf"))
        without_exit = self.mean_gflops(batches)
        self.exit_threshold.copy_(kept)
        confidence, cost = self.exit_trace(batches)
        return [lowest_threshold_reaching(confidence, cost, share * without_exit) for share in shares]

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        # a head saved before early exit existed has no threshold: it never exits
        state_dict = dict(state_dict)
        state_dict.setdefault("exit_threshold", torch.tensor(float("inf")))
        return super().load_state_dict(state_dict, strict, assign)
