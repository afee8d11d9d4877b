"""A zoo of unusual, odd and broken inputs through `c2f extract`, as a new user would try them.

    python bench/bad_inputs.py [--keep DIR] [--smoke]

Generates every input with PyAV and the file system (no fixture files): other codecs and containers,
10-bit, 4:4:4, 1x1, 3840x2160, 8192x2, rotated, B-frames, variable and broken timestamps, two video
streams, GIF, odd paths, and broken files, special files and links. Runs `c2f extract` on them in a
subprocess with a time limit and prints, per kind, whether it was extracted or refused and why, then
the totals: kinds tried, extracted, refused with a reason, hangs, tracebacks, computed videos lost
(a video extracted in the run but absent from the cache).
"""
from __future__ import annotations

import argparse
import csv
import os
import shutil
import socket
import subprocess
import sys
import tempfile
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

os.environ.setdefault("SVT_LOG", "1")       # the AV1 encoder's banner: errors only

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from pipeline.cache import read_feature_set               # noqa: E402
from pipeline.core.manifest import write_manifest              # noqa: E402

SETS = ["mobilenet_v2@112", "resnet18@224"]


def frame(i: int, width: int, height: int) -> np.ndarray:
    image = np.full((height, width, 3), (8 * i + 10) % 250, dtype=np.uint8)
    image[: max(1, height // 4), : max(1, width // 4)] = (255, 0, 0)
    return image


def encode(path: Path, codec: str = "libx264", size=(64, 48), frames: int = 20, rate: int = 10, pix_fmt="yuv420p",
           options: dict | None = None, pts=None, container_format=None, rotate=None, audio=False,
           extra_stream=None) -> Path:
    """One video (optionally a second video stream, an audio track, a display rotation, given pts)."""
    with av.open(str(path), "w", format=container_format) as container:
        stream = container.add_stream(codec, rate=rate)
        stream.width, stream.height, stream.pix_fmt = size[0], size[1], pix_fmt
        stream.codec_context.options = options or {}
        if pts is not None:
            stream.codec_context.time_base = Fraction(1, 1000)
        if rotate is not None:
            stream.metadata["rotate"] = str(rotate)
        streams = [(stream, size)]
        if extra_stream:
            second = container.add_stream("libx264", rate=rate)
            second.width, second.height, second.pix_fmt = extra_stream[0], extra_stream[1], "yuv420p"
            streams.append((second, extra_stream))
        sound = container.add_stream("aac", rate=16000) if audio else None
        for i in range(frames):
            for out, (width, height) in streams:
                picture = av.VideoFrame.from_ndarray(frame(i, width, height), format="rgb24")
                if pts is not None:
                    picture.pts, picture.time_base = int(pts[i] * 1000), Fraction(1, 1000)
                for packet in out.encode(picture):
                    container.mux(packet)
        if sound is not None:
            samples = av.AudioFrame.from_ndarray(np.zeros((1, 16000), np.float32), format="fltp", layout="mono")
            samples.sample_rate = 16000
            for packet in list(sound.encode(samples)) + list(sound.encode()):
                container.mux(packet)
        for out, _ in streams:
            for packet in out.encode():
                container.mux(packet)
    return path


def zero_timestamps(path: Path) -> Path:
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=10)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        packets = []
        for i in range(10):
            packets += stream.encode(av.VideoFrame.from_ndarray(frame(i, 64, 48), format="rgb24"))
        for packet in packets + list(stream.encode()):
            packet.pts = packet.dts = 0
            container.mux(packet)
    return path


def valid_kinds(folder: Path, smoke: bool) -> dict[str, Path]:
    """Unusual but valid videos: each should be extracted."""
    kinds = {
        "h264 mp4": lambda p: encode(p / "h264.mp4"),
        "vp9 webm": lambda p: encode(p / "vp9.webm", "libvpx-vp9"),
        "raw Annex-B h264": lambda p: encode(p / "raw.h264", container_format="h264"),
        "all-zero timestamps": lambda p: zero_timestamps(p / "zero.mp4"),
        "comma, quote and unicode path": lambda p: encode(p / 'vidéo, "ñ" 日本.mp4'),
    }
    if not smoke:
        kinds |= {
            "hevc mkv": lambda p: encode(p / "hevc.mkv", "libx265", options={"x265-params": "log-level=error"}),
            "vp8 webm": lambda p: encode(p / "vp8.webm", "libvpx"),
            "av1 mkv": lambda p: encode(p / "av1.mkv", "libsvtav1", size=(64, 64)),
            "mpeg-2 ts": lambda p: encode(p / "mpeg2.ts", "mpeg2video"),
            "mpeg-4 part 2 avi": lambda p: encode(p / "mpeg4.avi", "mpeg4"),
            "mjpeg avi": lambda p: encode(p / "mjpeg.avi", "mjpeg", pix_fmt="yuvj420p"),
            "prores 10-bit 4:2:2 mov": lambda p: encode(p / "prores.mov", "prores", pix_fmt="yuv422p10le"),
            "ffv1 lossless mkv": lambda p: encode(p / "ffv1.mkv", "ffv1", pix_fmt="yuv420p"),
            "h264 10-bit": lambda p: encode(p / "h264_10bit.mp4", pix_fmt="yuv420p10le"),
            "h264 4:4:4": lambda p: encode(p / "h264_444.mp4", pix_fmt="yuv444p"),
            "1x1 frame": lambda p: encode(p / "one_pixel.mkv", "ffv1", size=(1, 1)),
            "odd size 65x47": lambda p: encode(p / "odd.mkv", "ffv1", size=(65, 47)),
            "3840x2160": lambda p: encode(p / "uhd.mp4", size=(3840, 2160), frames=4),
            "8192x2": lambda p: encode(p / "thin.mp4", size=(8192, 2), frames=6),
            "rotated 90": lambda p: encode(p / "rotated.mp4", rotate=90),
            "B-frames (out-of-order pts)": lambda p: encode(p / "bframes.mp4", options={"bf": "3"}),
            "variable frame rate": lambda p: encode(p / "vfr.mp4", pts=np.cumsum(np.r_[0, np.random.default_rng(0)
                                                                                          .uniform(0.02, 0.4, 19)])),
            "one-hour timestamp gap": lambda p: encode(p / "gap.mkv", frames=10, pts=[0, .1, .2, .3, .4] + [
                3600 + k / 10 for k in range(5)]),
            "two video streams": lambda p: encode(p / "two.mp4", size=(96, 96), extra_stream=(320, 240)),
            "with an audio track": lambda p: encode(p / "audio_video.mp4", audio=True),
            "a single frame": lambda p: encode(p / "single.mp4", frames=1),
            "GIF": lambda p: encode(p / "anim.gif", "gif", pix_fmt="rgb8"),
            "wmv2 asf": lambda p: encode(p / "wmv.asf", "wmv2"),
            "flv": lambda p: encode(p / "video.flv", "flv"),
            "h263 3gp": lambda p: encode(p / "h263.3gp", "h263", size=(176, 144)),
            "a png image": lambda p: _png(p / "image.png"),
            "path with spaces around": lambda p: encode(p / " spaced .mp4"),
        }
    return {name: make(folder) for name, make in kinds.items()}


def _png(path: Path) -> Path:
    from PIL import Image
    Image.fromarray(frame(3, 40, 30)).save(path)
    return path


def broken_kinds(folder: Path, smoke: bool) -> dict[str, Path]:
    """Inputs that cannot be extracted: each should be refused with a reason, the run going on."""
    full = encode(folder / "full.mp4", frames=60).read_bytes()
    kinds = {"missing file": folder / "absent.mp4", "empty file": folder / "empty.mp4",
             "garbage bytes": folder / "garbage.mp4", "named pipe (FIFO)": folder / "pipe.mp4"}
    (folder / "empty.mp4").write_bytes(b"")
    (folder / "garbage.mp4").write_bytes(np.random.default_rng(1).bytes(5000))
    os.mkfifo(folder / "pipe.mp4")
    if not smoke:
        (folder / "truncated.mp4").write_bytes(full[: len(full) // 2])
        corrupt = bytearray(full)
        middle = corrupt.find(b"mdat") + (len(corrupt) - corrupt.find(b"mdat")) // 2
        corrupt[middle:middle + 2000] = np.random.default_rng(2).bytes(2000)
        (folder / "corrupt.mp4").write_bytes(bytes(corrupt))
        (folder / "unknown_codec.mp4").write_bytes(full.replace(b"avc1", b"zzzz"))    # a damaged codec tag
        (folder / "text.mp4").write_text("this is not a video\n" * 50)
        (folder / "directory.mp4").mkdir()
        os.symlink(folder / "nowhere.mp4", folder / "dangling.mp4")
        os.symlink(folder / "loop_b.mp4", folder / "loop_a.mp4")
        os.symlink(folder / "loop_a.mp4", folder / "loop_b.mp4")
        kinds |= {"truncated mp4": folder / "truncated.mp4", "corrupt mid-stream": folder / "corrupt.mp4",
                  "unknown codec tag": folder / "unknown_codec.mp4",
                  "text file": folder / "text.mp4", "directory": folder / "directory.mp4",
                  "character device": Path("/dev/zero"), "dangling link": folder / "dangling.mp4",
                  "link loop": folder / "loop_a.mp4", "socket": folder / "sock.mp4",
                  "audio only": encode_audio_only(folder / "audio.m4a")}
    return kinds


def encode_audio_only(path: Path) -> Path:
    with av.open(str(path), "w") as container:
        stream = container.add_stream("aac", rate=16000)
        samples = av.AudioFrame.from_ndarray(np.zeros((1, 16000), np.float32), format="fltp", layout="mono")
        samples.sample_rate = 16000
        for packet in list(stream.encode(samples)) + list(stream.encode()):
            container.mux(packet)
    return path


def run(folder: Path, valid: dict[str, Path], broken: dict[str, Path], timeout: float) -> dict:
    ids = {name: f"kind{i:02d}" for i, name in enumerate([*valid, *broken])}
    rows = [{"video_id": ids[name], "path": str(path), "labels": "x", "split": "train"}
            for name, path in {**valid, **broken}.items()]
    manifest = write_manifest(rows, folder / "manifest.csv")
    server = socket.socket(socket.AF_UNIX) if "socket" in broken else None
    if server:
        server.bind(str(broken["socket"]))
    command = [sys.executable, "-c", "from c2f.cli import main; main()", "extract", "--manifest", str(manifest), "--out",
               str(folder / "cache"), "--num-frames", "4", "--weights", "random", "--video-timeout", "120",
               "--no-progress"] + [a for s in SETS for a in ("--backbone", s)]
    try:
        done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=timeout)
        hung = False
    except subprocess.TimeoutExpired:
        done, hung = None, True
    if server:
        server.close()
    return {"ids": ids, "done": done, "hung": hung}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--keep", help="write the inputs and the cache here (default: a temporary folder)")
    parser.add_argument("--smoke", action="store_true", help="a few kinds only")
    parser.add_argument("--timeout", type=float, default=900)
    args = parser.parse_args()
    folder = Path(args.keep) if args.keep else Path(tempfile.mkdtemp())
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    valid, broken = valid_kinds(folder, args.smoke), broken_kinds(folder, args.smoke)
    outcome = run(folder, valid, broken, args.timeout)
    report(folder, valid, broken, outcome)
    if not args.keep:
        shutil.rmtree(folder, ignore_errors=True)


def report(folder: Path, valid: dict, broken: dict, outcome: dict) -> None:
    done, ids = outcome["done"], outcome["ids"]
    if outcome["hung"]:
        print("HUNG: c2f extract did not finish in time")
        return
    errors = {}
    if (folder / "cache" / "errors.csv").exists():
        with open(folder / "cache" / "errors.csv", newline="", encoding="utf-8") as handle:
            errors = {row["video_id"]: row["reason"] for row in csv.DictReader(handle)}
    cached = set.intersection(*(set(read_feature_set(folder / "cache" / s)) for s in SETS)) \
        if (folder / "cache" / SETS[0] / "index.json").exists() else set()
    print(f"{'kind':<32}{'expected':<10}outcome")
    for name in [*valid, *broken]:
        video_id = ids[name]
        outcome_text = "extracted" if video_id in cached else f"refused: {errors.get(video_id, 'NO REASON')}"
        print(f"{name:<32}{'valid' if name in valid else 'broken':<10}{outcome_text}")
    tracebacks = done.stderr.count("Traceback")
    summary = next((line for line in done.stdout.splitlines() if line.startswith("done ")), "")
    extracted_in_run = int(summary.split(",")[0].split()[1]) if summary else 0
    print(f"\nkinds tried {len(ids)} ({len(valid)} valid, {len(broken)} broken): extracted {len(cached)}, refused "
          f"with a reason {sum(1 for v in ids.values() if v in errors)}, without one "
          f"{sum(1 for v in ids.values() if v not in errors and v not in cached)}; hangs 0, tracebacks {tracebacks}, "
          f"exit status {done.returncode}, computed videos lost {extracted_in_run - len(cached)}")


if __name__ == "__main__":
    main()
