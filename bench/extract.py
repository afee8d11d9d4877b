"""Phase-one speed against its ceilings, on the same videos in one run.

    python bench/extract.py [--backbone mobilenet_v2@112 --backbone resnet101@224] [--repeat 4] [--fps 1]
    python bench/extract.py --smoke      # one clip, mobilenet_v2@112: seconds
    python bench/extract.py --formats    # compute-only frames/s: fp32 / channels_last / bf16
    python bench/extract.py --device cuda --make-videos 32 --repeat 8 --workers 15 --json out.json

- decode-only: frames/s of the decoding workers alone (DataLoader over DecodedVideos);
- compute-only: frames/s of each backbone, and of all of them together, on frames already in
  memory (random uint8 squares of the canvas size; pinned on a GPU, as `c2f extract` stages them),
  in `c2f extract`'s default format on the device (CPU: fp32, GPU: bf16; channels_last).
  By default on as many frames as the videos give, in the same batches: every backbone call is
  padded to --batch-size rows, so a short run's last partial batch costs a whole one in both
  measurements (104 frames at batch 32 pay for 128); a compute-only run on whole batches only
  would put the ceiling 23% too high;
- end-to-end: frames/s of `c2f extract` into a fresh cache, without its set-up (model build), and
  its decode-bound share: the part of the loop (from the first decoded chunk on) spent waiting for
  the next chunk from the decoding workers;
- the ratio end-to-end / min(decode-only, compute-only), the peak RSS, and on a GPU the MFU of
  each backbone's compute-only run (achieved FLOP/s, 2 x the counted GMACs, over --peak-tflops,
  bf16 dense; for the fp32 formats too, against the same bf16 peak).

The videos are ../shared/videos (or --videos DIR), or --make-videos N synthetic H.264 videos
(bench/_videos.py: for a machine without real ones), repeated --repeat times (different ids, same
files). Weights are random: speed and FLOP/s do not depend on them. --json writes every figure.
"""
from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import time
from pathlib import Path
from unittest import mock

import torch
from torch.utils.data import DataLoader

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import pipeline.extract                                                       # noqa: E402
from _videos import write_videos                                              # noqa: E402
from pipeline import backbones as bb                                          # noqa: E402
from pipeline.core.devices import resolve_device                              # noqa: E402
from pipeline.core.manifest import read_manifest, write_manifest              # noqa: E402
from pipeline.decode import Sampling                                          # noqa: E402
from pipeline.extract import ExtractConfig, extract                           # noqa: E402
from pipeline.frames import DecodedVideos                                     # noqa: E402
from pipeline.runner import FeatureRunner, snippet_of                         # noqa: E402

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
    if device.type == "cuda":          # as `c2f extract` stages them: the copy to the GPU is asynchronous
        images, clips = images.pin_memory(), None if clips is None else clips.pin_memory()
    runner(images[:batch], None if clips is None else clips[:batch])
    if device.type == "cuda":
        torch.cuda.synchronize()
    started = time.perf_counter()
    for start in range(0, frames, batch):
        runner(images[start:start + batch], None if clips is None else clips[start:start + batch])
    if device.type == "cuda":
        torch.cuda.synchronize()
    return frames / (time.perf_counter() - started)


def peak_tflops(device, given: float | None) -> float | None:
    """The bf16 dense peak for MFU: --peak-tflops, else by the GPU's name; None on the CPU."""
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return given or next((v for k, v in PEAK_BF16_TFLOPS.items() if k in name), None)


def gmacs_of(fs) -> float:
    return bb.gflops_per_frame(fs) * (fs.grid ** 2 if fs.grid else 1)


def mfu(frames_per_second: float, fs, peak: float | None) -> float | None:
    return frames_per_second * 2 * gmacs_of(fs) * 1e9 / (peak * 1e12) if peak else None


FORMATS = {"fp32, contiguous": ("fp32", False), "fp32, channels_last": ("fp32", True),
           "bf16, channels_last": ("bf16", True)}


