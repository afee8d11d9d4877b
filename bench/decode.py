"""Decoding speed by seek mode, and how many cores would keep one GPU busy.

    python bench/decode.py [--videos ../shared/videos] [--demo data_manifests/demo] [--smoke]
    python bench/decode.py --accuracy          # also: the demo's UNIFORM / LiteEval top-1 per mode

Per seek mode (exact, nonref, keyframe) and sampling (1 fps, 16 frames a video): sampled frames/s
per core (one process, one thread, decoding into 256 px squares as `c2f extract` does). The number
of cores that would feed one GPU is
its ResNet-101@224 throughput (bf16 peak x --mfu / the counted 2 x GMACs a frame) over the per-core
rate. --accuracy extracts the demo's coarse and fine sets once per mode and trains `uniform` and
`liteeval` on each (same everything else), printing their top-1.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from pipeline.decode import SEEK_MODES, Sampling, decode_samples       # noqa: E402

H100_BF16_DENSE_TFLOPS = 989.0


def rate(videos: list[Path], sampling: Sampling, seek: str) -> tuple[int, float]:
    """(sampled frames, seconds) decoding every video once in this process."""
    started, frames = time.perf_counter(), 0
    for video in videos:
        frames += sum(1 for _ in decode_samples(video, sampling, 256, seek=seek))
    return frames, time.perf_counter() - started


def gpu_frames_per_second(mfu: float) -> float:
    from pipeline.backbones import gflops_per_frame, parse_spec
    return H100_BF16_DENSE_TFLOPS * 1e12 * mfu / (2 * gflops_per_frame(parse_spec("resnet101@224")) * 1e9)


def speed_table(groups: dict[str, list[Path]], samplings: dict[str, Sampling], gpu_fps: float) -> None:
    print(f"{'videos':<16}{'sampling':<12}{'seek':<10}{'frames':>8}{'frames/s/core':>15}{'cores for 1 GPU':>17}")
    for group, videos in groups.items():
        for label, sampling in samplings.items():
            for seek in SEEK_MODES:
                frames, seconds = rate(videos, sampling, seek)
                per_core = frames / seconds
                print(f"{group:<16}{label:<12}{seek:<10}{frames:>8}{per_core:>15.1f}{gpu_fps / per_core:>17.0f}")


def accuracy(demo: Path, smoke: bool) -> None:
    """The demo's top-1 for uniform and liteeval with each seek mode (coarse and fine sets only)."""
    from c2f.config import TrainConfig
    from c2f.demo.steps import COARSE, FINE
    from c2f.training import train_head
    from pipeline.extract import ExtractConfig, extract
    weights = sorted(Path("demo_out").glob("resnet18_224_demo.pt"))
    fine_weights = [f"{FINE}={weights[0]}"] if weights else []
    if not fine_weights:
        print("no demo_out/resnet18_224_demo.pt (run make demo first): the fine set uses random weights")
    with tempfile.TemporaryDirectory() as tmp:
        for seek in SEEK_MODES:
            cache = Path(tmp) / seek
            extract(ExtractConfig(str(demo / "manifest.csv"), str(cache), [COARSE, FINE], num_frames=8,
                                  weights=["imagenet", *fine_weights], seek=seek, progress=False))
            row = []
            for method in ("uniform", "liteeval"):
                sizes = dict(frames=8) if method == "uniform" else dict(coarse_hidden=32, fine_hidden=128, gamma=0.25)
                metrics = train_head(TrainConfig.of(method=method, manifest=str(demo / "manifest.csv"), cache=str(cache),
                                                    out=str(cache / method), coarse=COARSE, fine=FINE,
                                                    epochs=2 if smoke else 30, lr=3e-3, batch_size=32, progress=False,
                                                    **sizes))
                row.append(f"{method} top-1 {metrics['top1']:.3f} ({metrics['gflops_mean']:.2f} GFLOPs)")
            print(f"seek {seek:<9}" + "; ".join(row))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--videos", default=str(REPO.parent / "shared" / "videos"))
    parser.add_argument("--demo", default=str(REPO / "data_manifests" / "demo"))
    parser.add_argument("--mfu", type=float, default=0.4, help="the GPU's share of its bf16 peak on ResNet-101")
    parser.add_argument("--accuracy", action="store_true")
    parser.add_argument("--smoke", action="store_true", help="a few seconds: one clip, one demo video")
    args = parser.parse_args()
    torch.set_num_threads(1)                  # per core
    shared = sorted(Path(args.videos).glob("*.mp4"))
    demo_videos = sorted((Path(args.demo) / "videos").glob("*.mp4"))
    if not demo_videos:
        from c2f.demo.videos import DemoVideoConfig, write_demo_videos
        folder = Path(tempfile.mkdtemp()) / "demo"
        write_demo_videos(DemoVideoConfig(str(folder), train_videos=2 if args.smoke else 20, val_videos=0,
                                          progress=False))
        demo_videos = sorted((folder / "videos").glob("*.mp4"))
    groups = {"shared clips": shared[:1] if args.smoke else shared, "demo videos": demo_videos[:1 if args.smoke else 40]}
    groups = {k: v for k, v in groups.items() if v}
    gpu_fps = gpu_frames_per_second(args.mfu)
    print(f"one H100 at {args.mfu:.0%} of {H100_BF16_DENSE_TFLOPS:.0f} bf16 TFLOPS: {gpu_fps:,.0f} ResNet-101@224 "
          f"frames/s")
    speed_table(groups, {"1 fps": Sampling(fps=1.0), "16 frames": Sampling(num_frames=16)}, gpu_fps)
    if args.accuracy:
        accuracy(Path(args.demo), args.smoke)


if __name__ == "__main__":
    main()
