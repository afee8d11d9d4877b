"""Real savings: `c2f predict` with the demo's uniform, liteeval and adafocus runs on the same
decoded videos, in one process: seconds a video by stage, the ratio to UNIFORM, the GFLOPs
executed against what `c2f report` charges for the same run and videos, and the share of videos
(predicted class) and frames (decisions) equal to the run's own files computed on the cache.

    python bench/predict.py [--demo demo_out] [--data data_manifests/demo] [--videos 100] [--batch-size 16]
    python bench/predict.py --smoke        # a tiny pipeline of its own, random weights (seconds)
    python bench/predict.py --device cuda --json predict.json      # on a GPU; every figure to a file

Decoding is paid by every method alike and is reported apart; the compute seconds are the CNNs'
and the head's. Each method first runs one untimed batch (model and kernel warm-up).
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from _demo import smoke_demo                             # noqa: E402
from c2f.evaluate import decision_rows  # noqa: E402
from c2f.predict.engine import Predictor, Timer                 # noqa: E402
from c2f.rundir import RunDir                                   # noqa: E402
from pipeline.core.manifest import read_manifest              # noqa: E402

METHODS = ("uniform", "liteeval", "adafocus")


def measure(predictor: Predictor, decoded: list, batch_size: int) -> tuple[dict, np.ndarray, list[str], list]:
    """Seconds by stage (one warm-up batch untimed), GFLOPs executed per video, predicted classes,
    decisions.csv rows."""
    predictor.run_batch(decoded[:batch_size], Timer())
    timer, gflops, preds, decisions = Timer(), [], [], []
    started = time.perf_counter()
    for start in range(0, len(decoded), batch_size):
        batch = predictor.run_batch(decoded[start:start + batch_size], timer)
        gflops += list(batch.executed_gflops)
        preds += [predictor.classes[int(k)] for k in batch.result.scores.argmax(1)]
        decisions += list(decision_rows(batch.result))
    timer.seconds["compute"] = time.perf_counter() - started
    return timer.seconds, np.array(gflops), preds, decisions


def same_as_cache(run: Path, video_ids: list[str], preds: list[str], decisions: list) -> dict:
    """The share of videos whose predicted class, and of frames whose decision (fine read, patch),
    equal the run's own predictions.csv / decisions.csv computed on the cache."""
    cached = RunDir(run).table("predictions.csv").set_index("video_id").pred.loc[video_ids]
    theirs = RunDir(run).table("decisions.csv")
    ours = pd.DataFrame(decisions, columns=theirs.columns)
    theirs = theirs[theirs.video_id.isin(video_ids)]
    merged = ours.merge(theirs, on=["video_id", "t"], how="outer", suffixes=("", "_cache"), indicator=True)
    equal = merged["_merge"] == "both"
    for column in [c for c in ours.columns if c not in ("video_id", "t")]:
        equal &= merged[column] == merged[f"{column}_cache"]
    return {"same class": float(np.mean(cached.to_numpy() == np.array(preds))),
            "same decisions": float(equal.mean())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--demo", default=str(REPO / "demo_out"))
    parser.add_argument("--data", default=str(REPO / "data_manifests" / "demo"))
    parser.add_argument("--videos", type=int, default=100, help="val videos")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--device", default="cpu", help="cpu, cuda, ... (the runs' CNNs and heads)")
    parser.add_argument("--json", default=None, help="write the table to this file")
    parser.add_argument("--smoke", action="store_true")
    args = parser.parse_args()
    tmp = tempfile.TemporaryDirectory()
    demo, data = smoke_demo(Path(tmp.name)) if args.smoke else (Path(args.demo), Path(args.data))
    weights = [str(demo / "resnet18_224_demo.pt")]
    entries = read_manifest(data / "manifest.csv").split("val")[:args.videos]
    predictors = {m: Predictor.from_run(demo / "runs" / m, weights, args.device) for m in METHODS}
    started = time.perf_counter()
    decoded = [predictors["uniform"].decode(e.video_id, e.path) for e in entries]
    decode_seconds = time.perf_counter() - started
    print(f"{len(decoded)} val videos, {sum(len(d.timestamps) for d in decoded)} frames, {torch.get_num_threads()} "
          f"threads; decoding (paid by every method): {decode_seconds / len(decoded) * 1000:.1f} ms a video")
    labels = {e.video_id: e.labels[0] for e in entries}
    rows = []
    for method, predictor in predictors.items():
        seconds, gflops, preds, decisions = measure(predictor, decoded, args.batch_size)
        charged = RunDir(demo / "runs" / method).table("predictions.csv").set_index("video_id").gflops
        charged = charged.loc[[d.video_id for d in decoded]].to_numpy()
        rows.append({"method": method, "ms/video": 1000 * seconds["compute"] / len(decoded),
                     "cheap CNN": 1000 * seconds["cheap_cnn"] / len(decoded),
                     "expensive CNN": 1000 * seconds["expensive_cnn"] / len(decoded),
                     "head": 1000 * seconds["head"] / len(decoded),
                     "GFLOPs executed": gflops.mean(), "GFLOPs charged (report)": charged.mean(),
                     "top-1": np.mean([p == labels[d.video_id] for p, d in zip(preds, decoded)]),
                     **same_as_cache(demo / "runs" / method, [d.video_id for d in decoded], preds, decisions)})
    table = pd.DataFrame(rows).set_index("method")
    table["x UNIFORM time"] = table["ms/video"] / table.loc["uniform", "ms/video"]
    table["executed / charged - 1"] = table["GFLOPs executed"] / table["GFLOPs charged (report)"] - 1
    print(table.to_string(float_format=lambda v: f"{v:.4g}"))
    if args.json:
        Path(args.json).write_text(json.dumps(
            {"device": args.device, "videos": len(decoded), "threads": torch.get_num_threads(),
             "decode_ms_per_video": decode_seconds / len(decoded) * 1000,
             "methods": table.reset_index().to_dict("records")}, indent=1, default=float) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
