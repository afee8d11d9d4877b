"""`c2f evaluate-online`: recognition under a budget of K fine-feature reads (LiteEval Fig. 2).

The run's head stops each video once it has read the fine feature K times and predicts
there (K' = frames seen so far); the methods with a budget say so in their record
(c2f.methods: fine reads for LiteEval, glimpses for FrameGlimpse, frames read for FastForward,
the first K sampled frames for AdaFocus, its Fig. 6 online setting). The baselines use the per-frame classifier of a `uniform`
run on the same fine features (as LiteEval's paper): UNIFORM-K averages K frames spread evenly over
the first K' frames of each video, SEQ-K the first K frames.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from pipeline.cache import Cache
from pipeline.core.devices import resolve_device
from pipeline.core.errors import RunError
from pipeline.core.manifest import read_manifest

from ..data import Batch, VideoSet, length_batches, load_videos, uniform_positions
from ..evaluate import EVAL_BATCH, EvalResult, run_head, top1
from ..heads import methods
from ..heads.uniform import UniformHead
from ..rundir import RunDir, load_run


def _row(method: str, K: int, scores: np.ndarray, targets: np.ndarray, gflops: np.ndarray,
         fine: np.ndarray, seen: np.ndarray) -> dict:
    return {"method": method, "K": K, "top1": top1(scores, targets), "gflops_mean": float(gflops.mean()),
            "gflops_std": float(gflops.std()), "fine_mean": float(fine.mean()), "frames_seen_mean": float(seen.mean())}


@torch.no_grad()
def frame_baseline(head: UniformHead, videos: VideoSet, frames_seen: np.ndarray, K: int, sequential: bool,
                   batch_size: int = EVAL_BATCH) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Scores, GFLOPs and fine reads of UNIFORM-K (K frames over the first K') or SEQ-K (frames 0..K-1),
    computed on the device the head is on."""
    head.eval()
    device = next(head.parameters()).device
    scores = np.zeros((len(videos), len(videos.classes)), dtype=np.float32)
    gflops, fine = np.zeros(len(videos)), np.zeros(len(videos), dtype=np.int64)
    per_frame_head = head.costs["fine_classifier"] + (head.costs.get("coarse_classifier", 0.0))
    for index in length_batches(videos.lengths, batch_size, shuffle=False):
        batch = Batch(videos, index, device)
        if sequential:
            positions = torch.minimum(torch.arange(K)[None, :], batch.lengths[:, None] - 1)
        else:
            horizon = torch.from_numpy(frames_seen[index.numpy()]).clamp(min=1)
            positions = uniform_positions(torch.minimum(horizon, batch.lengths), K)
        probs, _ = head.frame_probs(batch, positions)
        scores[index.numpy()] = probs.mean(1).float().cpu().numpy()
        cost = K * per_frame_head + batch.read_gflops()
        gflops[index.numpy()] = cost.numpy()
        fine[index.numpy()] = batch.reads["fine"].sum(1).numpy()
    return scores, gflops, fine


def evaluate_online(run_dir: str | Path, budgets: list[int], uniform_run: str | Path | None = None,
                    batch_size: int = EVAL_BATCH, progress: bool = True, device: str = "auto") -> list[dict]:
    """One row per method and K; written to RUN/online.csv."""
    device = str(resolve_device(device))
    cfg, head, classes = load_run(run_dir, device)
    if not cfg.record.budgeted:
        budgeted = [name for name, m in methods().items() if m.budgeted]
        raise RunError(f"{run_dir} is a {cfg.method} run; online budgets apply to {', '.join(budgeted)}",
                       "give a uniform run with --uniform-run for the UNIFORM-K / SEQ-K baselines")
    manifest = read_manifest(cfg.manifest, check_paths=False)
    cache = Cache(cfg.cache)
    videos = load_videos(manifest, cfg.eval_split, cache, cfg.feature_sets(), classes)
    baseline = None
    if uniform_run is not None:
        base_cfg, baseline, base_classes = load_run(uniform_run, device)       # on --device, as the run
        fine = cfg.feature_sets().get("fine")
        if base_cfg.method != "uniform" or base_cfg.feature_sets()["fine"] != fine or base_classes != classes:
            raise RunError(f"{uniform_run} must be a uniform run on the same fine features ({fine}) and classes")
        base_videos = load_videos(manifest, cfg.eval_split, cache, {"fine": fine}, classes)
        if base_videos.video_ids != videos.video_ids:
            raise RunError("the uniform run's videos differ from the run's (another cache or manifest?)")
    rows = []
    for K in budgets:
        result: EvalResult = run_head(head, videos, batch_size, device, fine_budget=K, progress=progress,
                                      desc=f"K={K}")
        seen = result.frames_seen()
        rows.append(_row(cfg.method, K, result.scores, result.targets, result.gflops, result.fine_count(), seen))
        if baseline is not None:
            for name, sequential in (("uniform_k", False), ("seq_k", True)):
                scores, gflops, fine = frame_baseline(baseline, base_videos, seen, K, sequential, batch_size)
                horizon = np.full(len(videos), K) if sequential else seen
                rows.append(_row(name, K, scores, result.targets, gflops, fine, np.minimum(horizon, videos.lengths.numpy())))
    RunDir(run_dir).write_table("online.csv", rows)
    return rows
