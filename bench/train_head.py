"""Phase-two speed: each training stage and the evaluation of a head, on synthetic caches of the
papers' shapes, in videos per second.

    python bench/train_head.py [--videos 5000] [--frames 100] [--adafocus-videos 256] [--smoke]
    python bench/train_head.py --device cuda --videos 2000 --frames 25 --json phase_two.json

LiteEval: coarse 1280-d and fine 2048-d float16 features (MobileNetV2 / ResNet-101), hidden 64 / 512,
batch 128, 200 classes: loading, one training epoch, the sparse evaluation. AdaFocus at the paper's
sizes: a 1280 x 7 x 7 glance map and a 7 x 7 grid of 2048-d patch features, 16 frames, GRU 1024,
200 classes: one epoch of each stage (I classifier, II policy, III classifier) and the evaluation.
The caches are written once under --root and reused; prints the peak resident memory (and on a
GPU the peak of its allocated memory). On a GPU each stage first trains one untimed batch (CUDA's
and cuBLAS's lazy start-up), then the rest of the epoch is timed.
"""
from __future__ import annotations

import argparse
import json
import logging
import math
import resource
import sys
import time
from pathlib import Path

import torch
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from c2f.config import TrainConfig                                         # noqa: E402
from c2f.data import Batch, length_batches                                  # noqa: E402
from c2f.evaluate import run_head                                           # noqa: E402
from c2f.heads import build_head                                            # noqa: E402
from c2f.demo.synthetic import adafocus_cache, liteeval_cache                     # noqa: E402
from c2f.training.inputs import head_dims, load_data  # noqa: E402
from c2f.training.loop import freeze_outside, train_one_epoch  # noqa: E402
from c2f.training.schedule import make_optimizer  # noqa: E402


def synchronized(device: str) -> float:
    """time.time() once the device's queued work is done."""
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)
    return time.time()


def stage_speeds(cfg: TrainConfig) -> dict[str, float]:
    """Videos per second of one epoch of every training stage, and of the evaluation."""
    t = time.time()
    train, _, evaluation, classes = load_data(cfg)
    speeds = {"load": len(train) / (time.time() - t)}
    head = build_head(cfg, head_dims(train, classes)).to(cfg.device)
    stages = head.training_stages([1, 1, 1][:len(cfg.record.stages)], cfg.stage_schedule()[1])
    for stage in stages:
        head.set_stage(stage.name)
        freeze_outside(head, stage)
        indices = length_batches(train.lengths, cfg.batch_size, shuffle=True,
                                 generator=torch.Generator().manual_seed(0))
        optimizer, schedule = make_optimizer(stage, cfg, max(len(indices), math.ceil(len(train) / cfg.batch_size)))
        untimed = 1 if torch.device(cfg.device).type == "cuda" and len(indices) > 1 else 0
        with tqdm(disable=True) as bar:
            train_one_epoch(head, optimizer, schedule, [Batch(train, i, cfg.device) for i in indices[:untimed]],
                            cfg.grad_clip, bar)
            t = synchronized(cfg.device)
            train_one_epoch(head, optimizer, schedule, (Batch(train, i, cfg.device) for i in indices[untimed:]),
                            cfg.grad_clip, bar)
        speeds[f"train {stage.name}"] = sum(len(i) for i in indices[untimed:]) / (synchronized(cfg.device) - t)
    t = synchronized(cfg.device)
    run_head(head, evaluation, batch_size=256, device=cfg.device)
    speeds["evaluate"] = len(evaluation) / (synchronized(cfg.device) - t)
    return speeds


def liteeval(root: Path, videos: int, frames: int, device: str) -> dict:
    folder = root / f"liteeval_{videos}x{frames}"
    if not (folder / "manifest.csv").exists():
        liteeval_cache(folder, num_train=videos, num_val=0, num_classes=200, frames=(frames, frames),
                       informative=(5, 10), coarse=("mobilenet_v2@112", 1280),
                       fine=("resnet101@224", 2048))
    cfg = TrainConfig.of(method="liteeval", manifest=str(folder / "manifest.csv"), cache=str(folder / "cache"),
                         out=str(folder / "run"), eval_split="train", coarse_hidden=64, fine_hidden=512,
                         batch_size=128, device=device, progress=False)
    return report(f"LiteEval, {videos} videos x {frames} frames, hidden 64/512, batch 128", stage_speeds(cfg))


def adafocus(root: Path, videos: int, grid: int, channels: int, dim: int, hidden: int, device: str) -> dict:
    folder = root / f"adafocus_{videos}_{grid}x{grid}_{dim}"
    if not (folder / "manifest.csv").exists():
        adafocus_cache(folder, num_train=videos, num_val=0, num_classes=200, frames=(16, 16), grid=grid,
                       channels=channels, dim=dim)
    cfg = TrainConfig.of(method="adafocus", manifest=str(folder / "manifest.csv"), cache=str(folder / "cache"),
                         out=str(folder / "run"), eval_split="train", glance="mobilenet_v2@224-map",
                         focus=f"resnet50@224-grid{grid}x128", adafocus_hidden=hidden, batch_size=32, device=device,
                         progress=False)
    return report(f"AdaFocus, {videos} videos x 16 frames, {channels} x {grid} x {grid} glance, "
                  f"{grid} x {grid} x {dim} patches, GRU {hidden}, batch 32", stage_speeds(cfg))


def report(title: str, speeds: dict[str, float]) -> dict:
    print(f"{title} ({torch.get_num_threads()} threads)")
    for name, value in speeds.items():
        print(f"  {name:<12}{value:10.1f} videos/s")
    return {"title": title, "videos_per_s": speeds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--videos", type=int, default=5000)
    parser.add_argument("--frames", type=int, default=100)
    parser.add_argument("--adafocus-videos", type=int, default=256)
    parser.add_argument("--root", default="/tmp/c2f-bench")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, ... (the heads and their batches)")
    parser.add_argument("--json", default=None, help="write every figure to this file")
    parser.add_argument("--smoke", action="store_true", help="tiny caches: seconds")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    root = Path(args.root) / ("smoke" if args.smoke else "")
    if args.smoke:
        runs = [liteeval(root, 64, 12, args.device), adafocus(root, 16, 3, 8, 16, 32, args.device)]
    else:
        runs = [liteeval(root, args.videos, args.frames, args.device),
                adafocus(root, args.adafocus_videos, 7, 1280, 2048, 1024, args.device)]
    result = {"device": args.device, "threads": torch.get_num_threads(),
              "runs": dict(zip(("liteeval", "adafocus"), runs)),
              "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20}
    print(f"peak RSS {result['peak_rss_gb']:.1f} GB")
    if torch.device(args.device).type == "cuda":
        result["gpu"], result["peak_gpu_gb"] = torch.cuda.get_device_name(), torch.cuda.max_memory_allocated() / 2**30
        print(f"peak GPU memory allocated {result['peak_gpu_gb']:.1f} GB ({result['gpu']})")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
