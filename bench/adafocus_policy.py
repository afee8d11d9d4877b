"""AdaFocus's patch policies side by side on a synthetic cache with a known answer.

    python bench/adafocus_policy.py [--grid 7] [--seeds 0,1,2] [--runs expected,expected-ascent,ppo,random,central,plus]
        [--train 300] [--val 150] [--hidden 64] [--stages 20,20,5] [--lrs 0.1,0.01,0.01] [--smoke]

The cache is c2f.synthetic.adafocus_cache (the class only in the candidate holding a drifting
object, the glance map marking where it is; marker and evidence 5), one per seed. Runs:
`expected`, `expected-ascent` and `ppo` are `adafocus` with that --stage2; `random` and
`central` are the fixed policies; `plus` and `plus-ppo` are `adafocus_plus` (keep ratio 0.5)
with the default and the PPO stage II. Prints, per run and seed: top-1, the share of read
patches on the object's candidate over all read frames and over the late half of each video's,
patches read a video, and seconds.
"""
from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from c2f.config import TrainConfig                          # noqa: E402
from c2f.demo.synthetic import adafocus_cache, object_hits      # noqa: E402
from c2f.rundir import RunDir                                  # noqa: E402
from c2f.training import train_head                            # noqa: E402

RUNS = {"expected": ("adafocus", "learned", "expected"), "expected-ascent": ("adafocus", "learned", "expected-ascent"),
        "ppo": ("adafocus", "learned", "ppo"), "random": ("adafocus", "random", "expected"),
        "central": ("adafocus", "central", "expected"), "plus": ("adafocus_plus", "learned", "expected"),
        "plus-ppo": ("adafocus_plus", "learned", "ppo")}


def run_one(name: str, cache, common: dict, out: Path) -> dict:
    method, policy, stage2 = RUNS[name]
    started = time.time()
    metrics = train_head(TrainConfig.of(method=method, policy=policy, stage2=stage2, out=str(out), **common))
    decisions = RunDir(out).table("decisions.csv")
    hits = object_hits(decisions.video_id, decisions.t, decisions.patch, cache)
    return {"top1": metrics["top1"], "hit_all": hits["all"], "hit_late": hits["late"],
            "patches": metrics["fine_mean"], "seconds": time.time() - started}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--grid", type=int, default=7)
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--runs", default="expected,expected-ascent,ppo,random,central,plus")
    parser.add_argument("--train", type=int, default=300)
    parser.add_argument("--val", type=int, default=150)
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--stages", default="20,20,5")
    parser.add_argument("--lrs", default="0.1,0.01,0.01")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, one seed (seconds)")
    args = parser.parse_args()
    if args.smoke:
        args.seeds, args.runs, args.train, args.val, args.stages = "0", "expected,ppo,random,plus", 20, 10, "1,1,1"
    logging.basicConfig(level=logging.WARNING)
    rows = []
    for seed in map(int, args.seeds.split(",")):
        with tempfile.TemporaryDirectory() as tmp:
            cache = adafocus_cache(Path(tmp), num_train=args.train, num_val=args.val, grid=args.grid, marker=5.0,
                                   evidence=5.0, seed=seed)
            common = dict(manifest=str(cache.manifest), cache=str(cache.cache), seed=seed, progress=False,
                          focus=f"resnet50@224-grid{args.grid}x128", adafocus_hidden=args.hidden, batch_size=32,
                          stage_epochs=tuple(map(int, args.stages.split(","))), keep_ratio=0.5,
                          stage_lrs=tuple(map(float, args.lrs.split(","))))
            for name in args.runs.split(","):
                rows.append({"run": name, "seed": seed} | run_one(name, cache, common, Path(tmp) / name))
                print(" ".join(f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}" for k, v in rows[-1].items()),
                      flush=True)
    table = pd.DataFrame(rows).groupby("run", sort=False).agg(["mean", "min", "max"])
    print(table.drop(columns="seed").round(3).to_string())


if __name__ == "__main__":
    main()
