"""`c2f extract` side by side with its peer, video_features' ResNet extractor
(https://github.com/v-iashin/video_features): whole processes, as a user runs each, on the same videos,
alternating which goes first; wall time, frames/s, CPU time in the kernel and peak RSS of each.

    python bench/peer_video_features.py [--peer PATH] [--peer-python PYTHON] [--pairs 4] [--repeat 4]
                                        [--backbone resnet50] [--fps 1] [--threads 2] [--videos DIR]
    python bench/peer_video_features.py --smoke     # one small video, resnet18, one pair (or how to get the peer)

The peer is found at --peer, else $VIDEO_FEATURES, else ../video_features beside this repository. To
get it: `git clone https://github.com/v-iashin/video_features`; its ResNet extractor needs, besides
torch and torchvision, `pip install omegaconf opencv-python-headless` (with --no-deps they leave
c2f's packages as they are) and the ffmpeg program on the PATH (it re-encodes each video to
--fps before reading it). --peer-python is the Python that has them (default: this one).

The videos are ../shared/videos repeated --repeat times (16 by default; links with distinct names,
since the peer names its outputs after the file). Weights: no checkpoint can be downloaded here, so
both sides load the same file from a private torch hub cache, put under the name of torchvision's
ImageNet V1 checkpoint and filled with random values (seed 0): the architecture, the loading path
and the work are a default run's; speed and memory do not depend on the values. c2f runs with its
defaults as a user types it (`c2f extract --manifest M --out DIR --backbone resnet50@224 --fps 1`:
weights imagenet, its own batch size, workers and precision); the peer as its README shows
(`python main.py feature_type=resnet model_name=resnet50 device=cpu extraction_fps=1 ...`). With
--threads both get OMP_NUM_THREADS (default: unset, torch's own choice, as a user has it).
"""
from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
import torchvision

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from extract_process import extracted_frames, run_process        # noqa: E402
from pipeline.core.manifest import write_manifest                   # noqa: E402

PEER_URL = "https://github.com/v-iashin/video_features"
PEER_NEEDS = ("omegaconf", "cv2", "torch", "torchvision")
HOW_TO_GET = f"""video_features was not found. To rerun the comparison:
    git clone {PEER_URL} ../video_features       # or anywhere: --peer PATH, or $VIDEO_FEATURES
    pip install --no-deps omegaconf 'antlr4-python3-runtime==4.9.*' opencv-python-headless
    apt-get install ffmpeg                            # its ResNet extractor re-encodes each video with it
(or give --peer-python, a Python that has them beside torch and torchvision)"""


def find_peer(given: str | None) -> Path | None:
    for candidate in (given, os.environ.get("VIDEO_FEATURES"), str(REPO.parent / "video_features")):
        if candidate and (Path(candidate) / "models" / "resnet" / "extract_resnet.py").is_file():
            return Path(candidate).resolve()
    return None


def peer_missing(python: str) -> list[str]:
    """What the peer needs and does not find: Python modules (in `python`) and ffmpeg."""
    check = f"import importlib.util as u; print(' '.join(m for m in {PEER_NEEDS!r} if u.find_spec(m) is None))"
    found = subprocess.run([python, "-c", check], capture_output=True, text=True)
    missing = found.stdout.split() if found.returncode == 0 else [f"a working {python}"]
    return missing + ([] if shutil.which("ffmpeg") else ["ffmpeg"])


def random_checkpoint(torch_home: Path, architecture: str) -> None:
    """The architecture's ImageNet V1 checkpoint name in the hub cache, holding random values (seed 0)."""
    weights = torchvision.models.get_model_weights(architecture).IMAGENET1K_V1
    path = torch_home / "hub" / "checkpoints" / Path(weights.url).name
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    torch.save(torchvision.models.get_model(architecture, weights=None).state_dict(), path)


