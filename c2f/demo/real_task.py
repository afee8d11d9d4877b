"""A small task of real videos, for judging training defaults where the data is small (the bench
bench/train_defaults.py and the tests): the demo's videos (c2f.demo.videos) made longer and
sampled at 1 fps, as the papers sample, through phase one with torchvision's ImageNet
MobileNetV2 at 112 px (coarse) and 224 px (fine).

Each video lasts `seconds` (written at 2 fps); the textured square is on screen for 3-5 of its
seconds, so the class is on 3-5 of the ~`seconds` sampled frames and is readable in the 224 px
feature only. Six textures (c2f.demo.videos.TEXTURES): chance is 1/6.

The ImageNet checkpoint must be in torch's hub cache (`make weights`); nothing is downloaded.
Deterministic: the same arguments write the same videos and the same features.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pipeline.extract import ExtractConfig, extract

from .videos import TEXTURES, DemoVideoConfig, write_demo_videos

COARSE, FINE = "mobilenet_v2@112", "mobilenet_v2@224"
# AdaFocus's: the glance at 112 px shows where the square is, not its texture; a 3 x 3 grid of 96 px
# patches cut from the 224 px frame, each through MobileNetV2 (the 56 px square fits in one patch)
GLANCE, FOCUS = "mobilenet_v2@112-map", "mobilenet_v2@224-grid3x96"
VIDEO_FPS = 2                 # written; phase one samples 1 fps of it
SQUARE_FRAMES = (6, 10)       # of the video's: 3-5 s on screen


@dataclass
class RealTask:
    manifest: Path
    cache: Path
    coarse: str = COARSE
    fine: str = FINE
    glance: str = GLANCE
    focus: str = FOCUS


def video_config(out: str | Path, train: int, val: int, seconds: int, seed: int = 0, classes: int = 6,
                 progress: bool = False) -> DemoVideoConfig:
    if VIDEO_FPS * seconds < SQUARE_FRAMES[1]:
        raise ValueError(f"a video of the real task lasts at least {SQUARE_FRAMES[1] // VIDEO_FPS} s (the square's "
                         f"longest showing), not {seconds}")
    return DemoVideoConfig(out=str(out), train_videos=train, val_videos=val, num_frames=VIDEO_FPS * seconds,
                           fps=VIDEO_FPS, object_frames=SQUARE_FRAMES, classes=TEXTURES[:classes], seed=seed,
                           progress=progress)


def write_real_task(root: str | Path, train: int = 120, val: int = 300, seconds: int = 30, seed: int = 0,
                    classes: int = 6, weights: str = "imagenet", progress: bool = False,
                    sets: tuple[str, ...] = (COARSE, FINE)) -> RealTask:
    """Videos, manifest and features under `root` (videos/, manifest.csv, cache/): written once, then
    reused (the extraction resumes if it was interrupted). `weights`: phase one's --weights (`random`
    for a smoke run without the checkpoint: then the features mean nothing). `sets`: the feature sets
    extracted (LiteEval's coarse and fine by default; (GLANCE, FOCUS) for AdaFocus)."""
    root = Path(root)
    manifest = root / "manifest.csv"
    if not manifest.exists():          # written last by write_demo_videos: the videos are all there
        write_demo_videos(video_config(root, train, val, seconds, seed, classes, progress))
    cache = root / "cache"        # a rerun skips the videos already extracted
    extract(ExtractConfig(str(manifest), str(cache), list(sets), fps=1.0, weights=[weights],
                          progress=progress))
    return RealTask(manifest, cache)
