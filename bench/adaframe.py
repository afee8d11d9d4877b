"""Does AdaFrame beat uniform sampling of as many frames at equal GFLOPs, and do its defaults train it as
well as a small grid?

    python bench/adaframe.py [--train 2000 --val 500] [--seeds 0,1] [--threads 1] [--root DIR] [--smoke]

The task: the synthetic LiteEval cache (c2f.demo.synthetic.liteeval_cache) with videos of exactly 16
frames, so that AdaFrame's 16 cached positions are every frame: the class is only in the fine feature
of 1-2 frames a video, which the coarse feature marks; 5 classes, evidence of norm 5, heads of 64 units.
It first prints how often uniform sampling of k frames holds an informative frame at all (the task's
sparsity). For each seed: AdaFrame with the defaults (its curve.csv: the utility threshold at every
share of --max-steps), then `uniform` (and, to tell the frames from the aggregation, `lstm`) on
ceil(frames AdaFrame read) evenly spaced frames, same fine set, same cache (at least as many frames,
and more GFLOPs), and uniform at AdaFrame's GFLOPs (interpolated between k - 1 and k frames). Then
the defaults against a grid of --lr {1e-3, 3e-3, 1e-2} x --epochs {5, 15}, every weight at the grid's
rate (bench/train_defaults.py's way); top-1 is the mean over the seeds.
"""
from __future__ import annotations

import argparse
import math
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

from c2f.config import TrainConfig                      # noqa: E402
from c2f.data import uniform_positions                  # noqa: E402
from c2f.demo.synthetic import liteeval_cache           # noqa: E402
from c2f.rundir import RunDir                           # noqa: E402
from c2f.training import train_head                     # noqa: E402
from train_defaults import setting_text, train_once     # noqa: E402

GRID = [{"lr": lr, "epochs": e} for lr in (1e-3, 3e-3, 1e-2) for e in (5, 15)]
FRAMES = 16


def make_task(root: Path, train: int, val: int) -> tuple[dict, object]:
    made = liteeval_cache(root, num_train=train, num_val=val, num_classes=5, frames=(FRAMES, FRAMES),
                          informative=(1, 2), evidence=5.0)
    return dict(manifest=str(made.manifest), cache=str(made.cache), fine_hidden=64), made


def uniform_hits(made, ks) -> dict[int, float]:
    """The share of validation videos whose k evenly spaced frames hold an informative one."""
    val = set(pd.read_csv(made.manifest).query("split == 'val'").video_id)
    marks = np.stack([made.informative[v] for v in sorted(val)])
    return {k: float(marks[:, uniform_positions(torch.tensor([FRAMES]), k)[0].numpy()].any(1).mean()) for k in ks}


def adaframe_points(runs: Path, task: dict, seed: int, extra: dict) -> list[dict]:
    """AdaFrame with the defaults: its evaluation, then its curve's utility points (frames = fine reads)."""
    out = runs / f"adaframe_{seed}"
    metrics = train_head(TrainConfig.of(method="adaframe", out=str(out), seed=seed, progress=False, overwrite=True,
                                        **(task | extra)))
    points = [{"point": "defaults", "frames": metrics["fine_mean"], "gflops": metrics["gflops_mean"],
               "top1": metrics["top1"]}]
    curve = RunDir(out).table("curve.csv").query("knob == 'utility'")
    points += [{"point": f"utility {r.target:g}", "frames": r.fine_rate * FRAMES, "gflops": r.gflops_mean,
                "top1": r.top1} for r in curve.itertuples()]
    return points


def baseline(runs: Path, task: dict, method: str, frames: int, seed: int, extra: dict) -> dict:
    out = runs / f"{method}{frames}_{seed}"
    metrics = train_head(TrainConfig.of(method=method, out=str(out), seed=seed, frames=frames, progress=False,
                                        overwrite=True, curve=False, **(task | extra)))
    return {"top1": metrics["top1"], "gflops": metrics["gflops_mean"]}


def quality_bar(runs: Path, task: dict, seeds: list[int], extra: dict) -> pd.DataFrame:
    """AdaFrame's points against uniform (and lstm) on k = ceil(frames read) frames, and against uniform at
    AdaFrame's GFLOPs: interpolated between the uniform runs on either side (mixing k and k + 1 frames
    over the videos costs and scores in between)."""
    rows = []
    for seed in seeds:
        points = [p | {"seed": seed, "k": max(1, math.ceil(p["frames"] - 1e-9))}
                  for p in adaframe_points(runs, task, seed, extra)]
        ks = sorted({p["k"] for p in points} | {max(1, p["k"] - 1) for p in points})
        found = {(m, k): baseline(runs, task, m, k, seed, extra) for m in ("uniform", "lstm") for k in ks}
        curve = sorted((found["uniform", k]["gflops"], found["uniform", k]["top1"]) for k in ks)
        for p in points:
            p |= {f"{m}_{key}": found[m, p["k"]][key] for m in ("uniform", "lstm") for key in ("top1", "gflops")}
            p["uniform_top1_at_equal_gflops"] = float(np.interp(p["gflops"], *zip(*curve)))
        rows += points
    return pd.DataFrame(rows)


def grid(runs: Path, task: dict, seeds: list[int], smoke: bool) -> pd.DataFrame:
    rows = []
    for settings in [{"steps": 4} if smoke else {}] + (GRID[:1] if smoke else GRID):
        top1 = [train_once(runs, task, "adaframe", seed, settings)["top1"] for seed in seeds]
        rows.append({"setting": setting_text(settings) or "defaults", "top1": statistics.mean(top1),
                     "per_seed": " ".join(f"{t:.3f}" for t in top1)})
    return pd.DataFrame(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--train", type=int, default=2000)
    parser.add_argument("--val", type=int, default=500)
    parser.add_argument("--seeds", default="0,1")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--root", help="keep the task and the runs here; default: a temporary folder")
    parser.add_argument("--smoke", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    seeds, extra = [int(s) for s in args.seeds.split(",")], {}
    if args.smoke:
        args.train, args.val, seeds, extra = 40, 20, [0], {"epochs": 1}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(args.root or tmp)
        task, made = make_task(root / f"task_{args.train}_{args.val}", args.train, args.val)
        hits = uniform_hits(made, range(1, 11))
        print("share of validation videos whose k evenly spaced frames hold an informative one:",
              ", ".join(f"k={k}: {h:.2f}" for k, h in hits.items()))
        bar = quality_bar(root / "runs", task, seeds, extra)
        bar["beats_uniform_k"] = bar.top1 > bar.uniform_top1
        bar["beats_uniform_gflops"] = bar.top1 > bar.uniform_top1_at_equal_gflops
        print(bar.round(3).to_markdown(index=False))
        table = grid(root / "grid", task, seeds, args.smoke)
        print(table.round(3).to_markdown(index=False))
        print(f"defaults {table.top1.iloc[0]:.3f}, grid best {table.top1.iloc[1:].max():.3f}: "
              f"gap {100 * (table.top1.iloc[1:].max() - table.top1.iloc[0]):+.1f} points")


if __name__ == "__main__":
    main()
