"""Does --gamma control LiteEval's test-time fine usage? The calibrated gate against the paper's arg-max.

    python bench/liteeval_gate.py [--train 500 --val 2000] [--gammas 0.05,0.1,0.2] [--smoke]

On the synthetic LiteEval task (c2f.demo.synthetic.liteeval_cache: class evidence only in the fine
features of the 1-3 frames a video that the coarse features mark), LiteEval with the defaults but
gamma, with the calibrated gate (--calibrate-gate) and the arg-max gate: top-1, the fine usage on
all frames, on the marked ones and on the others, and on the training videos.
"""
from __future__ import annotations

import argparse
import itertools
import sys
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from c2f.config import TrainConfig                   # noqa: E402
from c2f.demo.synthetic import liteeval_cache        # noqa: E402
from c2f.rundir import RunDir                        # noqa: E402
from c2f.training import train_head                  # noqa: E402

SIZES = dict(coarse_hidden=16, fine_hidden=64, frames=24)


def usage(run: Path, syn) -> tuple[float, float, float]:
    """Fine usage on all frames, on the marked ones, on the others (from the run's decisions.csv)."""
    decisions = RunDir(run).table("decisions.csv")
    marked = np.concatenate([syn.informative[v] for v in decisions.video_id.unique()])
    fired = decisions.fine.to_numpy().astype(bool)
    return fired.mean(), fired[marked].mean(), fired[~marked].mean()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--train", type=int, default=500)
    parser.add_argument("--val", type=int, default=2000)
    parser.add_argument("--gammas", default="0.05,0.1,0.2")
    parser.add_argument("--smoke", action="store_true")
    args = parser.parse_args()
    gammas = [float(g) for g in args.gammas.split(",")]
    extra = {}
    if args.smoke:
        args.train, args.val, gammas, extra = 40, 20, [0.1], {"epochs": 2}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        syn = liteeval_cache(root / "data", num_train=args.train, num_val=args.val, evidence=5.0)
        print(f"{args.train} train / {args.val} val videos; "
              f"{np.mean(np.concatenate(list(syn.informative.values()))):.1%} of the frames are marked")
        print(f"{'gamma':>6}{'gate':>11}{'top-1':>8}{'usage':>8}{'marked':>8}{'others':>8}{'train usage':>13}")
        for gamma, calibrate in itertools.product(gammas, (True, False)):
            run = root / f"gamma_{gamma}_{'calibrated' if calibrate else 'argmax'}"
            metrics = train_head(TrainConfig.of(method="liteeval", manifest=str(syn.manifest), cache=str(syn.cache),
                                                out=str(run), progress=False, gamma=gamma, calibrate_gate=calibrate,
                                                **SIZES, **extra))
            total, marked, others = usage(run, syn)
            print(f"{gamma:>6}{'calibrated' if calibrate else 'arg-max':>11}{metrics['top1']:>8.3f}{total:>8.3f}"
                  f"{marked:>8.3f}{others:>8.3f}{metrics['train_fire_rate']:>13.3f}")


if __name__ == "__main__":
    main()
