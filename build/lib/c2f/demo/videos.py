"""The embedded demo dataset: synthetic H.264 videos where the class needs fine detail.

Each 256x256 video shows a dark, dull, slowly turning colour gradient (frames are redundant)
and, on a run of a few consecutive frames only, a bright yellow square that glides across
the frame. The class is the square's texture, drawn with 1-pixel periods:

    flat, horizontal lines, vertical lines, checkerboard, dots

Every texture has the same mean, and each is a sum of components at the Nyquist frequency of
the 224 px frame that phase one sees: its ImageNet preprocessing keeps the central 224 px of the
256 px short side, pixel for pixel (everything happens inside that crop; the 16 px border is
background). Resizing to 112 px (bilinear, antialiased, as phase one does) filters
exactly those components out, so at 112 px all five classes look the same: the square is
visible (a coarse feature can tell *when* to look) but unreadable (only a 224 px feature
can tell *what* it is). The square is smaller than an AdaFocus patch, so one well-placed
patch is enough.

Deterministic: the same seed writes the same videos and the same manifest.
"""
from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from tqdm import tqdm

from pipeline.core.manifest import write_manifest
from pipeline.core.options import option, validate

CLASSES = ("flat", "horizontal", "vertical", "checker", "dots")
FRAME_SIDE = 256       # the video: the ImageNet evaluation transform's short side (256 for a 224 crop)
CROP_SIDE = 224        # what phase one keeps of it: the central 224 px
MARGIN = (FRAME_SIDE - CROP_SIDE) // 2
TAPER = 6       # px over which the texture fades in at the square's border
# A bright yellow square, easy to see at any size; the texture moves all three channels
# together (luma only, which H.264 keeps at full resolution) and never clips, so its mean is
# the square's colour at 112 px too.
SQUARE_COLOUR = (190, 160, 70)
TEXTURE_AMPLITUDE = 65


@dataclass
class DemoVideoConfig:
    out: str = option(help="Folder: videos/*.mp4, manifest.csv, classes.txt.")
    train_videos: int = option(150, minimum=1)
    val_videos: int = option(100, minimum=0)
    num_frames: int = option(24, cli=False)           # at `fps`: 3 s
    fps: int = option(8, cli=False)
    object_side: int = option(56, cli=False)          # px at 224: most of it fits in a 96 px patch
    object_frames: tuple[int, int] = option((7, 11), cli=False)   # the square is on screen for this many frames
    seed: int = option(0)
    progress: bool = option(True, "Show a progress bar.")

    def __post_init__(self):
        validate(self)


def texture(name: str, side: int, amplitude: float) -> np.ndarray:
    """A side x side luma offset with zero mean, built from Nyquist-frequency patterns only
    (faded in at the border, which spreads them a little)."""
    y, x = np.mgrid[0:side, 0:side]
    rows, cols = np.where(y % 2, -1.0, 1.0), np.where(x % 2, -1.0, 1.0)
    patterns = {
        "flat": np.zeros((side, side)),
        "horizontal": rows,
        "vertical": cols,
        "checker": rows * cols,
        # bright every other pixel of every other row: (1 + r)(1 + c) - 1, mean 0
        "dots": (1 + rows) * (1 + cols) / 3 - 1 / 3,
    }
    # fade the texture in over the square's border: a hard edge would let a little of it
    # through the 112 px resize (a 4-tap filter straddling the edge does not cancel)
    ramp = np.minimum(np.arange(side), np.arange(side)[::-1]) / TAPER
    fade = np.sin(np.pi / 2 * np.clip(ramp, 0, 1)) ** 2
    return amplitude * patterns[name] * fade[:, None] * fade[None, :]


def _background(rng: np.random.Generator, num_frames: int) -> np.ndarray:
    """[T, S, S, 3] float: two dull, dark colours in a gradient that slowly turns (no fine detail,
    nothing as bright or as yellow as the square)."""
    side = FRAME_SIDE
    coords = np.linspace(-1, 1, side)
    yy, xx = np.meshgrid(coords, coords, indexing="ij")
    colours = rng.uniform(30, 110, size=(2, 1)) + rng.uniform(-15, 15, size=(2, 3))
    angle, speed = rng.uniform(0, 2 * np.pi), rng.uniform(0.02, 0.06)
    frames = np.empty((num_frames, side, side, 3))
    for t in range(num_frames):
        phase = angle + speed * t
        ramp = (np.cos(phase) * xx + np.sin(phase) * yy + 1.5) / 3     # in [0, 1]
        frames[t] = colours[0] * ramp[..., None] + colours[1] * (1 - ramp[..., None])
    return frames


