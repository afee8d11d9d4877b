"""Listen to Look (image-based) where a few frames hold the class and the cheap feature says which: does
it beat uniform sampling of as many frames, and do its defaults train as well as a small grid?

    python bench/listentolook.py [--picks 2,4,10] [--seeds 0,1] [--train 500 --val 1000] [--no-grid]
                                 [--threads 1] [--root DIR] [--smoke]

The task is bench/train_defaults.py's liteeval task (c2f.demo.synthetic.liteeval_cache, evidence 5: the
class only in the fine features of the 1-3 frames of 12-24 that the coarse features mark, 5 classes),
with its recurrent size (--fine-hidden 64); listentolook searches its default 16 candidates.

1. Quality bar: listentolook --picks K against uniform --frames K (as many fine reads, a little
   fewer GFLOPs: no cheap preview) and --frames K+1 (more GFLOPs), same sets and cache, every run with the
   defaults and each seed; top-1 and GFLOPs on the validation split. Also how sparse the evidence is: the
   share of validation videos whose K evenly spaced frames hold no marked frame, against the share whose
   K picks hold one (from decisions.csv).
2. Defaults against bench/train_defaults.py's grid (--lr {1e-3, 3e-3, 1e-2} x --epochs {10, 30, 60}, each
   rate given to every weight), the mean over the seeds; the gap is the grid's best minus the defaults.
"""
from __future__ import annotations

import argparse
import logging
import statistics
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from c2f.rundir import RunDir                           # noqa: E402
from c2f.config import TrainConfig                      # noqa: E402
from c2f.data import uniform_positions                  # noqa: E402
from c2f.demo.synthetic import liteeval_cache           # noqa: E402
from c2f.training import train_head                     # noqa: E402
from train_defaults import compare, table_row           # noqa: E402  (the grid and rule of the other methods)

SIZES = dict(fine_hidden=64)


def make_task(root: Path, train: int, val: int):
    folder = root / f"liteeval_{train}_{val}"
    syn = liteeval_cache(folder, num_train=train, num_val=val, evidence=5.0)
    return syn, dict(manifest=str(syn.manifest), cache=str(syn.cache)) | SIZES


def uniform_misses(syn, frames: int) -> float:
    """Share of validation videos whose `frames` evenly spaced frames hold no marked frame."""
    val = pd.read_csv(syn.manifest).query("split == 'val'").video_id
    marked = [syn.informative[v] for v in val]
    positions = uniform_positions(torch.tensor([len(m) for m in marked]), frames)
    return float(np.mean([not m[p].any() for m, p in zip(marked, positions.numpy())]))


def picks_hit(syn, run: Path) -> tuple[float, float]:
    """(share of validation videos with a marked frame among the picks, share of the picks that are marked)."""
    decisions = RunDir(run).table("decisions.csv")
    marked = np.concatenate([syn.informative[v] for v in decisions.video_id.unique()])
    picked = decisions.fine.to_numpy() > 0
    per_video = pd.Series(picked & marked).groupby(decisions.video_id.to_numpy()).any()
    return float(per_video.mean()), float(marked[picked].mean())


def train(runs: Path, task: dict, method: str, seed: int, **settings) -> tuple[dict, Path]:
    out = runs / "_".join([method, str(seed)] + [f"{k}{v}" for k, v in settings.items()])
    metrics = train_head(TrainConfig.of(method=method, out=str(out), seed=seed, progress=False, overwrite=True,
                                        curve=False, **(task | settings)))
    return metrics, out


def quality_bar(syn, task: dict, runs: Path, picks: list[int], seeds: list[int], extra: dict) -> list[dict]:
    """listentolook --picks K against uniform --frames K and K+1, per seed."""
    rows = []
    for K in picks:
        for seed in seeds:
            ours, run = train(runs, task, "listentolook", seed, picks=K, **extra)
            hit_videos, hit_picks = picks_hit(syn, run)
            row = {"K": K, "seed": seed, "listentolook": ours["top1"], "ltl_gflops": ours["gflops_mean"],
                   "videos_hit": hit_videos, "picks_marked": hit_picks}
            for frames in (K, K + 1):
                uniform, _ = train(runs, task, "uniform", seed, frames=frames, **extra)
                row |= {f"uniform_{frames - K}": uniform["top1"], f"uniform_{frames - K}_gflops": uniform["gflops_mean"]}
            rows.append(row)
            print(f"| {K} | {seed} | {row['listentolook']:.3f} | {row['ltl_gflops']:.1f} | {row['uniform_0']:.3f} | "
                  f"{row['uniform_0_gflops']:.1f} | {row['uniform_1']:.3f} | {row['uniform_1_gflops']:.1f} | "
                  f"{uniform_misses(syn, K):.2f} | {hit_videos:.2f} | {hit_picks:.2f} |", flush=True)
    return rows


def verdict(rows: list[dict]) -> None:
    for K in sorted({r["K"] for r in rows}):
        mine = [r for r in rows if r["K"] == K]
        beats = all(r["listentolook"] > max(r["uniform_0"], r["uniform_1"]) for r in mine)
        margin = statistics.mean(r["listentolook"] - r["uniform_1"] for r in mine)
        print(f"K={K}: listentolook beats uniform K and K+1 on every seed: {beats}; mean margin over uniform K+1 "
              f"{margin * 100:+.1f} points")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--picks", default="2,4,10")
    parser.add_argument("--seeds", default="0,1")
    parser.add_argument("--train", type=int, default=500)
    parser.add_argument("--val", type=int, default=1000)
    parser.add_argument("--no-grid", action="store_true", help="the quality bar alone")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--root", help="keep the task and runs here; default: a temporary folder")
    parser.add_argument("--smoke", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    logging.disable(logging.WARNING)        # the task's shared sizes do not apply to uniform
    extra = {}
    if args.smoke:
        args.picks, args.seeds, args.train, args.val, extra = "2", "0", 40, 20, {"epochs": 1}
    picks, seeds = [int(k) for k in args.picks.split(",")], [int(s) for s in args.seeds.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(args.root or tmp)
        syn, task = make_task(root, args.train, args.val)
        print(f"quality bar: {args.train} train / {args.val} val videos, top-1 and GFLOPs on val; misses: videos "
              f"whose K uniform frames hold no marked frame; hit: videos with a marked frame among the K picks; "
              f"marked: picks on marked frames")
        print("| K | seed | listentolook | GFLOPs | uniform K | GFLOPs | uniform K+1 | GFLOPs | misses | hit | marked |")
        print("|---|---|---|---|---|---|---|---|---|---|---|")
        verdict(quality_bar(syn, task, root / "runs", picks, seeds, extra))
        if args.no_grid:
            return
        print("| task | method | defaults: top-1 | epochs | s | grid best: top-1 | setting | s | gap | time ratio |")
        print("|---|---|---|---|---|---|---|---|---|---|")
        row, _ = compare(root / "runs" / "grid", task, "listentolook", seeds, args.smoke)
        print(table_row("liteeval", "listentolook", row), flush=True)


if __name__ == "__main__":
    main()
