"""Synthetic H.264 videos for the benches that run where no real videos are (a GPU machine may have
no ../shared): a smooth random texture panning across the frame with a bright square moving over
it, encoded by PyAV's libx264 (preset veryfast, its default GOP of 250 frames and B-frames), so
that decoding one costs about what a real video of that size, frame rate and motion costs. A module,
not a bench (the tests skip names that start with an underscore)."""
from __future__ import annotations

import os
from concurrent.futures import ProcessPoolExecutor
from fractions import Fraction
from pathlib import Path

import av
import numpy as np


def texture(rng: np.random.Generator, height: int, width: int, cell: int = 8) -> np.ndarray:
    """A smooth RGB texture twice the frame's size: random cells of `cell` px, box-blurred."""
    cells = rng.integers(0, 256, (2 * height // cell + 2, 2 * width // cell + 2, 3)).astype(np.float32)
    big = cells.repeat(cell, 0).repeat(cell, 1)[:2 * height, :2 * width]
    for axis in (0, 1):                 # a box blur of `cell` px along each axis (cumulative sums)
        summed = np.cumsum(big, axis=axis)
        big = (summed - np.roll(summed, cell, axis=axis)) / cell
    return np.clip(big, 0, 255).astype(np.uint8)


def write_video(path: Path, seconds: float = 30.0, width: int = 640, height: int = 360, fps: int = 25,
                seed: int = 0) -> Path:
    """One synthetic H.264 mp4 (see the module docstring)."""
    rng = np.random.default_rng(seed)
    background = texture(rng, height, width)
    side = max(4, height // 6)
    time_base = Fraction(1, fps)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.codec_context.options = {"preset": "veryfast"}
        stream.codec_context.time_base = time_base
        for i in range(int(seconds * fps)):
            top, left = (i * 2) % height, (i * 3) % width            # the camera pans
            image = background[top:top + height, left:left + width].copy()
            y, x = (i * 5) % (height - side), (i * 7) % (width - side)
            image[y:y + side, x:x + side] = (255, 255, 255)         # an object moves
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts, frame.time_base = i, time_base
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def write_videos(folder: Path, count: int, seconds: float = 30.0, width: int = 640, height: int = 360,
                 fps: int = 25) -> list[Path]:
    """`count` synthetic videos in `folder` (written in parallel, one process a core)."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / f"synthetic_{i:04d}.mp4" for i in range(count)]
    workers = max(1, min(count, len(os.sched_getaffinity(0))))
    with ProcessPoolExecutor(workers) as pool:
        done = [pool.submit(write_video, p, seconds, width, height, fps, i) for i, p in enumerate(paths)]
        return [d.result() for d in done]
