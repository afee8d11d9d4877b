"""Evaluation shared by every head: run it over a split (the cache's videos, or predict's raw ones),
charge FLOPs where features were read, compute top-1 and mAP, and lay out decisions.csv's rows."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from tqdm import tqdm

from .data import Batch, VideoSet, length_batches
from .heads import Head
from .methods import role_of

# videos per batch when nothing is trained (evaluation, the held-out score, thresholds): larger
# batches only cost memory there
EVAL_BATCH = 256


@dataclass
class EvalResult:
    video_ids: list[str]
    targets: np.ndarray                 # [V, C] multi-hot
    scores: np.ndarray                  # [V, C] softmax
    offsets: np.ndarray                 # [V + 1] frames of video i are rows offsets[i]:offsets[i+1]
    reads: dict[str, np.ndarray]        # role -> [N] int, packed like the cache: features (patches) read per frame
    gflops: np.ndarray                  # [V] per video: features read + the head's own steps
    patches: np.ndarray | None = None   # [N] the candidate read per frame (-1: none), for a patch grid

    def per_video(self, role: str) -> np.ndarray:
        return np.add.reduceat(self.reads[role].astype(np.int64), self.offsets[:-1])

    def fine_roles(self) -> list[str]:
        """The data roles of the fine set(s): ['fine'], or ['fine.0', 'fine.1', ...] (AR-Net's resolutions)."""
        return [role for role in self.reads if role_of(role) == "fine"]

    def fine_reads(self) -> np.ndarray:
        """[N] fine features (or patches) read per frame, over every fine set."""
        return sum(self.reads[role] for role in self.fine_roles())

    def fine_set(self) -> np.ndarray | None:
        """[N] which fine set was read at each frame (its index, -1 none), where the head reads several."""
        roles = self.fine_roles()
        if len(roles) < 2:
            return None
        read = np.stack([self.reads[role] > 0 for role in roles], 1)
        return np.where(read.any(1), read.argmax(1), -1)

    def fine_count(self) -> np.ndarray:
        """Fine features (patches) read per video, over every fine set."""
        return np.add.reduceat(self.fine_reads().astype(np.int64), self.offsets[:-1])

    def subset(self, keep: list[int]) -> "EvalResult":
        """The result of the videos `keep` (indices, in order) alone."""
        rows = np.concatenate([np.arange(self.offsets[i], self.offsets[i + 1]) for i in keep]) if keep else \
            np.zeros(0, dtype=np.int64)
        lengths = np.diff(self.offsets)[keep]
        return EvalResult([self.video_ids[i] for i in keep], self.targets[keep], self.scores[keep],
                          np.concatenate([[0], np.cumsum(lengths)]).astype(self.offsets.dtype),
                          {role: read[rows] for role, read in self.reads.items()}, self.gflops[keep],
                          None if self.patches is None else self.patches[rows])

    def frames_seen(self) -> np.ndarray:
        """1 + the last frame any feature was read at (where an online run stopped)."""
        seen = np.logical_or.reduce([r > 0 for r in self.reads.values()])
        position = np.arange(len(seen)) - np.repeat(self.offsets[:-1], np.diff(self.offsets))
        return np.maximum.reduceat(np.where(seen, position + 1, 0), self.offsets[:-1])


@torch.no_grad()
def run_head(head: Head, videos: VideoSet, batch_size: int = EVAL_BATCH, device: str = "cpu",
             fine_budget: int | None = None, progress: bool = False, desc: str = "evaluate") -> EvalResult:
    head.eval()
    with torch.random.fork_rng():       # fixed policies that sample (random, gaussian) give the same result every time
        torch.manual_seed(0)
        return _run_head(head, videos, batch_size, device, fine_budget, progress, desc)


def _run_head(head: Head, videos: VideoSet, batch_size: int, device: str, fine_budget: int | None,
              progress: bool, desc: str) -> EvalResult:
    order, scores, gflops = [], [], []
    reads = {role: np.zeros(int(videos.offsets[-1]), dtype=np.int32) for role in videos.features}
    patches = np.full(int(videos.offsets[-1]), -1, dtype=np.int32) if any(
        info.kind == "grid" for info in videos.sets.values()) else None
    batches = length_batches(videos.lengths, batch_size, shuffle=False)
    for index in tqdm(batches, desc=desc, unit="batch", disable=not progress, leave=False):
        batch = Batch(videos, index, device)
        out = head(batch, fine_budget=fine_budget)
        cost = out.head_gmacs.double().cpu() + batch.read_gflops()
        rows, positions = batch.mask.cpu().nonzero(as_tuple=True)
        packed = (batch.starts[rows] + positions).numpy()
        for role, read in batch.reads.items():
            at_frames = read[rows, positions]
            if batch.is_grid(role):
                reads[role][packed] = at_frames.sum(1).numpy()
                patches[packed] = torch.where(at_frames.any(1), at_frames.int().argmax(1), -1).numpy()
            else:
                reads[role][packed] = at_frames.numpy()
        order.append(index)
        scores.append(out.logits.float().softmax(1).cpu())
        gflops.append(cost)
    order = torch.cat(order)
    inverse = torch.empty_like(order)
    inverse[order] = torch.arange(len(order))
    return EvalResult(videos.video_ids, videos.targets.numpy(), torch.cat(scores)[inverse].numpy(),
                      videos.offsets.numpy(), reads, torch.cat(gflops)[inverse].numpy(), patches)


def top1(scores: np.ndarray, targets: np.ndarray) -> float:
    """A hit when the arg-max is one of the video's labels."""
    # float64 and a count: 95 hits in 100 is 0.95, not float32's 0.949999988
    return int((targets[np.arange(len(scores)), scores.argmax(1)] > 0).sum()) / len(scores) if len(scores) else float("nan")


def mean_ap(scores: np.ndarray, targets: np.ndarray, classes: list[str]) -> tuple[float, list[str]]:
    """Per-class AP on softmax scores, averaged over classes with a positive in the split."""
    present = targets.sum(0) > 0
    left_out = [c for c, p in zip(classes, present) if not p]
    if not present.any():
        return float("nan"), left_out
    from sklearn.metrics import average_precision_score     # here: scikit-learn takes ~0.8 s to import
    aps = [average_precision_score(targets[:, k], scores[:, k]) for k in np.flatnonzero(present)]
    return min(1.0, float(np.mean(aps))), left_out      # a mean of 1.0s can round to 1.0000000000000002


def compute_metrics(result: EvalResult, method: str, split: str, classes: list[str]) -> dict:
    mAP, left_out = mean_ap(result.scores, result.targets, classes)
    fine = result.fine_count()
    return {"method": method, "split": split, "num_videos": len(result.video_ids),
            "top1": top1(result.scores, result.targets), "mAP": mAP,
            "gflops_mean": float(result.gflops.mean()), "gflops_std": float(result.gflops.std()),
            "fine_mean": float(fine.mean()), "fine_std": float(fine.std()),
            "fine_rate": float(fine.sum() / max(1, int(result.offsets[-1]))),     # of all frames (patches: per frame)
            "map_classes_left_out": left_out}


def decision_columns(patches: bool, fine_sets: int = 1) -> list[str]:
    """decisions.csv's header (docs/contracts/runs.md): `patch` for the heads that read one patch per frame,
    `fine_set` for those that choose among several fine sets."""
    return ["video_id", "t", "fine"] + (["patch"] if patches else []) + (["fine_set"] if fine_sets > 1 else [])


def decision_rows(result: EvalResult):
    """decisions.csv's rows: (video_id, t, fine[, patch][, fine_set]) for every evaluated frame, t its
    position among the video's frames; `fine` the fine features (patches) read there."""
    reads, patches, offsets, chosen = result.fine_reads(), result.patches, result.offsets, result.fine_set()
    for i, video_id in enumerate(result.video_ids):
        rows = range(offsets[i], offsets[i + 1])
        for t, row in enumerate(rows):
            yield ((video_id, t, int(reads[row])) + (() if patches is None else (int(patches[row]),))
                   + (() if chosen is None else (int(chosen[row]),)))
