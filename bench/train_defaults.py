"""Do `c2f train-head`'s defaults train a small dataset to convergence, and does --gamma control the
test-time fine usage?

    python bench/train_defaults.py [--train 500 --val 2000] [--smoke]

On a synthetic LiteEval task (c2f.synthetic.liteeval_cache: class evidence only in the fine features
of the 1-3 frames a video that the coarse features mark): LSTM and LiteEval with the defaults alone,
against their best over a grid of learning rates and fixed epochs (batch 32), scored on the
validation split (2,000 videos: top-1 within about +-1 point); then LiteEval's test-time fine usage for several gammas (calibrated gate, and the
paper's arg-max gate), with its usage on the marked frames and on the others.
"""
from __future__ import annotations

import argparse
import itertools
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from c2f.config import TrainConfig                   # noqa: E402
from c2f.demo.synthetic import liteeval_cache             # noqa: E402
from c2f.training import train_head                     # noqa: E402

SIZES = dict(coarse_hidden=16, fine_hidden=64, frames=24)


def run(root: Path, syn, name: str, **settings) -> dict:
    cfg = TrainConfig.of(manifest=str(syn.manifest), cache=str(syn.cache), out=str(root / name), progress=False,
                         **(SIZES | settings))
    return train_head(cfg)


def usage(root: Path, syn, name: str) -> tuple[float, float, float]:
    """Fine usage on all frames, on the marked ones, on the others (from the run's decisions.csv)."""
    decisions = pd.read_csv(root / name / "decisions.csv")
    marked = np.concatenate([syn.informative[v] for v in decisions.video_id.unique()])
    fired = decisions.fine.to_numpy().astype(bool)
    return fired.mean(), fired[marked].mean(), fired[~marked].mean()


def defaults_against_tuned(root: Path, syn, grid: dict) -> None:
    for method in ("lstm", "liteeval"):
        default = run(root, syn, f"{method}_default", method=method)
        tuned = {(lr, epochs): run(root, syn, f"{method}_{lr}_{epochs}", method=method, lr=lr, epochs=epochs)["top1"]
                 for lr, epochs in itertools.product(grid["lr"], grid["epochs"])}
        best = max(tuned, key=tuned.get)
        training = default["training"]
        print(f"{method:<9} defaults: top-1 {default['top1']:.3f} (lr {training['lr']} chosen from "
              f"{training.get('lr_search')}; {training['stopped']}, best epoch {training.get('best_epoch')}; "
              f"then {training.get('refit')}; {training['steps']} steps in all); best tuned: {tuned[best]:.3f} at lr {best[0]}, "
              f"{best[1]} epochs; all tuned: " + ", ".join(f"{k[0]}/{k[1]}:{v:.3f}" for k, v in tuned.items()))


def gamma_sweep(root: Path, syn, gammas: list[float]) -> None:
    print(f"{'gamma':>6}{'gate':>11}{'top-1':>8}{'usage':>8}{'marked':>8}{'others':>8}{'train usage':>13}")
    for gamma, calibrate in itertools.product(gammas, (True, False)):
        name = f"gamma_{gamma}_{'calibrated' if calibrate else 'argmax'}"
        metrics = run(root, syn, name, method="liteeval", gamma=gamma, calibrate_gate=calibrate)
        total, marked, others = usage(root, syn, name)
        print(f"{gamma:>6}{'calibrated' if calibrate else 'arg-max':>11}{metrics['top1']:>8.3f}{total:>8.3f}"
              f"{marked:>8.3f}{others:>8.3f}{metrics['train_fire_rate']:>13.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--train", type=int, default=500)
    parser.add_argument("--val", type=int, default=2000)
    parser.add_argument("--smoke", action="store_true")
    args = parser.parse_args()
    grid = {"lr": [1e-3, 3e-3, 1e-2], "epochs": [10, 20, 40, 80]}
    gammas = [0.05, 0.1, 0.2]
    if args.smoke:
        args.train, args.val, grid, gammas = 40, 20, {"lr": [1e-3], "epochs": [2]}, [0.1]
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        syn = liteeval_cache(root / "data", num_train=args.train, num_val=args.val, evidence=5.0)
        marked = np.mean(np.concatenate(list(syn.informative.values())))
        print(f"{args.train} train / {args.val} val videos; {marked:.1%} of the frames are marked")
        defaults_against_tuned(root, syn, grid)
        gamma_sweep(root, syn, gammas)


if __name__ == "__main__":
    main()
