"""Phase-one speed against its ceilings, on the same videos in one run.

    python bench/extract.py [--backbone mobilenet_v2@112 --backbone resnet101@224] [--repeat 4] [--fps 1]
    python bench/extract.py --smoke      # one clip, mobilenet_v2@112: seconds
    python bench/extract.py --formats    # compute-only frames/s: fp32 / channels_last / bf16

- decode-only: frames/s of the decoding workers alone (DataLoader over DecodedVideos);
- compute-only: frames/s of each backbone, and of all of them together, on frames already in
  memory (random uint8 squares of the canvas size). By default on as many frames as the videos
  give, in the same batches: every backbone call is padded to --batch-size rows, so a short run's
  last partial batch costs a whole one in both measurements (104 frames at batch 32 pay for 128);
  a compute-only run on whole batches only would put the ceiling 23% too high;
- end-to-end: frames/s of `c2f extract` into a fresh cache, without its set-up (model build);
- the ratio end-to-end / min(decode-only, compute-only), the peak RSS, and on a GPU the MFU of
  each backbone's compute-only run (achieved FLOP/s / --peak-tflops, bf16 dense).

The videos are ../shared/videos repeated --repeat times (different ids, same files).
"""
from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from pipeline import backbones as bb                                          # noqa: E402
from pipeline.decode import Sampling                                          # noqa: E402
from pipeline.core.devices import resolve_device
from pipeline.extract import ExtractConfig, extract           # noqa: E402
from pipeline.frames import DecodedVideos                                     # noqa: E402
from pipeline.core.manifest import read_manifest, write_manifest                   # noqa: E402
from pipeline.runner import FeatureRunner, snippet_of                                     # noqa: E402

PEAK_BF16_TFLOPS = {"H100": 989.0, "H200": 989.0, "A100": 312.0, "L4": 121.0}   # dense, by device name


def repeated_manifest(folder: Path, videos: list[Path], repeat: int) -> Path:
    rows = [{"video_id": f"{v.stem}-{r}", "path": str(v), "labels": "demo", "split": "train"}
            for r in range(repeat) for v in videos]
    return write_manifest(rows, folder / "manifest.csv")


def decode_only(entries, sampling, canvas, clip_frames, batch, workers) -> tuple[int, float]:
    loader = DataLoader(DecodedVideos(entries, sampling, canvas, clip_frames, batch), batch_size=None,
                        num_workers=workers, prefetch_factor=4 if workers else None)
    started, frames = time.perf_counter(), 0
    for chunk in loader:
        frames += 0 if chunk.timestamps is None else len(chunk.timestamps)
    return frames, time.perf_counter() - started


def compute_only(specs, device, batch, frames, precision: str = "fp32", channels_last: bool = True) -> float:
    """frames/s of the runner on `frames` frames already in memory (after one warm-up batch); by
    default in `c2f extract`'s CPU format (fp32, channels_last)."""
    runner = FeatureRunner(specs, {fs.name: "random" for fs in specs}, device, batch, precision, channels_last)
    images = torch.randint(0, 256, (frames, runner.canvas, runner.canvas, 3), dtype=torch.uint8)
    clips = (torch.randint(0, 256, (frames, runner.clip_frames, runner.canvas, runner.canvas, 3), dtype=torch.uint8)
             if runner.clip_frames else None)
    runner(images[:batch], None if clips is None else clips[:batch])
    if device.type == "cuda":
        torch.cuda.synchronize()
    started = time.perf_counter()
    for start in range(0, frames, batch):
        runner(images[start:start + batch], None if clips is None else clips[start:start + batch])
    if device.type == "cuda":
        torch.cuda.synchronize()
    return frames / (time.perf_counter() - started)


FORMATS = {"fp32, contiguous": ("fp32", False), "fp32, channels_last": ("fp32", True),
           "bf16, channels_last": ("bf16", True)}


