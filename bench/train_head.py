"""Phase-two speed: train and evaluate one head on a synthetic cache of the papers' shape.

    python bench/train_head.py [--videos 5000] [--frames 100] [--method liteeval] [--epochs 1]

The cache (coarse 1280-d, fine 2048-d, float16, as MobileNetV2 / ResNet-101 give) is
written once under --root and reused. Prints the seconds and videos/s of loading, of
training (per epoch) and of evaluation (sparse: fine features read only where used),
and the peak resident memory.
"""
from __future__ import annotations

import argparse
import logging
import resource
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from c2f.config import TrainConfig                      # noqa: E402
from c2f.evaluate import run_head                       # noqa: E402
from c2f.synthetic import liteeval_cache                 # noqa: E402
from c2f.train import head_dims, load_data, train_epochs  # noqa: E402
from c2f.heads import build_head                        # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--videos", type=int, default=5000)
    parser.add_argument("--frames", type=int, default=100)
    parser.add_argument("--method", default="liteeval")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--coarse-hidden", type=int, default=64)
    parser.add_argument("--fine-hidden", type=int, default=512)
    parser.add_argument("--root", default="/tmp/c2f-bench")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    root = Path(args.root) / f"{args.videos}x{args.frames}"
    started = time.time()
    if not (root / "manifest.csv").exists():
        liteeval_cache(root, num_train=args.videos, num_val=0, num_classes=200, frames=(args.frames, args.frames),
                       informative=(5, 10), coarse=("mobilenet_v2@112", 1280, 0.0822),
                       fine=("resnet101@224", 2048, 7.8014))
        print(f"wrote the cache in {time.time() - started:.1f} s")
    cfg = TrainConfig(method=args.method, manifest=str(root / "manifest.csv"), cache=str(root / "cache"),
                      out=str(root / "run"), eval_split="train", epochs=args.epochs, batch_size=args.batch_size,
                      coarse_hidden=args.coarse_hidden, fine_hidden=args.fine_hidden, lr=1e-4)
    Path(cfg.out).mkdir(parents=True, exist_ok=True)
    t = time.time()
    train, evaluation, classes = load_data(cfg)
    load_s = time.time() - t
    head = build_head(cfg, head_dims(train, classes))
    optimizer = torch.optim.Adam(head.parameters(), lr=cfg.lr)
    t = time.time()
    train_epochs(head, train, cfg, 0, optimizer, torch.Generator().manual_seed(0))
    train_s = (time.time() - t) / args.epochs
    t = time.time()
    result = run_head(head, evaluation, batch_size=256, progress=True)
    eval_s = time.time() - t
    frames = int(train.offsets[-1])
    rss_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    print(f"{args.method}: {len(train)} videos x {args.frames} frames, coarse {train.sets['coarse'].frame_shape[0]}-d, "
          f"fine {train.sets['fine'].frame_shape[0]}-d, hidden {args.coarse_hidden}/{args.fine_hidden}, "
          f"{torch.get_num_threads()} threads")
    print(f"load  {load_s:7.1f} s  {len(train) / load_s:8.0f} videos/s")
    print(f"train {train_s:7.1f} s  {len(train) / train_s:8.1f} videos/s  {frames / train_s:9.0f} frames/s (per epoch)")
    print(f"eval  {eval_s:7.1f} s  {len(evaluation) / eval_s:8.1f} videos/s  {frames / eval_s:9.0f} frames/s "
          f"(fine read on {result.fine_count().sum() / frames:.1%} of frames)")
    print(f"peak RSS {rss_gb:.1f} GB")


if __name__ == "__main__":
    main()