def formats_table(specs, device, batch: int, frames: int, peak: float | None) -> list[dict]:
    """Compute-only frames/s (and MFU on a GPU) of each backbone in each of --precision x --channels-last."""
    print(f"{'backbone':<28}" + "".join(f"{name:>22}" for name in FORMATS))
    rows = []
    for fs in specs:
        rates = [compute_only([fs], device, batch, frames, *fmt) for fmt in FORMATS.values()]
        print(f"{fs.name:<28}" + "".join(f"{r:>15.1f} ({r / rates[0]:.2f}x)" for r in rates))
        rows += [{"backbone": fs.name, "format": name, "frames_per_s": r, "x_fp32_contiguous": r / rates[0],
                  "gmacs_per_frame": gmacs_of(fs), "mfu": mfu(r, fs, peak)} for name, r in zip(FORMATS, rates)]
    if peak:
        print("MFU (of the bf16 dense peak, " + f"{peak:.0f} TFLOPS): " + ", ".join(
            f"{r['backbone']} {r['format']} {r['mfu']:.1%}" for r in rows))
    return rows


class WaitedFor:
    """The decoded chunks as the extraction loop takes them, timing each wait for the next one."""

    def __init__(self, chunks):
        self.chunks, self.waits, self.first_at = chunks, [], None

    def __iter__(self):
        iterator = iter(self.chunks)            # starts the decoding workers
        while True:
            started = time.perf_counter()
            try:
                chunk = next(iterator)
            except StopIteration:
                return
            self.waits.append(time.perf_counter() - started)
            self.first_at = self.first_at or time.perf_counter()
            yield chunk


def end_to_end(manifest: Path, out: Path, backbones: list[str], args) -> dict:
    """`c2f extract` into a fresh cache, the loop's waits for decoded chunks timed."""
    waited: list[WaitedFor] = []
    original = pipeline.extract._decoded

    def timed(*given):
        waited.append(WaitedFor(original(*given)))
        return waited[-1]
    cfg = ExtractConfig(str(manifest), str(out), backbones, fps=args.fps, weights=["random"],
                        batch_size=args.batch_size, workers=args.workers, device=args.device, progress=False)
    with mock.patch.object(pipeline.extract, "_decoded", timed):
        summary = extract(cfg)
    ended = time.perf_counter()
    loop = summary.seconds - summary.setup_seconds
    chunks = waited[0]
    after_first = ended - chunks.first_at if chunks.first_at else 0.0
    waiting = sum(chunks.waits[1:])
    result = {"frames": summary.frames, "end_to_end_fps": summary.frames / loop, "loop_s": loop,
              "setup_s": summary.setup_seconds, "batch_size": summary.batch_size,
              "first_chunk_s": chunks.waits[0] if chunks.waits else None,
              "decode_wait_s": waiting, "decode_bound_share": waiting / after_first if after_first else None}
    print(f"end-to-end             {result['end_to_end_fps']:9.1f} frames/s ({summary.frames} frames in {loop:.1f} s "
          f"after {summary.setup_seconds:.1f} s of set-up; batch {summary.batch_size})")
    if result["decode_bound_share"] is not None:
        print(f"decode-bound share     {result['decode_bound_share']:9.1%} of the loop after the first chunk "
              f"({waiting:.2f} of {after_first:.2f} s waiting for decoded chunks; the first came after "
              f"{result['first_chunk_s']:.2f} s: the workers' start)")
    return result


def ceilings(entries, specs, device, args) -> dict:
    """Decode-only and compute-only frames/s on the run's videos."""
    sampling = Sampling(fps=args.fps)
    canvas, clip_frames = max(fs.input_size for fs in specs), snippet_of(specs)[0]
    frames, seconds = decode_only(entries, sampling, canvas, clip_frames, args.batch_size, args.workers)
    result = {"decoded_frames": frames, "decode_only_fps": frames / seconds, "compute_only": {},
              "compute_precision": "bf16" if device.type == "cuda" else "fp32"}
    print(f"{len(entries)} videos, {frames} frames at {args.fps} fps, {device}, {torch.get_num_threads()} threads, "
          f"{args.workers} decoding workers, batch {args.batch_size}, random weights")
    print(f"decode-only            {result['decode_only_fps']:9.1f} frames/s")
    peak, compute_frames = peak_tflops(device, args.peak_tflops), args.compute_frames or frames
    precision = result["compute_precision"]        # c2f extract's default on this device (channels_last too)
    for fs in specs:
        rate = compute_only([fs], device, args.batch_size, compute_frames, precision)
        result["compute_only"][fs.name] = {"frames_per_s": rate, "gmacs_per_frame": gmacs_of(fs),
                                           "mfu": mfu(rate, fs, peak)}
        line = f"compute-only {fs.name:<26}{rate:9.1f} frames/s"
        if peak:
            line += f"   MFU {mfu(rate, fs, peak):.1%} of {peak:.0f} TFLOPS ({precision}, channels_last)"
        print(line + f"   ({gmacs_of(fs):.2f} GMACs/frame)")
    result["compute_all_fps"] = (compute_only(specs, device, args.batch_size, compute_frames, precision)
                                 if len(specs) > 1 else result["compute_only"][specs[0].name]["frames_per_s"])
    print(f"compute-only, all sets {result['compute_all_fps']:9.1f} frames/s")
    return result