def environment(torch_home: Path, threads: int | None) -> dict:
    env = {**os.environ, "TORCH_HOME": str(torch_home), "PYTHONPATH": str(REPO)}
    if threads:
        env |= {"OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    return env


def c2f_run(videos: list[Path], work: Path, architecture: str, fps: float, env: dict) -> dict:
    manifest = write_manifest([{"video_id": v.stem, "path": str(v), "labels": "x", "split": "train"} for v in videos],
                              work / "manifest.csv")
    out = work / "c2f_cache"
    shutil.rmtree(out, ignore_errors=True)
    run = run_process([sys.executable, "-m", "c2f", "extract", "--manifest", str(manifest), "--out", str(out),
                       "--backbone", f"{architecture}@224", "--fps", f"{fps:g}", "--no-progress"], env)
    return run | {"frames": extracted_frames(run["output"])}


def peer_run(peer: Path, python: str, videos: list[Path], work: Path, architecture: str, fps: float, env: dict) -> dict:
    out, tmp = work / "peer_out", work / "peer_tmp"
    shutil.rmtree(out, ignore_errors=True)
    command = [python, "main.py", "feature_type=resnet", f"model_name={architecture}", "device=cpu",
               f"extraction_fps={fps:g}", "on_extraction=save_numpy", f"output_path={out}", f"tmp_path={tmp}",
               f"video_paths=[{','.join(str(v) for v in videos)}]"]
    run = run_process(command, env, cwd=peer)
    saved = sorted(out.rglob("*_resnet.npy"))       # under resnet/MODEL/
    if len(saved) != len(videos):       # it prints a failed video's traceback and goes on
        raise SystemExit(f"the peer wrote features for {len(saved)} of {len(videos)} videos: {run['output'][-1500:]}")
    return run | {"frames": sum(len(np.load(p)) for p in saved)}


def report(name: str, runs: list[dict]) -> dict:
    walls = [r["wall"] for r in runs]
    kernel = statistics.median(r["sys"] / (r["user"] + r["sys"]) for r in runs)
    rss = [r["rss_gb"] for r in runs]
    fps = runs[0]["frames"] / statistics.median(walls)
    print(f"{name:<15} wall {', '.join(f'{w:.2f}' for w in walls)} s (median {statistics.median(walls):.2f}), "
          f"{runs[0]['frames']} frames, {fps:.2f} frames/s, {kernel:.1%} of CPU in the kernel, "
          f"peak RSS {min(rss):.3f}-{max(rss):.3f} GB")
    return {"fps": fps}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--peer", default=None, help="the video_features folder")
    parser.add_argument("--peer-python", default=sys.executable)
    parser.add_argument("--pairs", type=int, default=4)
    parser.add_argument("--repeat", type=int, default=4)
    parser.add_argument("--backbone", default="resnet50", help="a torchvision ResNet both sides offer")
    parser.add_argument("--fps", type=float, default=1.0)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--videos", default=str(REPO.parent / "shared" / "videos"))
    parser.add_argument("--smoke", action="store_true")
    args = parser.parse_args()
    peer = find_peer(args.peer)
    missing = peer_missing(args.peer_python) if peer else ["video_features"]
    if missing:
        print(HOW_TO_GET if peer is None else f"{peer}: missing {', '.join(missing)}\n{HOW_TO_GET}")
        raise SystemExit(0 if args.smoke else 1)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        if args.smoke:                 # one of the demo's videos (3 s, H.264), made here
            from c2f.demo.videos import DemoVideoConfig, write_demo_videos
            write_demo_videos(DemoVideoConfig(str(work / "demo"), train_videos=1, val_videos=0, progress=False))
            sources, args.repeat, args.pairs, args.backbone = sorted((work / "demo" / "videos").glob("*.mp4")), 1, 1, "resnet18"
        else:
            sources = sorted(Path(args.videos).glob("*.mp4"))
        if not sources:
            raise SystemExit(f"no mp4 files in {args.videos}")
        (work / "videos").mkdir()
        videos = [work / "videos" / f"{v.stem}-{r}.mp4" for r in range(args.repeat) for v in sources]
        for link, source in zip(videos, [v for _ in range(args.repeat) for v in sources]):
            link.symlink_to(source.resolve())
        random_checkpoint(work / "torch_home", args.backbone)
        env = environment(work / "torch_home", args.threads)
        print(f"{len(videos)} videos, {args.backbone} at 224 px, random weights (the V1 checkpoint's name), fp32, "
              f"{args.threads or 'default'} threads, {args.fps:g} fps, {args.pairs} alternating pairs; peer: {peer}")
        runs = {"c2f": [], "video_features": []}
        for pair in range(args.pairs):
            for name in (("c2f", "video_features") if pair % 2 == 0 else ("video_features", "c2f")):
                runs[name].append(c2f_run(videos, work, args.backbone, args.fps, env) if name == "c2f" else
                                  peer_run(peer, args.peer_python, videos, work, args.backbone, args.fps, env))
        ours, theirs = report("c2f", runs["c2f"]), report("video_features", runs["video_features"])
        pairs = [(c["frames"] / c["wall"]) / (p["frames"] / p["wall"]) for c, p in zip(runs["c2f"], runs["video_features"])]
        print(f"c2f / video_features frames/s: {ours['fps'] / theirs['fps']:.2f}x by the medians, pair by pair "
              f"{min(pairs):.2f}-{max(pairs):.2f}x")


if __name__ == "__main__":
    main()
