"""Where an AdaFocus run on the demo looked: does the chosen patch hold the square? (And for a
LiteEval run: does its gate read the fine feature on the frames that show the square?)

    python bench/adafocus_hits.py RUN [RUN ...] [--manifest data_manifests/demo/manifest.csv]
    python bench/adafocus_hits.py --smoke      # a tiny demo of its own (seconds)

For every evaluated frame that shows the square (the manifest's square_from / square_to /
square_path: c2f never reads them), the share of the square's area inside each candidate patch
(the run's grid: origins from the registry's FeatureSet.patch_origins). A frame is a hit when
the chosen patch is a candidate that covers the most of it (ties all count). A 56 px square
does not always fit in one 96 px patch of the 3 x 3 grid (origins 0, 64, 128), so "the most of
it" rather than "all of it". Prints, per run: top-1, frames with the square, the hit rate on
them, the mean share of the square inside the chosen patch, the rate at which that share is at
least half, and the hit and share of the central candidate and of a random one (in
expectation) on the same frames.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _demo import smoke_demo                              # noqa: E402
from pipeline.backbones import parse_spec                 # noqa: E402
from pipeline.cache import Cache                          # noqa: E402
from c2f.demo.videos import DemoVideoConfig, SquarePath   # noqa: E402
from c2f.rundir import RunDir                             # noqa: E402


def square_coverage(path: SquarePath, frame: int, origins: list[int], patch: int, side: int) -> np.ndarray | None:
    """[G*G]: the share of the square's area inside each candidate on video frame `frame`
    (row-major candidates, as the grid is cached), or None when the square is not shown."""
    if frame not in path.frames():
        return None
    y, x = path.corner(frame)
    o = np.asarray(origins)
    overlap_y = np.clip(np.minimum(y + side, o + patch) - np.maximum(y, o), 0, None)
    overlap_x = np.clip(np.minimum(x + side, o + patch) - np.maximum(x, o), 0, None)
    return (overlap_y[:, None] * overlap_x[None, :]).reshape(-1) / side ** 2


def cached_frames(manifest: Path, cache: Path, feature_set: str, video_ids: list[str]):
    """(video_id, t, the video frame it is, the video's SquarePath) for every cached frame of the
    videos; t is the frame's position among the video's cached frames (as in decisions.csv)."""
    fps = DemoVideoConfig(out=".").fps
    rows = pd.read_csv(manifest, dtype=str).set_index("video_id")
    located, _ = Cache(cache).feature_set(feature_set).locate(set(video_ids))
    for video_id in video_ids:
        path = SquarePath.from_columns(rows.loc[video_id], fps)
        for t, seconds in enumerate(located[video_id].timestamps):
            yield video_id, t, round(float(seconds) * fps), path


def coverage_table(manifest: Path, cache: Path, focus: str, video_ids: list[str]) -> dict[tuple[str, int], np.ndarray]:
    """(video_id, t) -> each candidate's share of the square, for the cached frames that show it."""
    spec, side = parse_spec(focus), DemoVideoConfig(out=".").object_side
    table = {}
    for video_id, t, frame, path in cached_frames(manifest, cache, focus, video_ids):
        share = square_coverage(path, frame, spec.patch_origins(), spec.patch_size, side)
        if share is not None:
            table[video_id, t] = share
    return table


def patch_hits(decisions: pd.DataFrame, table: dict[tuple[str, int], np.ndarray]) -> dict[str, float]:
    """On the frames that show the square: how often the chosen patch covers the most of it (`hit`),
    the mean share of the square inside it, how often that share is at least half, and the hit and
    share of the central candidate and of a random one."""
    shown = [(share, p) for v, t, p in zip(decisions.video_id, decisions.t, decisions.patch)
             if (share := table.get((v, t))) is not None]
    shares = np.stack([share for share, _ in shown])
    chosen = np.array([p for _, p in shown])
    best = shares >= shares.max(1, keepdims=True) - 1e-9
    rows, centre = np.arange(len(shown)), shares.shape[1] // 2
    return {"frames_with_square": len(shown), "hit": float(best[rows, chosen].mean()),
            "share": float(shares[rows, chosen].mean()), "half": float((shares[rows, chosen] >= 0.5).mean()),
            "central_hit": float(best[:, centre].mean()),
            "central_share": float(shares[:, centre].mean()), "random_hit": float(best.mean()),
            "random_share": float(shares.mean())}


def run_hits(run: Path, manifest: Path) -> dict[str, float]:
    """patch_hits of one run directory, with its top-1 (its config.json names the cache and the grid)."""
    config, decisions = RunDir(run).config()["settings"], RunDir(run).table("decisions.csv")
    decisions = decisions[decisions.patch >= 0]
    table = coverage_table(manifest, Path(config["cache"]), config["focus"], sorted(decisions.video_id.unique()))
    top1 = RunDir(run).metrics()["top1"]
    return {"top1": top1} | patch_hits(decisions, table)


def fine_reads(run: Path, manifest: Path) -> dict[str, float]:
    """A LiteEval run: its top-1, and the share of frames that read the fine feature among the
    cached frames that show the square and among the others."""
    config, decisions = RunDir(run).config()["settings"], RunDir(run).table("decisions.csv")
    shown = {(video_id, t) for video_id, t, frame, path in
             cached_frames(manifest, Path(config["cache"]), config["fine"], sorted(decisions.video_id.unique()))
             if frame in path.frames()}
    on_square = np.array([(v, t) in shown for v, t in zip(decisions.video_id, decisions.t)])
    fine = decisions.fine.to_numpy().astype(bool)
    top1 = RunDir(run).metrics()["top1"]
    return {"top1": top1, "frames_with_square": float(on_square.mean()), "fine_on_square": float(fine[on_square].mean()),
            "fine_elsewhere": float(fine[~on_square].mean())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="*", type=Path)
    parser.add_argument("--manifest", type=Path, default=Path("data_manifests/demo/manifest.csv"))
    parser.add_argument("--smoke", action="store_true", help="on a tiny demo of its own (seconds)")
    args = parser.parse_args()
    if args.smoke:
        tmp = tempfile.TemporaryDirectory()
        out, data = smoke_demo(Path(tmp.name))
        args.runs, args.manifest = [out / "runs" / "adafocus", out / "runs" / "liteeval"], data / "manifest.csv"
    for run in args.runs:
        adafocus = RunDir(run).config()["settings"]["method"].startswith("adafocus")
        hits = run_hits(run, args.manifest) if adafocus else fine_reads(run, args.manifest)
        print(run, {k: round(v, 3) for k, v in hits.items()})


if __name__ == "__main__":
    main()