def the_videos(args, folder: Path) -> list[Path]:
    if args.make_videos:
        width, height = map(int, args.video_size.split("x"))
        started = time.perf_counter()
        made = write_videos(folder / "videos", args.make_videos, args.video_seconds, width, height)
        print(f"made {len(made)} synthetic H.264 videos ({width}x{height}, 25 fps, {args.video_seconds:g} s) "
              f"in {time.perf_counter() - started:.1f} s")
        return made
    videos = sorted(Path(args.videos).glob("*.mp4"))[:1 if args.smoke else None]
    if not videos:
        sys.exit(f"no mp4 files in {args.videos} (give --videos DIR, or --make-videos N)")
    return videos


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backbone", action="append", default=None)
    parser.add_argument("--videos", default=str(REPO.parent / "shared" / "videos"))
    parser.add_argument("--make-videos", type=int, default=0, help="N synthetic H.264 videos in place of --videos")
    parser.add_argument("--video-size", default="640x360", help="of the synthetic videos, WIDTHxHEIGHT")
    parser.add_argument("--video-seconds", type=float, default=30.0, help="of the synthetic videos")
    parser.add_argument("--repeat", type=int, default=4)
    parser.add_argument("--fps", type=float, default=1.0)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--compute-frames", type=int, default=None,
                        help="frames for the compute-only runs (default: as many as decoded)")
    parser.add_argument("--peak-tflops", type=float, default=None, help="bf16 dense peak, for MFU on a GPU")
    parser.add_argument("--json", default=None, help="write every figure to this file")
    parser.add_argument("--smoke", action="store_true", help="one clip, one small backbone, once")
    parser.add_argument("--formats", action="store_true",
                        help="only compute-only frames/s per --precision x --channels-last, on --compute-frames (64)")
    args = parser.parse_args()
    if args.smoke:
        args.repeat, args.workers = 1, 0
    return args


def main() -> None:
    args = parse_args()
    backbones = args.backbone or (["mobilenet_v2@112"] if args.smoke else ["mobilenet_v2@112", "resnet101@224"])
    device = resolve_device(args.device)
    specs = [bb.parse_spec(b) for b in backbones]
    result = {"device": str(device), "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
              "torch": torch.__version__, "threads": torch.get_num_threads(), "workers": args.workers,
              "batch_size": args.batch_size, "weights": "random", "peak_tflops": peak_tflops(device, args.peak_tflops)}
    if args.formats:
        result["formats"] = formats_table(specs, device, args.batch_size, args.compute_frames or 64,
                                          result["peak_tflops"])
    else:
        with tempfile.TemporaryDirectory() as tmp:
            videos = the_videos(args, Path(tmp))
            manifest = repeated_manifest(Path(tmp), videos, args.repeat)
            entries = read_manifest(manifest).entries
            result["videos"] = {"files": len(videos), "repeat": args.repeat, "synthetic": bool(args.make_videos)}
            result |= ceilings(entries, specs, device, args)
            result |= end_to_end(manifest, Path(tmp) / "cache", backbones, args)
            ratio = result["end_to_end_fps"] / min(result["decode_only_fps"], result["compute_all_fps"])
            result["end_to_end_over_ceiling"] = ratio
            print(f"end-to-end / min(decode-only, compute-only) = {ratio:.2f}")
        usage = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
                 resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
        result["peak_rss_gb"] = {"main": usage[0] / 2**20, "largest_worker": usage[1] / 2**20}
        print(f"peak RSS: main process {usage[0] / 2**20:.2f} GB, largest decoding worker {usage[1] / 2**20:.2f} GB")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
