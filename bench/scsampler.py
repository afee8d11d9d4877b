"""SCSampler's quality bars: does the learned sampler beat K frames chosen at random at the same K, and
do its defaults train as well as a small grid?

    python bench/scsampler.py [--seeds 0,1] [--train 500 --val 1000] [--root DIR]
    python bench/scsampler.py --smoke       # tiny, seconds: it runs, nothing is measured

The task: the synthetic LiteEval cache (c2f.demo.synthetic.liteeval_cache), 16-24 frames a video of
which 1-3 hold the class in the expensive feature and are marked (not classified) in the cheap one;
T = 16 frames scored, 5 classes, the fine set priced as ResNet-50 at 224 (counted). Part 1: top-1 of
the learned sampler (`ranking`, the default, and `ce`) against `--sampler random` at K = 2, 4, 10,
each trained with the defaults, averaged over the seeds. Part 2: the defaults against --lr
{1e-3, 3e-3, 1e-2} x --epochs {10, 30, 60} (every weight at that rate, --optimizer adamw), K = 4.
"""
from __future__ import annotations

import argparse
import itertools
import statistics
import sys
import tempfile
from pathlib import Path

import pandas as pd

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from c2f.config import TrainConfig                      # noqa: E402
from c2f.demo.synthetic import liteeval_cache           # noqa: E402
from c2f.training import train_head                     # noqa: E402

GRID_LRS, GRID_EPOCHS, KS = (1e-3, 3e-3, 1e-2), (10, 30, 60), (2, 4, 10)


def make_task(root: Path, train: int, val: int) -> dict:
    if not (root / "manifest.csv").exists():
        liteeval_cache(root, num_train=train, num_val=val, frames=(16, 24), informative=(1, 3),
                       coarse=("mobilenet_v2@112", 32), fine=("resnet50@224", 64))
    return dict(manifest=str(root / "manifest.csv"), cache=str(root / "cache"), coarse="mobilenet_v2@112",
                fine="resnet50@224")


def top1(task: dict, out: Path, seeds: list[int], **settings) -> tuple[float, float, float]:
    """Mean top-1, GFLOPs and training seconds over the seeds."""
    results = [train_head(TrainConfig.of(method="scsampler", out=str(out / f"seed{seed}"), seed=seed, progress=False,
                                         curve=False, overwrite=True, **task, **settings)) for seed in seeds]
    return (statistics.mean(r["top1"] for r in results), statistics.mean(r["gflops_mean"] for r in results),
            statistics.mean(r["training"]["seconds"] for r in results))


def against_random(task: dict, root: Path, seeds: list[int], smoke: bool) -> pd.DataFrame:
    rows = []
    for k in KS[:1] if smoke else KS:
        row = {"K": k}
        for name, extra in (("ranking", {}), ("ce", {"sampler_loss": "ce"}), ("random", {"sampler": "random"})):
            row[name], row[f"{name} GFLOPs"], _ = top1(task, root / f"k{k}-{name}", seeds, top_k=k,
                                                       **extra, **({"steps": 4} if smoke else {}))
        rows.append(row | {"ranking - random": row["ranking"] - row["random"]})
    return pd.DataFrame(rows).set_index("K")


def against_grid(task: dict, root: Path, seeds: list[int], smoke: bool) -> pd.DataFrame:
    settings = {"top_k": 4} | ({"steps": 4} if smoke else {})
    defaults = top1(task, root / "defaults", seeds, **settings)
    grid = {}
    for lr, epochs in itertools.islice(itertools.product(GRID_LRS, GRID_EPOCHS), 1 if smoke else None):
        grid[(lr, epochs)] = top1(task, root / f"grid-{lr}-{epochs}", seeds, lr=lr, epochs=epochs,
                                  **({"top_k": 4, "steps": 4} if smoke else {"top_k": 4}))
    best = max(grid, key=lambda key: grid[key][0])
    return pd.DataFrame([{"defaults": defaults[0], "grid best": grid[best][0], "best setting": f"--lr {best[0]} "
                          f"--epochs {best[1]}", "gap (points)": 100 * (grid[best][0] - defaults[0]),
                          "time ratio": defaults[2] / grid[best][2]}])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", default="0,1")
    parser.add_argument("--train", type=int, default=500)
    parser.add_argument("--val", type=int, default=1000)
    parser.add_argument("--root", help="keep the task and runs here (default: a temporary folder)")
    parser.add_argument("--smoke", action="store_true")
    args = parser.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")][:1 if args.smoke else None]
    tmp = tempfile.TemporaryDirectory()
    root = Path(args.root or tmp.name)
    task = make_task(root / "task", *((30, 20) if args.smoke else (args.train, args.val)))
    print("top-1 at the same K, learned sampler against K frames at random (mean over seeds "
          f"{','.join(map(str, seeds))}):")
    print(against_random(task, root / "random", seeds, args.smoke).to_string(float_format=lambda v: f"{v:.3f}"))
    print("defaults (K = 4) against the grid:")
    print(against_grid(task, root / "grid", seeds, args.smoke).to_string(index=False, float_format=lambda v: f"{v:.3f}"))


if __name__ == "__main__":
    main()