@dataclass
class SquarePath:
    """When and where the square is: on frames first .. first + length - 1, gliding from `start`
    to `end` (top-left corners, px in the central 224 px crop that phase one sees)."""
    first: int
    length: int
    start: tuple[int, int]
    end: tuple[int, int]

    @classmethod
    def draw(cls, rng: np.random.Generator, cfg: DemoVideoConfig) -> "SquarePath":
        length = int(rng.integers(cfg.object_frames[0], cfg.object_frames[1] + 1))
        first = int(rng.integers(0, cfg.num_frames - length + 1))
        start, end = rng.integers(0, CROP_SIDE - cfg.object_side, size=(2, 2))
        return cls(first, length, tuple(map(int, start)), tuple(map(int, end)))

    def frames(self) -> range:
        return range(self.first, self.first + self.length)

    def corner(self, t: int) -> tuple[int, int]:
        """Top-left corner on frame t: an even pixel, so that the texture keeps its phase (the
        classes must not differ by phase alone)."""
        k = (t - self.first) / max(1, self.length - 1)
        return tuple(2 * int((a + (b - a) * k) // 2) for a, b in zip(self.start, self.end))

    def columns(self, fps: int) -> dict:
        """The manifest's extra columns: seconds on screen (first and last frame) and the path."""
        return {"square_from": f"{self.first / fps:.3f}", "square_to": f"{(self.first + self.length - 1) / fps:.3f}",
                "square_path": " ".join(map(str, self.start + self.end))}

    @classmethod
    def from_columns(cls, row: dict, fps: int) -> "SquarePath":
        first = round(float(row["square_from"]) * fps)
        y0, x0, y1, x1 = map(int, row["square_path"].split())
        return cls(first, round(float(row["square_to"]) * fps) - first + 1, (y0, x0), (y1, x1))


def render_video(rng: np.random.Generator, label: str, path: SquarePath, cfg: DemoVideoConfig) -> np.ndarray:
    """[T, S, S, 3] uint8 frames: the background, and the square on its frames."""
    frames = _background(rng, cfg.num_frames)
    side = cfg.object_side
    square = np.array(SQUARE_COLOUR) + texture(label, side, TEXTURE_AMPLITUDE)[..., None]
    for t in path.frames():
        y, x = (MARGIN + c for c in path.corner(t))
        frames[t, y:y + side, x:x + side] = square
    return np.clip(np.rint(frames), 0, 255).astype(np.uint8)


def write_mp4(path: Path, frames: np.ndarray, fps: int) -> None:
    """H.264 at near-lossless quality: the 1-pixel textures must survive the encoder."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width = stream.height = frames.shape[1]
        stream.pix_fmt = "yuv420p"
        stream.codec_context.time_base = Fraction(1, fps)
        stream.codec_context.options = {"crf": "4", "preset": "veryfast"}
        for i, image in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts = i
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def _video_rng(cfg: DemoVideoConfig, split: str, index: int) -> np.random.Generator:
    """One generator per video: a video does not depend on how many others are written."""
    return np.random.default_rng([cfg.seed, ("train", "val").index(split), index])


def plan(cfg: DemoVideoConfig) -> list[dict]:
    """The manifest rows, in order: balanced classes, train videos then val videos, with the
    square's timing and path (for analysis; phase one and two never read them)."""
    rows = []
    for split, count in (("train", cfg.train_videos), ("val", cfg.val_videos)):
        for i in range(count):
            path = SquarePath.draw(_video_rng(cfg, split, i), cfg)
            rows.append({"video_id": f"{split}_{i:04d}", "path": f"videos/{split}_{i:04d}.mp4",
                         "labels": CLASSES[i % len(CLASSES)], "split": split, **path.columns(cfg.fps)})
    return rows


def write_demo_videos(cfg: DemoVideoConfig) -> Path:
    """Write OUT/videos/*.mp4, OUT/manifest.csv and OUT/classes.txt; returns the manifest's path."""
    out = Path(cfg.out)
    (out / "videos").mkdir(parents=True, exist_ok=True)
    rows = plan(cfg)
    for row in tqdm(rows, desc="demo videos", unit="video", disable=not cfg.progress):
        rng = _video_rng(cfg, row["split"], int(row["video_id"].split("_")[1]))
        path = SquarePath.draw(rng, cfg)          # the same draw as plan(); the background comes next
        write_mp4(out / row["path"], render_video(rng, row["labels"], path, cfg), cfg.fps)
    (out / "classes.txt").write_text("\n".join(CLASSES) + "\n", encoding="utf-8")
    return write_manifest(rows, out / "manifest.csv")
