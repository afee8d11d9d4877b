"""AR-Net's quality bar on its synthetic task, and its training defaults against a small grid.

    python bench/arnet.py [--seeds 0,1] [--train 400] [--val 400] [--threads 1] [--root DIR]
                          [--no-grid] [--csv FILE] [--smoke]

The task (c2f.demo.task_arnet.arnet_cache): 16 frames a video, 5 classes; on 4 frames the class shows
only in the high-resolution set (priced as resnet50@224's counted GMACs), on 4 in all three sets
(resnet34@168, resnet18@112), on 8 in none; the cheap feature (mobilenet_v2@112's price) marks
which frames are which. Each seed writes its own task (data seed = training seed).

Quality bar, per seed: AR-Net trained with c2f's defaults (the LSTM at 64 units, a size of this
task like bench/train_defaults.py's heads), and with the paper's efficiency weight 0.05; for each,
the share of the hard frames read at the high resolution against the share of the other frames,
the share of the easy frames read at some resolution, its top-1 and GFLOPs. Against them, UNIFORM
(c2f's defaults) on the high-resolution set at N evenly spaced frames, N the fewest whose GFLOPs
reach AR-Net's, and on the low-resolution set at every frame.

Defaults against a grid (--no-grid: skipped): AR-Net's defaults against --lr {1e-3, 3e-3, 1e-2} x
--epochs {10, 30, 60}, each rate given to every weight (as bench/train_defaults.py's grid), top-1 the
mean over the seeds; the gap is the grid's best minus the defaults', in points.
"""
from __future__ import annotations

import argparse
import itertools
import logging
import math
import statistics
import sys
import tempfile
from pathlib import Path
from unittest import mock

import pandas as pd
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from c2f.config import RATE_WIDTH, TrainConfig          # noqa: E402
from c2f.demo.task_arnet import FINE_SETS, arnet_cache, read_shares     # noqa: E402
from c2f.rundir import RunDir                            # noqa: E402
from c2f.training import train_head                     # noqa: E402

TASK = {"policy_hidden": 64}                  # AR-Net's size on this task (both the defaults and the grid)
PAPER_EFFICIENCY = 0.05
GRID_LRS, GRID_EPOCHS = (1e-3, 3e-3, 1e-2), (10, 30, 60)


def make_task(root: Path, seed: int, train: int, val: int):
    return arnet_cache(root / f"task_{seed}_{train}_{val}", num_train=train, num_val=val, seed=seed)


def train(task, out: Path, method: str, seed: int, settings: dict) -> dict:
    """One training; a grid setting (one that names --lr) gives every weight that rate."""
    cfg = TrainConfig.of(method=method, manifest=str(task.manifest), cache=str(task.cache), out=str(out), seed=seed,
                         progress=False, overwrite=True, curve=False, **settings)
    with mock.patch("c2f.training.schedule.RATE_WIDTH", math.inf if "lr" in settings else RATE_WIDTH):
        return train_head(cfg)


def quality(task, runs: Path, seed: int, smoke: bool) -> list[dict]:
    """AR-Net (defaults; the paper's efficiency weight) and the fixed resolutions at its GFLOPs."""
    short = {"steps": 4} if smoke else {}
    rows = []
    for name, extra in (("defaults", {}), (f"efficiency {PAPER_EFFICIENCY}", {"efficiency_weight": PAPER_EFFICIENCY})):
        out = runs / f"arnet_{seed}_{len(rows)}"
        metrics = train(task, out, "arnet", seed, TASK | extra | short)
        shares = read_shares(RunDir(out).table("decisions.csv"), task.informative)
        price = metrics["gflops_mean"]
        frames = max(1, math.ceil(price / _price(out, "fine.0")))
        high = train(task, runs / f"high_{seed}_{frames}", "uniform", seed, {"fine": FINE_SETS[0], "frames": frames} | short)
        low = train(task, runs / f"low_{seed}", "uniform", seed, {"fine": FINE_SETS[2], "frames": 16} | short)
        rows.append({"seed": seed, "arnet": name, "top1": metrics["top1"], "gflops": price, **shares,
                     "high_frames": frames, "high_top1": high["top1"], "high_gflops": high["gflops_mean"],
                     "low_top1": low["top1"], "low_gflops": low["gflops_mean"]})
    return rows


