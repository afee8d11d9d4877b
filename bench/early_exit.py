"""Sample-wise early exit and predicting at a chosen point, measured.

Part 1, on the cache: for every run (the demo's, and runs this script trains with the defaults on
the synthetic LiteEval and AdaFocus tasks), the run as trained against its curve.csv's early-exit
points. The point is chosen on the run's calibration videos, never the eval split: the cheapest
whose top-1 there is within 1 point of the head as trained there (c2f.points.exit_point); the eval
split's figures of that point are what early exit buys.

Part 2, on raw video: the demo's runs through `c2f predict`'s engine at `--gflops-budget` set to that
point's GFLOPs on the calibration videos: GFLOPs executed against the curve's point, frames decoded
against sampled, and seconds a video (decoding included: it now stops at the exit) against the run as
trained.

    python bench/early_exit.py [--demo demo_out] [--data data_manifests/demo] [--synthetic 500]
    python bench/early_exit.py --smoke        # tiny runs of its own (random weights), seconds
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from _demo import smoke_demo                                     # noqa: E402
from c2f.config import TrainConfig                               # noqa: E402
from c2f.points import exit_point, points_of                     # noqa: E402
from c2f.demo.synthetic import write_synthetic_cache             # noqa: E402
from c2f.predict.engine import Predictor, Timer                  # noqa: E402
from c2f.rundir import RunDir                                    # noqa: E402
from c2f.training import train_head                              # noqa: E402
from pipeline.core.manifest import read_manifest                 # noqa: E402

DEMO_METHODS = ("uniform", "lstm", "liteeval", "adafocus")
SYNTHETIC = {"liteeval": ("uniform", "lstm", "liteeval"), "adafocus": ("adafocus",)}


def exit_row(name: str, run: Path) -> dict:
    """The run as trained, and its early-exit point chosen on its calibration videos (the cheapest within 1
    point of top-1 there: c2f.points), with that point's figures on the eval split."""
    metrics, curve = RunDir(run).metrics(), RunDir(run).table("curve.csv")
    best = exit_point(points_of(metrics, curve), metrics["calibration"]["chosen_on"])
    return {"run": name, "top-1": metrics["top1"], "GFLOPs": metrics["gflops_mean"],
            "chosen on": None if best is None else best["chosen_on"],
            "exit share": None if best is None else best["target"],
            "exit top-1": None if best is None else best["top1"], "exit GFLOPs": None if best is None else best["gflops_mean"],
            "exit calibration GFLOPs": None if best is None else best["calibration_gflops"],
            "frames seen": None if best is None else best["frames_seen"],
            "GFLOPs saved": None if best is None else 1 - best["gflops_mean"] / metrics["gflops_mean"]}


def synthetic_runs(root: Path, videos: int, smoke: bool) -> list[tuple[str, Path]]:
    runs = []
    for kind, methods in SYNTHETIC.items():
        cache, set_names = write_synthetic_cache(kind, root / kind, videos, videos, seed=0)
        sets = dict(zip(("glance", "focus") if kind == "adafocus" else ("coarse", "fine"), set_names.split(", ")))
        for method in methods:
            out = root / "runs" / f"{kind}-{method}"
            small = ({"stage_epochs": (1, 1, 1), "adafocus_hidden": 32} if kind == "adafocus" else {"steps": 20}) if smoke else {}
            train_head(TrainConfig.of(method=method, manifest=str(cache.manifest), cache=str(cache.cache), out=str(out),
                                      progress=False, device="cpu", **sets, **small))
            runs.append((f"synthetic {kind}: {method}", out))
    return runs


def predict_at(run: Path, weights: list[str], entries, budget: float | None, batch_size: int) -> dict:
    """Predict the entries at a GFLOPs budget (None: as trained), one process, one untimed warm-up batch."""
    predictor = Predictor.from_run(run, weights, "cpu", gflops_budget=budget)
    predictor.run_batch([predictor.decode(e.video_id, e.path) for e in entries[:batch_size]], Timer())
    started, gflops, frames, decoded = time.perf_counter(), [], 0, 0
    for start in range(0, len(entries), batch_size):
        videos = [predictor.decode(e.video_id, e.path) for e in entries[start:start + batch_size]]
        batch = predictor.run_batch(videos, Timer())
        gflops += list(batch.executed_gflops)
        frames += sum(len(v.timestamps) for v in batch.videos)
        decoded += sum(len(v.timestamps) if v.frames_decoded is None else v.frames_decoded for v in batch.videos)
    point = predictor.operating_point["point"]
    return {"GFLOPs executed": float(np.mean(gflops)), "curve GFLOPs": None if point is None else point["gflops_mean"],
            "frames": frames, "frames decoded": decoded,
            "ms/video (decode + compute)": 1000 * (time.perf_counter() - started) / len(entries)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--demo", default=str(REPO / "demo_out"))
    parser.add_argument("--data", default=str(REPO / "data_manifests" / "demo"))
    parser.add_argument("--synthetic", type=int, default=500, help="training (and validation) videos a task")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--smoke", action="store_true")
    args = parser.parse_args()
    tmp = tempfile.TemporaryDirectory()
    root = Path(tmp.name)
    demo, data = smoke_demo(root / "demo") if args.smoke else (Path(args.demo), Path(args.data))
    runs = [(f"demo: {m}", demo / "runs" / m) for m in DEMO_METHODS if RunDir(demo / "runs" / m).has("curve.csv")]
    runs += synthetic_runs(root / "synthetic", 24 if args.smoke else args.synthetic, args.smoke)
    table = pd.DataFrame([exit_row(name, run) for name, run in runs]).set_index("run")
    print(table.to_string(float_format=lambda v: f"{v:.4g}"))
    entries = read_manifest(data / "manifest.csv").split("val")
    weights = [str(demo / "resnet18_224_demo.pt")]
    rows = []
    for name, run in runs[:len([m for m in DEMO_METHODS if RunDir(demo / "runs" / m).has("curve.csv")])]:
        row = table.loc[name]
        if pd.isna(row["exit GFLOPs"]):
            continue
        trained = predict_at(run, weights, entries, None, args.batch_size)
        chosen = predict_at(run, weights, entries, float(row["exit calibration GFLOPs"]), args.batch_size)
        rows.append({"run": name, "GFLOPs as trained": trained["GFLOPs executed"], **chosen,
                     "executed / curve - 1": chosen["GFLOPs executed"] / chosen["curve GFLOPs"] - 1,
                     "ms/video as trained": trained["ms/video (decode + compute)"]})
    if rows:
        print(pd.DataFrame(rows).set_index("run").to_string(float_format=lambda v: f"{v:.4g}"))


if __name__ == "__main__":
    main()