def formats_table(specs, device, batch: int, frames: int) -> None:
    """Compute-only frames/s of each backbone in each of --precision x --channels-last."""
    print(f"{'backbone':<28}" + "".join(f"{name:>22}" for name in FORMATS))
    for fs in specs:
        rates = [compute_only([fs], device, batch, frames, *fmt) for fmt in FORMATS.values()]
        print(f"{fs.name:<28}" + "".join(f"{r:>15.1f} ({r / rates[0]:.2f}x)" for r in rates))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backbone", action="append", default=None)
    parser.add_argument("--videos", default=str(REPO.parent / "shared" / "videos"))
    parser.add_argument("--repeat", type=int, default=4)
    parser.add_argument("--fps", type=float, default=1.0)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--compute-frames", type=int, default=None,
                        help="frames for the compute-only runs (default: as many as decoded)")
    parser.add_argument("--peak-tflops", type=float, default=None, help="bf16 dense peak, for MFU on a GPU")
    parser.add_argument("--smoke", action="store_true", help="one clip, one small backbone, once")
    parser.add_argument("--formats", action="store_true",
                        help="only compute-only frames/s per --precision x --channels-last, on --compute-frames (64)")
    args = parser.parse_args()
    backbones = args.backbone or (["mobilenet_v2@112"] if args.smoke else ["mobilenet_v2@112", "resnet101@224"])
    videos = sorted(Path(args.videos).glob("*.mp4"))[:1 if args.smoke else None]
    if args.smoke:
        args.repeat, args.workers = 1, 0
    if not videos:
        sys.exit(f"no mp4 files in {args.videos}")
    device = resolve_device(args.device)
    specs = [bb.parse_spec(b) for b in backbones]
    if args.formats:
        return formats_table(specs, device, args.batch_size, args.compute_frames or 64)
    sampling = Sampling(fps=args.fps)
    with tempfile.TemporaryDirectory() as tmp:
        manifest = repeated_manifest(Path(tmp), videos, args.repeat)
        entries = read_manifest(manifest).entries
        canvas = max(fs.input_size for fs in specs)
        clip_frames = snippet_of(specs)[0]
        frames, seconds = decode_only(entries, sampling, canvas, clip_frames, args.batch_size, args.workers)
        decode_fps = frames / seconds
        print(f"{len(entries)} videos ({len(videos)} files x {args.repeat}), {frames} frames at {args.fps} fps, "
              f"{device}, {torch.get_num_threads()} threads, {args.workers} decoding workers")
        print(f"decode-only            {decode_fps:9.1f} frames/s")
        compute, compute_frames = {}, args.compute_frames or frames
        for fs in specs:
            compute[fs.name] = compute_only([fs], device, args.batch_size, compute_frames)
            line = f"compute-only {fs.name:<26}{compute[fs.name]:9.1f} frames/s"
            gmacs = bb.gflops_per_frame(fs) * (fs.grid ** 2 if fs.grid else 1)
            if device.type == "cuda":
                name = torch.cuda.get_device_name()
                peak = args.peak_tflops or next((v for k, v in PEAK_BF16_TFLOPS.items() if k in name), None)
                if peak:
                    line += f"   MFU {compute[fs.name] * 2 * gmacs * 1e9 / (peak * 1e12):.1%} of {peak:.0f} TFLOPS"
            print(line + f"   ({gmacs:.2f} GMACs/frame)")
        combined = compute_only(specs, device, args.batch_size, compute_frames) if len(specs) > 1 \
            else compute[specs[0].name]
        print(f"compute-only, all sets {combined:9.1f} frames/s")
        cfg = ExtractConfig(str(manifest), str(Path(tmp) / "cache"), backbones, fps=args.fps, weights=["random"],
                            batch_size=args.batch_size, workers=args.workers, device=args.device, progress=False)
        summary = extract(cfg)
        loop = summary.seconds - summary.setup_seconds
        end_to_end = summary.frames / loop
        print(f"end-to-end             {end_to_end:9.1f} frames/s ({summary.frames} frames in {loop:.1f} s "
              f"after {summary.setup_seconds:.1f} s of set-up)")
        ceiling = min(decode_fps, combined)
        print(f"end-to-end / min(decode-only, compute-only) = {end_to_end / ceiling:.2f}")
    rss = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
    print(f"peak RSS: main process {rss[0] / 2**20:.2f} GB, largest decoding worker {rss[1] / 2**20:.2f} GB")


if __name__ == "__main__":
    main()