def _price(run: Path, role: str) -> float:
    return RunDir(run).config()["feature_sets"][role]["attrs"]["gflops_per_frame"]


def grid(tasks: dict, runs: Path, smoke: bool) -> list[dict]:
    """The defaults and every grid setting, each the mean top-1 over the seeds."""
    settings = [{}] + ([{"lr": 1e-2, "epochs": 2}] if smoke else
                       [{"lr": lr, "epochs": e} for lr, e in itertools.product(GRID_LRS, GRID_EPOCHS)])
    rows = []
    for setting in settings:
        results = [train(task, runs / ("grid_" + "_".join([str(seed)] + [f"{k}{v}" for k, v in setting.items()])),
                         "arnet", seed, TASK | setting | ({"steps": 4} if smoke and not setting else {}))
                   for seed, task in tasks.items()]
        rows.append({"setting": " ".join(f"--{k} {v}" for k, v in setting.items()) or "defaults",
                     "top1": statistics.mean(r["top1"] for r in results),
                     "gflops": statistics.mean(r["gflops_mean"] for r in results),
                     "epochs": results[0]["training"]["epochs"],
                     "seconds": statistics.mean(r["training"]["seconds"] for r in results)})
    return rows


def print_quality(rows: list[dict]) -> None:
    print("| seed | AR-Net | top-1 | GFLOPs | high res. on hard frames | on the others | easy frames read | "
          "high res. on N frames: N, top-1, GFLOPs | low res. on 16: top-1, GFLOPs |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['seed']} | {r['arnet']} | {r['top1']:.3f} | {r['gflops']:.2f} | {r['high_on_hard']:.2f} | "
              f"{r['high_on_others']:.2f} | {r['read_on_easy']:.2f} | {r['high_frames']}, {r['high_top1']:.3f}, "
              f"{r['high_gflops']:.2f} | {r['low_top1']:.3f}, {r['low_gflops']:.2f} |", flush=True)


def print_grid(rows: list[dict]) -> None:
    default, tuned = rows[0], rows[1:]
    best = max(tuned, key=lambda r: (r["top1"], -r["seconds"]))
    print("| setting | top-1 | GFLOPs | epochs | training s |\n|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['setting']} | {r['top1']:.3f} | {r['gflops']:.2f} | {r['epochs']} | {r['seconds']:.1f} |")
    print(f"gap (grid best {best['setting']} minus defaults): {(best['top1'] - default['top1']) * 100:+.1f} points")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", default="0,1")
    parser.add_argument("--train", type=int, default=400)
    parser.add_argument("--val", type=int, default=400)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1: steady timings on a busy machine)")
    parser.add_argument("--root", help="keep the tasks and runs here; default: a temporary folder")
    parser.add_argument("--no-grid", action="store_true")
    parser.add_argument("--csv", help="write the quality rows here (the grid's beside it, -grid.csv)")
    parser.add_argument("--smoke", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    logging.disable(logging.WARNING)
    if args.smoke:
        args.seeds, args.train, args.val = "0", 24, 12
    seeds = [int(s) for s in args.seeds.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(args.root or tmp)
        tasks = {seed: make_task(root, seed, args.train, args.val) for seed in seeds}
        rows = [row for seed, task in tasks.items() for row in quality(task, root / "runs", seed, args.smoke)]
        print_quality(rows)
        grid_rows = [] if args.no_grid else grid(tasks, root / "runs", args.smoke)
        if grid_rows:
            print_grid(grid_rows)
        if args.csv:
            pd.DataFrame(rows).to_csv(args.csv, index=False)
            if grid_rows:
                pd.DataFrame(grid_rows).to_csv(Path(args.csv).with_name(Path(args.csv).stem + "-grid.csv"), index=False)


if __name__ == "__main__":
    main()
